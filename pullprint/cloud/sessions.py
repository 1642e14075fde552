"""Sessions of signed-in people and the secrets of terminals: bearer tokens for the API.

A session token (``pps_...``) is made when a user signs in with a password, single sign-on, or at
a terminal (card, PIN, username selection); only its SHA-256 is stored, so a stolen database gives
no working token. Sessions expire (``cloud.session_seconds``, terminal sessions after
``cloud.terminal_session_seconds``: the kiosk's auto sign-out) on the injected clock.

A terminal (an MFP's embedded app, a release station, a network card reader) is registered by an
admin, bound to one printer, and has its own secret (``ppt_<name>.<secret>``), shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud.db import terminals, user_sessions
from pullprint.errors import Conflict, NotFound

log = logging.getLogger(__name__)

SESSION_PREFIX = "pps_"
TERMINAL_PREFIX = "ppt_"
TERMINAL_METHODS = ("card", "pin", "username")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    kind: str  # password, sso, terminal
    terminal: str  # the terminal a terminal session was opened at, else ""
    expires_at: float


class SessionBook:
    """The ``user_sessions`` table."""

    def __init__(
        self,
        engine: Engine,
        ttl_seconds: float,
        terminal_ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self.ttl = ttl_seconds
        self.terminal_ttl = terminal_ttl_seconds
        self._clock = clock

    def open(self, user: str, kind: str = "password", terminal: str = "") -> str:
        """A new session for ``user``; returns its bearer token (the only copy)."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        ttl = self.terminal_ttl if terminal else self.ttl
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(user_sessions).values(
                    token_hash=_digest(token),
                    user=user,
                    kind=kind,
                    terminal=terminal,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        log.info("session opened for %s (%s%s)", user, kind, f" at {terminal}" if terminal else "")
        return token

    def resolve(self, token: str) -> Session | None:
        """The live session of ``token``; None if unknown or expired. Changes nothing."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(user_sessions).where(user_sessions.c.token_hash == _digest(token))
            ).first()
        if row is None or row.expires_at <= self._clock():
            return None
        return Session(row.user, row.kind, row.terminal, row.expires_at)

    def expires_at(self, token: str) -> float:
        found = self.resolve(token)
        return found.expires_at if found else 0.0

    def close(self, token: str) -> bool:
        """End the session (sign out). Idempotent."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.delete(user_sessions).where(user_sessions.c.token_hash == _digest(token))
            )
        return bool(done.rowcount)

    def close_all(self, user: str, keep: str = "") -> int:
        """End every session of the user (disabled, password changed), but the one of the token
        ``keep`` (the user who changed their own password stays signed in there)."""
        query = sa.delete(user_sessions).where(user_sessions.c.user == user)
        if keep:
            query = query.where(user_sessions.c.token_hash != _digest(keep))
        with self._engine.begin() as conn:
            done = conn.execute(query)
        return int(done.rowcount)

    def sweep(self) -> int:
        """Delete expired sessions; returns how many."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.delete(user_sessions).where(user_sessions.c.expires_at <= self._clock())
            )
        return int(done.rowcount)


@dataclass(frozen=True)
class Terminal:
    name: str
    printer: str
    methods: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "printer": self.printer, "methods": list(self.methods)}


class TerminalBook:
    """The ``terminals`` table."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def add(self, name: str, printer: str, methods: tuple[str, ...]) -> str:
        """Register a terminal bound to ``printer``; returns its secret token (shown once).
        Conflict (409) if the name exists."""
        token = f"{TERMINAL_PREFIX}{name}.{secrets.token_urlsafe(32)}"
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(terminals).values(
                        name=name,
                        secret_hash=_digest(token),
                        printer=printer,
                        methods=list(methods),
                        created_at=self._clock(),
                    )
                )
        except IntegrityError as exc:
            raise Conflict(409, f"terminal {name} already exists") from exc
        log.info("terminal %s registered for printer %s (%s)", name, printer, ", ".join(methods))
        return token

    def update(self, name: str, printer: str, methods: tuple[str, ...]) -> Terminal:
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.update(terminals)
                .where(terminals.c.name == name)
                .values(printer=printer, methods=list(methods))
            )
        if done.rowcount != 1:
            raise NotFound(404, f"no terminal {name}")
        return Terminal(name, printer, methods)

    def delete(self, name: str) -> bool:
        with self._engine.begin() as conn:
            done = conn.execute(sa.delete(terminals).where(terminals.c.name == name))
        return bool(done.rowcount)

    def all(self) -> list[Terminal]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(terminals).order_by(terminals.c.name)).all()
        return [Terminal(r.name, r.printer, tuple(r.methods)) for r in rows]

    def find(self, name: str) -> Terminal | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(terminals).where(terminals.c.name == name)).first()
        return None if row is None else Terminal(row.name, row.printer, tuple(row.methods))

    def get(self, name: str) -> Terminal:
        found = self.find(name)
        if found is None:
            raise NotFound(404, f"no terminal {name}")
        return found

    def resolve(self, token: str) -> Terminal | None:
        """The terminal whose secret ``token`` is; None otherwise. Constant-time compare."""
        name = token.removeprefix(TERMINAL_PREFIX).split(".", 1)[0]
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(terminals).where(terminals.c.name == name)).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(token)):
            return None
        return Terminal(row.name, row.printer, tuple(row.methods))
