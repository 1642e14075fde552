"""The node's view of CUPS jobs, through pycups: release, cancel, and following job events.

CUPS loses queued notifications when it restarts, so :meth:`CupsJobs.follow` recreates its
subscription when the old one is gone and resyncs with Get-Jobs; callers key on job-state (never on
job-state-reasons, which read processing-to-stop-point for both completed and canceled jobs).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class CupsJobState(enum.IntEnum):
    PENDING = 3
    HELD = 4
    PROCESSING = 5
    STOPPED = 6
    CANCELED = 7
    ABORTED = 8
    COMPLETED = 9


@dataclass(frozen=True)
class CupsJob:
    job_id: int
    state: CupsJobState
    uuid: str
    user: str
    queue: str


class CupsUnavailable(RuntimeError):
    """cupsd did not answer."""


def _attr(attrs: dict[str, Any], name: str, default: Any = None) -> Any:
    value = attrs.get(name, default)
    if isinstance(value, list):
        return value[0] if value else default
    return value


class CupsJobs:
    """Operations on the jobs of one cupsd.

    ``server`` is a socket path or host[:port]; empty means the system default.
    """

    def __init__(self, server: str = "") -> None:
        self.server = server
        self._lock = threading.Lock()

    def _conn(self) -> Any:
        import cups

        try:
            if not self.server:
                return cups.Connection()
            host, _, port = self.server.rpartition(":") if ":" in self.server else ("", "", "")
            if host and port.isdigit():
                return cups.Connection(host=host, port=int(port))
            return cups.Connection(host=self.server)
        except RuntimeError as exc:
            raise CupsUnavailable(f"cannot connect to cupsd at {self.server or 'default'}") from exc

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        import cups

        with self._lock:
            try:
                return fn(self._conn())
            except cups.IPPError as exc:
                raise CupsUnavailable(f"cupsd refused: {exc}") from exc

    def job(self, job_id: int) -> CupsJob | None:
        """The job's current state, or None when cupsd no longer knows it."""
        import cups

        def get(conn: Any) -> CupsJob | None:
            try:
                attrs = conn.getJobAttributes(job_id)
            except cups.IPPError:
                return None
            return self._from_attrs(job_id, attrs)

        result: CupsJob | None = self._call(get)
        return result

    @staticmethod
    def _from_attrs(job_id: int, attrs: dict[str, Any]) -> CupsJob:
        uri = str(_attr(attrs, "job-printer-uri", "") or "")
        return CupsJob(
            job_id=job_id,
            state=CupsJobState(int(_attr(attrs, "job-state", 3))),
            uuid=str(_attr(attrs, "job-uuid", "") or ""),
            user=str(_attr(attrs, "job-originating-user-name", "") or ""),
            queue=uri.rsplit("/", 1)[-1],
        )

    def jobs(self, queue: str | None = None) -> list[CupsJob]:
        """Every job of a printer that cupsd knows (active and finished), optionally of one
        queue. Not the jobs sent to a class (a pool of queues): pycups' Get-Jobs leaves them
        out (``tests/test_pool.py``); ask for those by id with :meth:`job`."""

        def get(conn: Any) -> list[CupsJob]:
            found = conn.getJobs(
                which_jobs="all",
                requested_attributes=[
                    "job-id",
                    "job-state",
                    "job-uuid",
                    "job-originating-user-name",
                    "job-printer-uri",
                ],
            )
            return [self._from_attrs(int(jid), attrs) for jid, attrs in found.items()]

        result: list[CupsJob] = self._call(get)
        return [j for j in result if queue is None or j.queue == queue]

    def release(self, job_id: int) -> None:
        """Release a held job: cupsd runs its filter and backend again."""
        self._call(lambda conn: conn.setJobHoldUntil(job_id, "no-hold"))

    def cancel(self, job_id: int) -> None:
        """Cancel a job (a job already finished is left as it is)."""
        job = self.job(job_id)
        if job is None or job.state >= CupsJobState.CANCELED:
            return
        self._call(lambda conn: conn.cancelJob(job_id))

    def subscribe(self, lease: int = 0) -> int:
        """Subscribe to every job's events (pull notifications); returns the subscription id.

        The subscription is server-wide: cupsd sends no job-completed event to a printer's
        subscription for a held job that is canceled (measured with CUPS 2.4.2).
        """

        def sub(conn: Any) -> int:
            return int(
                conn.createSubscription(
                    "ipp://localhost/",
                    events=["job-state-changed", "job-completed"],
                    lease_duration=lease,
                )
            )

        result: int = self._call(sub)
        return result

    def notifications(self, subscription: int, after: int) -> tuple[list[tuple[int, int]], int]:
        """Job events since sequence number ``after``: ([(job_id, job_state)], last sequence).

        Raises CupsUnavailable when the subscription is gone (cupsd restarted).
        """

        def get(conn: Any) -> Any:
            return conn.getNotifications([subscription], [after + 1])

        answer = self._call(get)
        out: list[tuple[int, int]] = []
        last = after
        for event in answer.get("events", []):
            seq = int(event.get("notify-sequence-number", 0))
            last = max(last, seq)
            if event.get("notify-subscription-id", subscription) != subscription:
                continue
            job_id = event.get("notify-job-id")
            state = event.get("job-state")
            if job_id is not None and state is not None:
                out.append((int(job_id), int(state)))
        return out, last
