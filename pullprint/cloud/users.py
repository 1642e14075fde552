"""People who release jobs: a name and an argon2-hashed PIN. PINs are never stored or logged."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud.db import users
from pullprint.errors import Conflict

log = logging.getLogger(__name__)

# argon2id with the OWASP minimum (19 MiB, 2 passes, 1 lane): ~25 ms a check on 2 cores instead of
# ~90 ms and 64 MiB with argon2-cffi's defaults, so a release stays well inside its latency goal and
# parallel releases do not need 64 MiB each. A 4-8 digit PIN is protected by the lockout, not the
# hash cost; the hash keeps a stolen database from giving PINs away at once.
PIN_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class UserDirectory:
    """The ``users`` table."""

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._hasher = hasher or PIN_HASHER
        # Verified against for unknown users, so an unknown name costs the same time.
        self._dummy_hash = self._hasher.hash("00000000")

    def add(self, name: str, pin: str) -> None:
        """Create the user with an argon2 hash of ``pin``; Conflict (409) if the name exists."""
        pin_hash = self._hasher.hash(pin)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(users).values(name=name, pin_hash=pin_hash, created_at=time.time())
                )
        except IntegrityError as exc:
            raise Conflict(409, f"user {name} already exists") from exc
        log.info("added user %s", name)

    def verify(self, name: str, pin: str) -> bool:
        """True if ``pin`` is the PIN of user ``name`` (False if unknown). Changes nothing."""
        with self._engine.connect() as conn:
            stored = conn.execute(
                sa.select(users.c.pin_hash).where(users.c.name == name)
            ).scalar_one_or_none()
        try:
            ok = bool(self._hasher.verify(stored or self._dummy_hash, pin))
        except (VerificationError, InvalidHashError):
            ok = False
        return ok and stored is not None
