"""Throughput: 1,000 jobs sent with ``lp`` as fast as possible into the private cupsd whose
PullPrint queue runs our filter and backend (handing off to ``pullprint submitd``; ``--no-submitd``:
each job in-process); jobs per second until every job is held in CUPS and
registered with the cloud, and how many were lost (never held or never registered).

Side by side in the same run, the same cupsd with a queue whose backend only reads the job and
exits 3 (plain CUPS holding a job, no filter), for reference. Submissions come from ``--clients``
concurrent ``lp`` processes. Ours runs twice by default: to the queue PullPrint alone, then to a
CUPS class of 4 PullPrint queues (``--pool N``; cupsd runs one job per queue at a time, so N at
once: the pool of README's "A pool of queues"). Prints one JSON line per run;
pullprint's also says when the last document was in the cloud
(``all_documents_in_cloud_seconds``: submitd uploads each one after cupsd holds its job, so that
comes a little after the last registration).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._stats import emit
from bench.submit_hold import HOLD_ONLY, uploaded
from pullprint.cups.jobs import CupsJobState
from pullprint.ipp.client import IppClient
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack

PAGE = 200
# Seconds between two counts. Each count lists every job from cupsd (and, for pullprint, once
# all are held, from the cloud): every 50 ms that cost pullprint's run a quarter of its
# throughput (500 jobs: 11.7 jobs/s against 15.0 at 0.5 s). So pullprint is counted every 0.5 s
# and its end is the cloud's own time of the last registration (each job is held ~1 ms after it
# is registered); the plain queue is counted every 50 ms.
POLL = 0.05
POLL_REGISTERED = 0.5
HELD = frozenset({CupsJobState.HELD})
POOL = "PullPrintPool"  # the class of ``--pool`` queues
WAITING = frozenset({CupsJobState.PENDING, CupsJobState.PROCESSING})


def held_ids(stack: Stack, queue: str, states: frozenset[CupsJobState] = HELD) -> set[int]:
    """CUPS job-ids of ``queue`` in one of ``states`` (pending-held by default). Get-Jobs is
    paged by job-id: one answer may not hold every job of a thousand. pycups asks for the jobs
    of printers only; a class's (the pool, ``POOL``) are asked for at the class's own URI."""
    assert stack.cups is not None
    if queue == POOL:
        pooled: set[int] = set()
        with IppClient(f"ipp://127.0.0.1:{stack.cups.port}/classes/{POOL}") as client:
            first = 1
            while page := client.get_jobs("all", limit=PAGE, first_job_id=first):
                pooled |= {j.job_id for j in page if j.job_state in states}
                first = max(j.job_id for j in page) + 1
        return pooled
    conn = stack.cups.connection()
    found: set[int] = set()
    first = 1
    while True:
        page = conn.getJobs(
            which_jobs="all",
            first_job_id=first,
            limit=PAGE,
            requested_attributes=["job-id", "job-state", "job-printer-uri"],
        )
        for job_id, attrs in page.items():
            uri = str(attrs.get("job-printer-uri", ""))
            if uri.rsplit("/", 1)[-1] == queue and attrs.get("job-state") in states:
                found.add(int(job_id))
        if len(page) < PAGE:
            return found
        first = max(int(j) for j in page) + 1


def registered(stack: Stack, user: str) -> dict[int, float]:
    """CUPS job-id -> the cloud's time of registration (epoch seconds) of ``user``'s jobs."""
    with stack.admin() as admin:
        return {job.cups_job_id: job.created_at for job in admin.list_jobs(user=user)}


def flood(
    stack: Stack,
    doc: Path,
    queue: str,
    user: str,
    n: int,
    clients: int,
    registered_too: bool,
    timeout: float,
) -> dict[str, object]:
    """Send ``n`` jobs from ``clients`` threads, each running ``lp``; wait until all are held
    (and registered, for pullprint) or ``timeout`` passes."""
    assert stack.cups is not None
    cups = stack.cups
    poll = POLL_REGISTERED if registered_too else POLL
    start = time.perf_counter()
    start_epoch = time.time()
    with ThreadPoolExecutor(clients) as pool:
        sent = list(pool.map(lambda _: cups.lp(doc, user=user, queue=queue), range(n)))
    submitted = time.perf_counter() - start
    wanted = set(sent)
    deadline = time.monotonic() + timeout
    held: set[int] = set()
    known: set[int] = set()
    times: dict[int, float] = {}
    while time.monotonic() < deadline:
        held = held_ids(stack, queue) & wanted
        if registered_too and len(held) == n:
            # The cloud is asked once all are held (a job is held after it is registered, or
            # after the cloud did not answer, when it waits in the outbox): listing 1,000 jobs
            # from it at every count took CPU from the run itself.
            times = registered(stack, user)
            known = set(times) & wanted
        elif not registered_too:
            known = held
        if len(held) == n and len(known) == n:
            break
        time.sleep(poll)
    elapsed = time.perf_counter() - start
    if registered_too and len(known) == n:
        elapsed = min(elapsed, max(times[j] for j in wanted) - start_epoch)
    in_cloud = elapsed
    if registered_too:  # submitd uploads a document after cupsd holds its job
        with contextlib.suppress(TimeoutError):
            uploaded(stack, timeout=max(0.0, deadline - time.monotonic()))
        in_cloud = time.perf_counter() - start
    done = held & known
    # Not done yet is not lost: jobs still queued or being filtered at the timeout are counted
    # apart; lost are the ones neither done nor on their way.
    waiting = (held_ids(stack, queue, WAITING) | (held - known)) & wanted - done
    lost = n - len(done) - len(waiting)
    return {
        "bench": "throughput",
        "queue": queue,
        "n": n,
        "clients": clients,
        "submit_seconds": round(submitted, 2),
        "seconds": round(elapsed, 2),
        "done": len(done),
        "jobs_per_s": round(len(done) / elapsed, 2),
        "all_documents_in_cloud_seconds": round(in_cloud, 2),
        "counted_every_s": poll,
        "lost": lost,
        "still_waiting_at_timeout": len(waiting),
    }


def run(
    n: int, clients: int, timeout: float, submitd: bool = True, pools: tuple[int, ...] = (1, 4)
) -> list[dict[str, object]]:
    """Ours once per entry of ``pools``: 1 is the queue PullPrint alone, N > 1 a CUPS class
    (``POOL``) of N PullPrint queues (each run by a user of its own); then the plain queue. One
    stack, no node: nothing is released."""
    with tempfile.TemporaryDirectory(prefix="pullprint-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        doc = make_pdf(root / "doc.pdf", 3)
        users = {"bob": "5678", **{f"user{pool}": "1234" for pool in pools}}
        with Stack(root / "stack", users=users, start_node=False, submitd=submitd) as stack:
            assert stack.cups is not None
            sink = stack.cups.root / "bin" / "backend" / "holdonly"
            sink.write_text(HOLD_ONLY)
            sink.chmod(0o755)
            stack.cups.run("lpadmin", "-p", "Plain", "-v", "holdonly:/", "-E")
            figures = []
            for pool in pools:
                queue = "PullPrint"
                if pool > 1:
                    members = ["PullPrint", *(f"PullPrint{i}" for i in range(2, pool + 1))]
                    stack.cups.run("lpadmin", "-x", POOL, check=False)  # another size before
                    stack.cups.add_pool(POOL, members)
                    queue = POOL
                ours = flood(stack, doc, queue, f"user{pool}", n, clients, True, timeout)
                figures.append({**ours, "submitd": submitd, "pool": pool})
            figures.append(flood(stack, doc, "Plain", "bob", n, clients, False, timeout))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="jobs per queue")
    parser.add_argument("--clients", type=int, default=8, help="concurrent lp processes")
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds per queue at most")
    parser.add_argument("--no-submitd", action="store_true", help="filter and backend in-process")
    parser.add_argument(
        "--pool",
        type=int,
        action="append",
        help="1: the queue PullPrint; N: a CUPS class of N PullPrint queues (again for more "
        "runs; default: 1, then 4)",
    )
    args = parser.parse_args(argv)
    pools = tuple(args.pool or (1, 4))
    for figure in run(args.n, args.clients, args.timeout, not args.no_submitd, pools):
        emit(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
