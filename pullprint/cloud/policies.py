"""Release modes, per queue or per printer (``release_policies``), as SavaPage defines them.

- hold (default): a job waits until it is released at a printer;
- direct: a job prints at once on the printer where its owner authenticates within
  ``direct_seconds`` of printing;
- fast: authenticating at a printer releases every held job of the owner, with their options;
- automatic (queues only): every job of the queue is released to ``printer`` once its document
  has arrived; it is never held.

At an authentication the printer's own policy applies if it has one, else the job's queue's.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud import printers as printer_rows
from pullprint.cloud.db import release_policies
from pullprint.errors import InvalidRequest, NotFound
from pullprint.model import ReleaseMode

log = logging.getLogger(__name__)

DEFAULT_DIRECT_SECONDS = 30
MAX_DIRECT_SECONDS = 3600


class Scope(enum.StrEnum):
    QUEUE = "queue"
    PRINTER = "printer"


@dataclass(frozen=True)
class ReleasePolicy:
    """How jobs of one queue, or at one printer, are released."""

    scope: Scope
    name: str
    mode: ReleaseMode = ReleaseMode.HOLD
    printer: str | None = None  # automatic: where every job goes
    direct_seconds: int = DEFAULT_DIRECT_SECONDS

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope.value,
            "name": self.name,
            "mode": self.mode.value,
            "printer": self.printer,
            "direct_seconds": self.direct_seconds,
        }


def from_row(row: Mapping[Any, Any]) -> ReleasePolicy:
    return ReleasePolicy(
        scope=Scope(row["scope"]),
        name=str(row["name"]),
        mode=ReleaseMode(row["mode"]),
        printer=row["printer"],
        direct_seconds=int(row["direct_seconds"]),
    )


def get(conn: Connection, scope: Scope, name: str) -> ReleasePolicy | None:
    """The stored policy of a queue or printer, or None (hold)."""
    row = (
        conn.execute(
            sa.select(release_policies).where(
                release_policies.c.scope == scope.value, release_policies.c.name == name
            )
        )
        .mappings()
        .first()
    )
    return from_row(row) if row else None


class ReleasePolicies:
    """The ``release_policies`` table."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    def put(self, policy: ReleasePolicy) -> ReleasePolicy:
        """Create or replace the policy of ``policy.scope``/``policy.name`` (idempotent).

        automatic needs a queue and an existing printer (422 / 404 otherwise).
        """
        if policy.mode is ReleaseMode.AUTOMATIC:
            if policy.scope is not Scope.QUEUE:
                raise InvalidRequest(
                    422, "mode automatic is for queues (it releases to a fixed printer)"
                )
            if not policy.printer:
                raise InvalidRequest(422, "mode automatic needs printer: the fixed printer")
        elif policy.printer:
            raise InvalidRequest(422, f"printer is only for mode automatic, not {policy.mode}")
        values = {
            "mode": policy.mode.value,
            "printer": policy.printer,
            "direct_seconds": policy.direct_seconds,
            "updated_at": self._clock(),
        }
        for _attempt in range(3):
            try:
                with self._engine.begin() as conn:
                    if policy.printer and printer_rows.get(conn, policy.printer) is None:
                        raise NotFound(404, f"no printer {policy.printer}")
                    if (
                        policy.scope is Scope.PRINTER
                        and printer_rows.get(conn, policy.name) is None
                    ):
                        raise NotFound(404, f"no printer {policy.name}")
                    done = conn.execute(
                        sa.update(release_policies)
                        .where(
                            release_policies.c.scope == policy.scope.value,
                            release_policies.c.name == policy.name,
                        )
                        .values(values)
                    )
                    if done.rowcount == 0:
                        conn.execute(
                            sa.insert(release_policies).values(
                                scope=policy.scope.value, name=policy.name, **values
                            )
                        )
                break
            except IntegrityError:
                continue
        log.info("release mode of %s %s is %s", policy.scope, policy.name, policy.mode)
        return policy

    def get(self, scope: Scope, name: str) -> ReleasePolicy:
        """The policy (hold when none is stored). Changes nothing."""
        with self._engine.connect() as conn:
            found = get(conn, scope, name)
        return found or ReleasePolicy(scope, name)

    def all(self) -> list[ReleasePolicy]:
        """Every stored policy, queues first, by name."""
        with self._engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(release_policies).order_by(
                        release_policies.c.scope.desc(), release_policies.c.name
                    )
                )
                .mappings()
                .all()
            )
        return [from_row(r) for r in rows]
