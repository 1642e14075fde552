"""Groups of users and delegation: an owner lets users or groups release their jobs, and says
which account pays for what a delegate releases (empty: the owner's personal account, else the
name of a shared account). The account is recorded on the job and its transaction; balances are
the accounting module's business.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pullprint.cloud.db import delegations, group_members, user_groups
from pullprint.errors import NotFound

log = logging.getLogger(__name__)


class DelegateKind(enum.StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True)
class Delegation:
    owner: str
    kind: DelegateKind
    delegate: str
    account: str = ""  # empty: the owner's personal account

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "kind": self.kind.value,
            "delegate": self.delegate,
            "account": self.account,
        }


class Groups:
    """The ``user_groups`` and ``group_members`` tables."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    def put(self, name: str, members: list[str]) -> list[str]:
        """Create the group or replace its members (idempotent); returns the members, sorted."""
        wanted = sorted(set(members))
        with self._engine.begin() as conn:
            exists = conn.execute(
                sa.select(user_groups.c.name).where(user_groups.c.name == name)
            ).first()
            if exists is None:
                conn.execute(sa.insert(user_groups).values(name=name, created_at=self._clock()))
            conn.execute(sa.delete(group_members).where(group_members.c.group_name == name))
            if wanted:
                conn.execute(
                    sa.insert(group_members), [{"group_name": name, "user": u} for u in wanted]
                )
        log.info("group %s has %d members", name, len(wanted))
        return wanted

    def members(self, name: str) -> list[str]:
        """The members of group ``name``, sorted; NotFound (404) if there is no such group."""
        with self._engine.connect() as conn:
            exists = conn.execute(
                sa.select(user_groups.c.name).where(user_groups.c.name == name)
            ).first()
            if exists is None:
                raise NotFound(404, f"no group {name}")
            rows = conn.execute(
                sa.select(group_members.c.user)
                .where(group_members.c.group_name == name)
                .order_by(group_members.c.user)
            ).all()
        return [str(r.user) for r in rows]

    def delete(self, name: str) -> bool:
        """Delete the group and its members (delegations to it stop working). Idempotent."""
        with self._engine.begin() as conn:
            conn.execute(sa.delete(group_members).where(group_members.c.group_name == name))
            done = conn.execute(sa.delete(user_groups).where(user_groups.c.name == name))
        return bool(done.rowcount)


class Delegations:
    """The ``delegations`` table."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    def put(self, delegation: Delegation) -> Delegation:
        """Create or replace one delegation (idempotent)."""
        key = (
            delegations.c.owner == delegation.owner,
            delegations.c.kind == delegation.kind.value,
            delegations.c.delegate == delegation.delegate,
        )
        with self._engine.begin() as conn:
            conn.execute(sa.delete(delegations).where(*key))
            conn.execute(
                sa.insert(delegations).values(
                    owner=delegation.owner,
                    kind=delegation.kind.value,
                    delegate=delegation.delegate,
                    account=delegation.account,
                    created_at=self._clock(),
                )
            )
        log.info(
            "%s lets %s %s release their jobs",
            delegation.owner,
            delegation.kind,
            delegation.delegate,
        )
        return delegation

    def of(self, owner: str) -> list[Delegation]:
        """The owner's delegations."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(delegations)
                .where(delegations.c.owner == owner)
                .order_by(delegations.c.kind, delegations.c.delegate)
            ).all()
        return [
            Delegation(str(r.owner), DelegateKind(r.kind), str(r.delegate), str(r.account))
            for r in rows
        ]

    def delete(self, owner: str, kind: DelegateKind, delegate: str) -> bool:
        """Remove one delegation; True if it existed."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.delete(delegations).where(
                    delegations.c.owner == owner,
                    delegations.c.kind == kind.value,
                    delegations.c.delegate == delegate,
                )
            )
        return bool(done.rowcount)


def account_for(conn: Connection, owner: str, user: str) -> str | None:
    """The account charged when ``user`` releases a job of ``owner``: None if ``user`` may not;
    a direct delegation wins over a group's (then the first group by name)."""
    direct = conn.execute(
        sa.select(delegations.c.account).where(
            delegations.c.owner == owner,
            delegations.c.kind == DelegateKind.USER.value,
            delegations.c.delegate == user,
        )
    ).first()
    if direct is not None:
        return str(direct.account)
    via_group = conn.execute(
        sa.select(delegations.c.account)
        .select_from(
            delegations.join(
                group_members,
                sa.and_(
                    delegations.c.kind == DelegateKind.GROUP.value,
                    group_members.c.group_name == delegations.c.delegate,
                ),
            )
        )
        .where(delegations.c.owner == owner, group_members.c.user == user)
        .order_by(delegations.c.delegate)
        .limit(1)
    ).first()
    return None if via_group is None else str(via_group.account)


def owners_delegating_to(conn: Connection, user: str) -> list[str]:
    """The owners who let ``user`` release their jobs (directly or through a group), sorted."""
    direct = sa.select(delegations.c.owner).where(
        delegations.c.kind == DelegateKind.USER.value, delegations.c.delegate == user
    )
    via_group = (
        sa.select(delegations.c.owner)
        .select_from(
            delegations.join(
                group_members,
                sa.and_(
                    delegations.c.kind == DelegateKind.GROUP.value,
                    group_members.c.group_name == delegations.c.delegate,
                ),
            )
        )
        .where(group_members.c.user == user)
    )
    found = conn.execute(sa.union(direct, via_group)).scalars()
    return sorted({str(owner) for owner in found} - {user})
