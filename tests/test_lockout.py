"""The lockout's counts in the database, on both databases and an injected clock: five wrong tries
in a row lock, a success starts the count again, a noisy terminal is slowed down and forgiven,
tries that come in at once from several threads or server processes are all counted, and old
counts are swept. (Through the servers: tests/test_identity_api.py, one process;
tests/test_postgres_multiprocess.py, two processes on one PostgreSQL database.)"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pullprint.cloud import db
from pullprint.cloud.lockout import FORGET_SECONDS, Lockout, LockoutPolicy
from pullprint.errors import CloudRefused, WrongSecret
from tests.test_cloud_api import DATABASES, database_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = db.make_engine(database_url(str(request.param), tmp_path))
    db.upgrade(made)
    try:
        yield made
    finally:
        made.dispose()


def test_five_wrong_tries_in_a_row_lock_on_the_clock(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    lockout = Lockout(engine, LockoutPolicy(max_failures=5, lock_seconds=900), clock)
    for _ in range(4):
        assert lockout.failure("alice") == 0
    lockout.success("alice")  # a success starts the count again
    for _ in range(4):
        lockout.failure("alice")
    assert lockout.locked_for("alice") == 0
    with caplog.at_level(logging.WARNING):
        assert lockout.failure("alice") == 900
    assert "lockout: user alice locked for 900 s after 5 failures" in caplog.text
    assert lockout.failure("alice") == 0  # counting again, the lock stays as it was
    with pytest.raises(CloudRefused) as refused:
        lockout.check("alice")
    assert refused.value.status == 423 and "locked for 900 more seconds" in refused.value.message
    assert lockout.locked_for("bob") == 0
    clock.now += 899
    assert lockout.locked_for("alice") == pytest.approx(1)
    clock.now += 2
    assert lockout.locked_for("alice") == 0
    lockout.check("alice")


def test_one_wrong_try_locks_when_the_policy_says_one(engine: Engine) -> None:
    lockout = Lockout(engine, LockoutPolicy(max_failures=1, lock_seconds=60), Clock())
    assert lockout.failure("alice") == 60
    assert lockout.locked_for("alice") == 60


def test_guard_counts_wrong_secrets_only_and_refuses_a_locked_user(engine: Engine) -> None:
    lockout = Lockout(engine, LockoutPolicy(max_failures=3, lock_seconds=60), Clock())

    def wrong() -> str:
        raise WrongSecret(403, "wrong PIN")

    def broken() -> str:
        raise RuntimeError("the database is down")

    for _ in range(2):
        with pytest.raises(WrongSecret):
            lockout.guard("alice", wrong, "hall")
    with pytest.raises(RuntimeError):
        lockout.guard("alice", broken)  # not a wrong secret: not counted
    assert lockout.guard("alice", lambda: "ok", "hall") == "ok"  # resets alice and the hall
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.lockout_counts)).scalar() == 0
    for _ in range(3):
        with pytest.raises(WrongSecret):
            lockout.guard("alice", wrong)
    ran = []
    with pytest.raises(CloudRefused) as refused:
        lockout.guard("alice", lambda: ran.append(1))
    assert refused.value.status == 423 and not ran  # the check does not even run


def test_a_noisy_terminal_is_slowed_down(engine: Engine) -> None:
    lockout = Lockout(engine, LockoutPolicy(max_failures=1000, terminal_free_failures=3), Clock())
    for i in range(3):
        lockout.failure(f"user{i}", terminal="t1")
    assert lockout.terminal_delay("t1") == 0
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 1.0
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 2.0
    for _ in range(10):
        lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 30.0
    assert lockout.terminal_delay("t2") == 0


def test_a_quiet_terminal_is_forgiven_on_the_clock(engine: Engine) -> None:
    clock = Clock()
    policy = LockoutPolicy(max_failures=1000, terminal_free_failures=1, terminal_quiet_seconds=600)
    lockout = Lockout(engine, policy, clock)
    for _ in range(4):
        lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 4.0
    clock.now += 599
    assert lockout.terminal_delay("t1") == 4.0  # still noisy
    lockout.failure("x", terminal="t1")
    clock.now += 600  # ten quiet minutes after its last failure
    assert lockout.terminal_delay("t1") == 0
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 0  # counting starts again
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 1.0


def test_tries_at_once_from_two_processes_are_all_counted(engine: Engine) -> None:
    """Two Lockouts on their own engines (as two server processes on one database), eight
    threads each: 40 wrong tries at once are 40 counted, and the 50-failure lock comes after
    ten more in all, whichever process they come to."""
    clock = Clock()
    policy = LockoutPolicy(max_failures=50, lock_seconds=300)
    other = db.make_engine(engine.url.render_as_string(hide_password=False))
    try:
        processes = [Lockout(engine, policy, clock), Lockout(other, policy, clock)]
        with ThreadPoolExecutor(8) as pool:
            locks = list(pool.map(lambda i: processes[i % 2].failure("alice", "hall"), range(40)))
        assert locks == [0] * 40
        with engine.connect() as conn:
            table = db.lockout_counts
            rows = {k: n for k, n in conn.execute(sa.select(table.c.key, table.c.failures))}
        assert rows == {"user:alice": 40, "terminal:hall": 40}
        assert [processes[i % 2].failure("alice") for i in range(10)] == [0] * 9 + [300]
        assert processes[1].locked_for("alice") == 300 and processes[0].locked_for("alice") == 300
    finally:
        other.dispose()


def test_the_sweep_forgets_old_counts_and_keeps_locks(engine: Engine) -> None:
    clock = Clock()
    lockout = Lockout(engine, LockoutPolicy(max_failures=2, lock_seconds=2 * FORGET_SECONDS), clock)
    lockout.failure("old", terminal="t-old")
    lockout.failure("locked")
    lockout.failure("locked")  # locked for two days
    clock.now += FORGET_SECONDS + 1
    lockout.failure("new", terminal="t-new")
    assert lockout.sweep() == 2  # old and t-old
    with engine.connect() as conn:
        keys = set(conn.execute(sa.select(db.lockout_counts.c.key)).scalars())
    assert keys == {"user:locked", "user:new", "terminal:t-new"}
    assert lockout.locked_for("locked") > 0
