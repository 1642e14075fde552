"""Lockout after repeated wrong PINs, cards or passwords, on an injected clock (tests never sleep).

Five failures in a row lock that user's PIN, card and password login for 15 minutes (both
configurable); a success resets the count. A terminal that sends many failures is slowed down:
each failure past the threshold doubles the delay the caller must wait before it may try again.

The counts are rows of ``lockout_counts`` in the cloud's database, so that every server process
on one database counts the same tries: several processes behind one address lock a user after
five wrong PINs in all, not five each. Each count changes in one statement (an upsert that adds
the failure and, at the threshold, sets the lock), so tries that come in at once on different
processes are all counted. The clock is wall time (shared by the processes), injected for tests.
Counts with no failure for ``FORGET_SECONDS`` and no lock left are removed by ``sweep``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, RowMapping
from starlette.concurrency import run_in_threadpool

from pullprint.cloud import db
from pullprint.cloud.db import lockout_counts as counts
from pullprint.errors import CloudRefused, WrongSecret

log = logging.getLogger(__name__)

T = TypeVar("T")
FORGET_SECONDS = 24 * 3600.0  # a count with no failure for this long (and no lock) is dropped


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lock_seconds: float = 15 * 60
    terminal_free_failures: int = 10
    terminal_delay_seconds: float = 1.0
    terminal_max_delay_seconds: float = 30.0
    terminal_quiet_seconds: float = 15 * 60  # a terminal's count starts again after this long


def _user_key(user: str) -> str:
    return f"user:{user}"


def _terminal_key(terminal: str) -> str:
    return f"terminal:{terminal}"


class Lockout:
    """Counts failures per user and per terminal in ``engine``'s database. Thread-safe; each
    method is one short transaction (call them from worker threads, or use :func:`guarded`)."""

    def __init__(
        self,
        engine: Engine,
        policy: LockoutPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self._reads = db.reader(engine)  # reads outside a transaction, as the cloud's others
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # -- reading --------------------------------------------------------------------------------
    def _rows(self, keys: list[str]) -> dict[str, RowMapping]:
        with self._reads.connect() as conn:
            found = conn.execute(sa.select(counts).where(counts.c.key.in_(keys))).mappings()
            return {str(row["key"]): row for row in found}

    def _locked(self, row: RowMapping | None) -> float:
        return max(0.0, float(row["locked_until"]) - self.clock()) if row else 0.0

    def locked_for(self, user: str) -> float:
        """Seconds the user's PIN/card/password login stays locked (0 when it is not)."""
        return self._locked(self._rows([_user_key(user)]).get(_user_key(user)))

    def check(self, user: str) -> None:
        """CloudRefused 423, saying for how long, if ``user`` is locked. Changes nothing."""
        self._refuse(user, self.locked_for(user))

    def _refuse(self, user: str, locked: float) -> None:
        if locked > 0:
            raise CloudRefused(
                423,
                f"the PIN, card and password login of {user} is locked for {locked:.0f} more "
                f"seconds after {self.policy.max_failures} wrong tries in a row",
            )

    def terminal_delay(self, terminal: str) -> float:
        """Seconds a terminal must wait before its next try (grows with its failures; a
        terminal quiet for ``terminal_quiet_seconds`` is forgiven). Changes nothing."""
        row = self._rows([_terminal_key(terminal)]).get(_terminal_key(terminal))
        if row is None or self.clock() - row["last_failure"] >= self.policy.terminal_quiet_seconds:
            return 0.0
        extra = int(row["failures"]) - self.policy.terminal_free_failures
        if extra <= 0:
            return 0.0
        delay = self.policy.terminal_delay_seconds * 2 ** (extra - 1)
        return min(delay, self.policy.terminal_max_delay_seconds)

    # -- counting -------------------------------------------------------------------------------
    def failure(self, user: str, terminal: str | None = None) -> float:
        """Record a wrong PIN, card or password; returns the seconds the user is now locked
        for (0 until the ``max_failures``-th in a row, which sets the lock and starts the
        count again)."""
        now, policy = self.clock(), self.policy
        until = now + policy.lock_seconds
        first_locks = policy.max_failures <= 1
        reaches = counts.c.failures + 1 >= policy.max_failures
        insert = self._insert(counts).values(
            key=_user_key(user),
            failures=0 if first_locks else 1,
            locked_until=until if first_locks else 0.0,
            last_failure=now,
        )
        bump = insert.on_conflict_do_update(
            index_elements=[counts.c.key],
            set_={
                "failures": sa.case((reaches, 0), else_=counts.c.failures + 1),
                "locked_until": sa.case((reaches, until), else_=counts.c.locked_until),
                "last_failure": now,
            },
        ).returning(counts.c.failures, counts.c.locked_until)
        with self.engine.begin() as conn:
            failures, locked_until = conn.execute(bump).one()
            if terminal is not None:
                conn.execute(self._terminal_failure(terminal, now))
        if failures != 0 or float(locked_until) != until:
            return 0.0
        log.warning(
            "lockout: user %s locked for %.0f s after %d failures",
            user,
            policy.lock_seconds,
            policy.max_failures,
        )
        return policy.lock_seconds

    def _terminal_failure(self, terminal: str, now: float) -> sa.Executable:
        quiet = now - counts.c.last_failure >= self.policy.terminal_quiet_seconds
        bump = self._insert(counts).values(
            key=_terminal_key(terminal), failures=1, locked_until=0.0, last_failure=now
        )
        return bump.on_conflict_do_update(
            index_elements=[counts.c.key],
            set_={
                "failures": sa.case((quiet, 1), else_=counts.c.failures + 1),
                "last_failure": now,
            },
        )

    def success(self, user: str, terminal: str | None = None) -> None:
        """A correct PIN, card or password: the user's (and the terminal's) count starts
        again."""
        keys = [_user_key(user)] + ([_terminal_key(terminal)] if terminal is not None else [])
        with self.engine.begin() as conn:
            conn.execute(sa.delete(counts).where(counts.c.key.in_(keys)))

    def guard(self, user: str, work: Callable[[], T], terminal: str | None = None) -> T:
        """Around one PIN, card or password check: refuse a locked ``user`` (CloudRefused 423),
        run ``work``; a WrongSecret from it counts as a failure (and is raised on), a success
        resets the counts (a write only when there were any). Other errors count nothing."""
        keys = [_user_key(user)] + ([_terminal_key(terminal)] if terminal is not None else [])
        rows = self._rows(keys)
        self._refuse(user, self._locked(rows.get(_user_key(user))))
        try:
            result = work()
        except WrongSecret:
            self.failure(user, terminal)
            raise
        if rows:
            self.success(user, terminal)
        return result

    def sweep(self) -> int:
        """Drop the counts with no failure for ``FORGET_SECONDS`` and no lock left; how many."""
        now = self.clock()
        old = sa.and_(counts.c.last_failure < now - FORGET_SECONDS, counts.c.locked_until < now)
        with self.engine.begin() as conn:
            return int(conn.execute(sa.delete(counts).where(old)).rowcount or 0)


async def guarded(
    lockout: Lockout, user: str, work: Callable[[], T], terminal: str | None = None
) -> T:
    """:meth:`Lockout.guard` in a worker thread, after keeping a noisy ``terminal`` waiting for
    its delay (:meth:`Lockout.terminal_delay`)."""
    if terminal is not None:
        await asyncio.sleep(await run_in_threadpool(lockout.terminal_delay, terminal))
    return await run_in_threadpool(lockout.guard, user, work, terminal)
