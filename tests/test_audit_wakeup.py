"""Audit of issue 4: "Long-poll wake-ups within 100 ms of a release" on the default database
(SQLite, one server process). The PostgreSQL cross-process case is
tests/test_postgres_multiprocess.py; tests/test_cloud_api.py only asserts 1 s there."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tests.test_cloud_api import PINS, Poll, cursor_now, held_job, start_cloud

log = logging.getLogger(__name__)


def test_release_wakes_a_waiting_poll_within_100_ms_on_sqlite(tmp_path: Path) -> None:
    server = start_cloud(tmp_path / "cloud", "sqlite")
    try:
        lags = []
        with (
            server.node_client("node1") as poller,
            server.node_client("node2") as origin,
            server.admin_client() as admin,
        ):
            for _ in range(5):
                job, _ = held_job(origin, tmp_path)
                poll = Poll(poller, cursor_now(poller))
                poll.start()
                time.sleep(0.3)  # the poll waits in the server
                admin.release(job.uuid, "alice", PINS["alice"], "printer1")
                answered = time.monotonic()
                poll.join(10)
                assert [e.job_uuid for e in poll.events] == [job.uuid]
                lags.append(poll.returned_at - answered)
        log.warning(
            "wake-up lags after the release answered (ms): %s", [round(x * 1000, 1) for x in lags]
        )
        assert max(lags) < 0.1, lags
    finally:
        server.stop()
