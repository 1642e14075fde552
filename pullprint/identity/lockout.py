"""Lockout after repeated wrong PINs or cards, on an injected clock (tests never sleep).

Five failures in a row lock that user's PIN/card login for 15 minutes (both configurable); a
success resets the count. A terminal that sends many failures is slowed down: each failure past
the threshold adds a delay the caller must wait before it may try again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pullprint.errors import CloudRefused, WrongSecret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lock_seconds: float = 15 * 60
    terminal_free_failures: int = 10
    terminal_delay_seconds: float = 1.0
    terminal_max_delay_seconds: float = 30.0
    terminal_quiet_seconds: float = 15 * 60  # a terminal's count starts again after this long


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0


class Lockout:
    """Counts failures per user and per terminal. Thread-safe; state is in memory."""

    def __init__(
        self, policy: LockoutPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self._users: dict[str, _Count] = {}
        self._terminals: dict[str, tuple[int, float]] = {}  # failures, time of the last one
        self._lock = threading.Lock()

    def locked_for(self, user: str) -> float:
        """Seconds the user's PIN/card login stays locked (0 when it is not)."""
        with self._lock:
            count = self._users.get(user)
            return max(0.0, count.locked_until - self.clock()) if count else 0.0

    def failure(self, user: str, terminal: str | None = None) -> float:
        """Record a wrong PIN or card; returns the seconds the user is now locked for."""
        with self._lock:
            count = self._users.setdefault(user, _Count())
            count.failures += 1
            if terminal is not None:
                self._terminals[terminal] = (self._terminal_count(terminal) + 1, self.clock())
            if count.failures >= self.policy.max_failures:
                count.failures = 0
                count.locked_until = self.clock() + self.policy.lock_seconds
                log.warning(
                    "lockout: user %s locked for %.0f s after %d failures",
                    user,
                    self.policy.lock_seconds,
                    self.policy.max_failures,
                )
                return self.policy.lock_seconds
            return 0.0

    def success(self, user: str, terminal: str | None = None) -> None:
        """A correct PIN or card: the user's failure count starts again."""
        with self._lock:
            self._users.pop(user, None)
            if terminal is not None:
                self._terminals.pop(terminal, None)

    def _terminal_count(self, terminal: str) -> int:
        """The terminal's failures, forgotten after ``terminal_quiet_seconds`` without one
        (call with the lock held)."""
        failures, last = self._terminals.get(terminal, (0, 0.0))
        if failures and self.clock() - last >= self.policy.terminal_quiet_seconds:
            del self._terminals[terminal]
            return 0
        return failures

    def terminal_delay(self, terminal: str) -> float:
        """Seconds a terminal must wait before its next try (grows with its failures)."""
        with self._lock:
            extra = self._terminal_count(terminal) - self.policy.terminal_free_failures
        if extra <= 0:
            return 0.0
        delay = self.policy.terminal_delay_seconds * 2 ** (extra - 1)
        return min(delay, self.policy.terminal_max_delay_seconds)


def check_lockout(lockout: Lockout, user: str | None, terminal: str | None = None) -> float:
    """Refuse a PIN/card/password login of a locked user: CloudRefused 423 saying for how long.
    Returns the seconds a noisy ``terminal`` must be kept waiting before its answer (0 if it is
    not noisy). Changes nothing."""
    if user is not None:
        locked = lockout.locked_for(user)
        if locked > 0:
            raise CloudRefused(
                423,
                f"the PIN, card and password login of {user} is locked for {locked:.0f} more "
                f"seconds after {lockout.policy.max_failures} wrong tries in a row",
            )
    return lockout.terminal_delay(terminal) if terminal is not None else 0.0


@contextlib.contextmanager
def counted(lockout: Lockout, user: str, terminal: str | None = None) -> Iterator[None]:
    """Around one PIN/card/password check: a WrongSecret counts as a failure (and is raised
    on), success resets the user's count. Other errors count nothing."""
    try:
        yield
    except WrongSecret:
        lockout.failure(user, terminal)
        raise
    lockout.success(user, terminal)
