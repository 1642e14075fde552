"""Several server processes on one PostgreSQL database: a release on one process wakes a
long-poll waiting on another within 100 ms (LISTEN/NOTIFY), claims race across processes with one
winner (SELECT ... FOR UPDATE SKIP LOCKED), and a node's event cursor never skips an event
although transactions commit out of id order (per-node advisory lock)."""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.pool import QueuePool

from pullprint.cloud import db, events
from pullprint.errors import CloudRefused, Conflict
from pullprint.model import EventKind, JobState
from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import PINS, Poll, cursor_now, database_url, held_job, start_cloud

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudServer, CloudServer]]:
    first = start_cloud(tmp_path_factory.mktemp("pg-a"), "postgresql")
    second = first.sibling(tmp_path_factory.mktemp("pg-b"))
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_release_on_one_process_wakes_a_poll_on_the_other(
    pair: tuple[CloudServer, CloudServer], tmp_path: Path
) -> None:
    a, b = pair
    lags = []
    with (
        a.node_client("node1") as poller,
        b.node_client("node2") as origin,
        b.admin_client() as admin,
    ):
        for _ in range(5):
            job, _ = held_job(origin, tmp_path)
            poll = Poll(poller, cursor_now(poller))
            poll.start()
            time.sleep(0.3)  # the poll waits in process a
            admin.release(job.uuid, "alice", PINS["alice"], "printer1")  # process b
            answered = time.monotonic()
            poll.join(10)
            assert [e.job_uuid for e in poll.events] == [job.uuid]
            assert poll.events[0].kind is EventKind.RELEASED
            lags.append(poll.returned_at - answered)
    log.warning("cross-process wake-up lags (ms): %s", [round(x * 1000, 1) for x in lags])
    assert max(lags) < 0.1


def test_wrong_pins_on_two_processes_lock_after_five_in_all(
    pair: tuple[CloudServer, CloudServer],
) -> None:
    """The lockout counts are the database's: wrong PINs at a printer that alternate between
    the two processes lock the user after five in all (each process counted its own before,
    so five on each), and then the right PIN is refused on both until the lock ends."""
    a, b = pair
    with a.admin_client() as admin:
        admin.add_user("gina", "2468")
    answers = []
    for i in range(6):
        with (a, b)[i % 2].admin_client() as admin:
            try:
                admin.authenticate("printer1", "gina", "0000")
            except CloudRefused as exc:
                answers.append(exc.status)
    assert answers == [403] * 5 + [423]
    for server in (a, b):
        with server.admin_client() as admin, pytest.raises(CloudRefused) as refused:
            admin.authenticate("printer1", "gina", "2468")
        assert refused.value.status == 423 and "locked for" in refused.value.message


def test_claims_across_processes_have_one_winner(
    pair: tuple[CloudServer, CloudServer], tmp_path: Path
) -> None:
    a, b = pair
    with a.node_client("node1") as node, a.admin_client() as admin:
        jobs = [held_job(node, tmp_path, origin="node1")[0] for _ in range(4)]
        for job in jobs:
            admin.release(job.uuid, "alice", PINS["alice"], "printer1")

    def claim(args: tuple[int, str]) -> str:
        i, uuid = args
        server = (a, b)[i % 2]
        with server.node_client("node1") as client:
            try:
                client.claim(uuid)
            except Conflict:
                return "conflict"
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        for job in jobs:
            results = list(pool.map(claim, [(i, job.uuid) for i in range(8)]))
            assert sorted(results) == ["conflict"] * 7 + ["ok"]
    with a.admin_client() as admin:
        assert all(admin.get_job(j.uuid).state is JobState.CLAIMED for j in jobs)


def test_event_cursor_misses_nothing_under_concurrent_commits(
    pair: tuple[CloudServer, CloudServer], tmp_path: Path
) -> None:
    """40 cancels for node2's jobs from 8 threads on both processes while node2 follows its
    stream with a cursor: every event arrives exactly once, in id order."""
    a, b = pair
    with a.node_client("node2") as origin:
        jobs = [held_job(origin, tmp_path)[0].uuid for _ in range(40)]
        cursor = cursor_now(origin)
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def follow() -> None:
        nonlocal cursor
        with b.node_client("node2") as node:
            while True:
                found, cursor = node.events(cursor, 0.5)
                seen.extend((e.id, e.job_uuid) for e in found)
                if done.is_set() and not found:
                    return

    follower = threading.Thread(target=follow)
    follower.start()

    def cancel(args: tuple[int, str]) -> None:
        i, uuid = args
        with (a, b)[i % 2].admin_client() as admin:
            admin.cancel(uuid, reason="load")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cancel, enumerate(jobs)))
    done.set()
    follower.join(30)
    ids = [i for i, _ in seen]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert sorted(u for _, u in seen) == sorted(jobs)


def test_a_later_event_waits_for_an_earlier_uncommitted_one(tmp_path: Path) -> None:
    """Deterministic form of the cursor rule: while a transaction holding node X's event is
    open, another transaction adding an event for X waits, so the later id commits later and
    a reader never sees a gap it would skip."""
    engine = db.make_engine(database_url("postgresql", tmp_path))
    try:
        db.upgrade(engine)
        first = engine.connect()
        tx = first.begin()
        events.append_job_state(first, EventKind.CANCELED, "nodeX", "a", 1, "", JobState.CANCELED)
        finished = threading.Event()

        def second() -> None:
            with engine.begin() as conn:
                events.append_job_state(
                    conn, EventKind.CANCELED, "nodeX", "b", 2, "", JobState.CANCELED
                )
            finished.set()

        other = threading.Thread(target=second)
        other.start()
        assert not finished.wait(0.5)  # blocked behind the open transaction
        assert events.after(engine, "nodeX", 0) == []  # nothing visible, no gap either
        # Another node's events do not wait.
        with engine.begin() as conn:
            events.append_job_state(
                conn, EventKind.CANCELED, "nodeY", "c", 3, "", JobState.CANCELED
            )
        tx.commit()
        first.close()
        other.join(10)
        assert finished.is_set()
        seen = events.after(engine, "nodeX", 0)
        assert [e.job_uuid for e in seen] == ["a", "b"] and seen[0].id < seen[1].id
    finally:
        engine.dispose()


def _terminate_backends(url: str, pids: set[int] | None = None) -> int:
    """``pg_terminate_backend`` (what a restart does to each client) of the connections to
    ``url``'s database other than this one, or of ``pids``; waits until they are gone."""
    conninfo = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
        doomed = [pid for (pid,) in found if pids is None or pid in pids]
        for pid in doomed:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [doomed]
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the terminated backends did not go away"
            time.sleep(0.05)
    return len(doomed)


def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(tmp_path: Path) -> None:
    """No pre-ping round trip, and still no error: the pool drops a connection whose server
    side is gone (terminated, as by a restart) when it is checked out, and opens a new one."""
    url = database_url("postgresql", tmp_path)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedin() == 1  # pooled, and now killed on the server
        assert _terminate_backends(url, {int(first)}) == 1
        with engine.connect() as conn:
            second = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert second != first
    finally:
        engine.dispose()


def test_the_cloud_answers_every_request_after_its_connections_were_cut(
    pair: tuple[CloudServer, CloudServer], tmp_path: Path
) -> None:
    """Every connection of both processes to their database cut (LISTEN included), as by a
    restart: the next releases and listings all succeed, on both processes."""
    a, b = pair
    with a.node_client("node2") as origin:
        jobs = [held_job(origin, tmp_path)[0] for _ in range(6)]
    with a.admin_client() as admin:
        admin.list_jobs(user="alice")  # fill the pool
        assert _terminate_backends(a.config.database_url) >= 2
        for job in jobs:
            assert admin.release(job.uuid, "alice", PINS["alice"], "printer2").state is (
                JobState.RELEASED
            )
            assert job.uuid in {j.uuid for j in admin.list_jobs(user="alice")}
    with b.admin_client() as admin:
        assert all(admin.get_job(j.uuid).state is JobState.RELEASED for j in jobs)


def test_the_checkout_check_takes_descriptors_past_1023(tmp_path: Path) -> None:
    """A busy server has more than 1,023 descriptors open (long-polls, uploads); a pooled
    connection's socket above that number is checked as any other (``select.select`` could
    not take it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    url = database_url("postgresql", tmp_path)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            raw = conn.connection.dbapi_connection
            assert raw is not None and raw.pgconn.socket > 1023
        with engine.connect() as conn:  # the pooled connection, checked at checkout
            assert conn.exec_driver_sql("SELECT 2").scalar_one() == 2
    finally:
        engine.dispose()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
