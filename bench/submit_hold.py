"""Submit to held: ``lp`` of a 1 MB PDF until the job is held (and, for pullprint, registered
with the cloud), through our filter and backend handing off to ``pullprint submitd``, against the
same cupsd with a queue whose backend only reads the job and exits 3 (plain CUPS holding a job).
The two queues take turns, job by job. Both are watched every 3 ms (POLL) on one connection to
cupsd, asking for the job's state alone (a new connection and every attribute per look cost
cupsd and the bench ~0.7 ms of CPU, ~0.4 so: on 2 cores the looking slowed the jobs it timed,
the longer ones most). Prints one JSON line: p50/p99 of both and the ratio of the p50s, and for
pullprint p50/p99 until the document is in the cloud as well (submitd uploads it after cupsd
holds the job; a release that comes first waits for it; this one includes the bench asking the
cloud for the job, an upper bound). Pullprint's job is held only after the cloud answered its
registration: the bench checks that the cloud stamped the job between ``lp`` and the hold, and
times until the hold; ``--no-submitd`` measures the filter and backend running each job
in-process."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._stats import emit, percentile, taking_turns
from pullprint.cups.jobs import CupsJobState
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack

POLL = 0.003  # seconds between two looks at the job, for both queues
HOLD_ONLY = "#!/bin/sh\n# reads the job and holds it, nothing else\ncat > /dev/null\nexit 3\n"


def uploaded(stack: Stack, timeout: float = 60.0) -> None:
    """Wait until the spool's outbox is empty: every held job's document is in the cloud."""
    outbox = stack.root / "spool" / "outbox"
    deadline = time.monotonic() + timeout
    while any(outbox.glob("*.json")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"documents still in {outbox} after {timeout} s")
        time.sleep(POLL)


def timed_job(
    stack: Stack, conn: Any, doc: Path, queue: str, registered: bool
) -> tuple[float, float]:
    """Ms from ``lp`` until the job is held (and registered), and until its document is in the
    cloud too (pullprint: submitd uploads it after cupsd holds the job; plain: the same)."""
    assert stack.cups is not None
    wall, start = time.time(), time.perf_counter()
    job = stack.cups.lp(doc, user="alice", queue=queue)
    stack.cups.wait_job(
        job, {CupsJobState.HELD}, timeout=60, poll=POLL, conn=conn, attributes=["job-state"]
    )
    held = (time.perf_counter() - start) * 1000
    held_at = time.time()
    if registered:
        # The backend exits 3 (held) only once the cloud answered its registration, so the
        # hold comes last; asking the cloud for the job is checked here, not timed (a listing
        # costs the bench's client milliseconds that are not the product's).
        created = stack.wait_cloud_job("alice", job, poll=POLL).created_at
        if not wall <= created <= held_at:
            raise RuntimeError(
                f"CUPS job {job} was registered at {created}, not before it was held"
            )
        uploaded(stack)
    return held, (time.perf_counter() - start) * 1000


def run(n: int = 30, submitd: bool = True) -> dict[str, object]:
    """``n`` jobs to each queue, one at a time, taking turns (ours, plain, plain, ours, ...),
    so both see the machine as it is in the same seconds (a VM with neighbours: run alone one
    after the other, either queue's p50 moved by up to 2x between runs); one untimed job to
    each first (cold caches)."""
    with tempfile.TemporaryDirectory(prefix="pullprint-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        doc = make_pdf(root / "1mb.pdf", 10, image_kb=100)
        size = doc.stat().st_size
        users = {"alice": "1234"}
        with Stack(root / "stack", users=users, start_node=False, submitd=submitd) as stack:
            assert stack.cups is not None
            sink = stack.cups.root / "bin" / "backend" / "holdonly"
            sink.write_text(HOLD_ONLY)
            sink.chmod(0o755)
            stack.cups.run("lpadmin", "-p", "Plain", "-v", "holdonly:/", "-E")
            conn = stack.cups.connection()
            ours: list[float] = []
            releasable: list[float] = []
            plain: list[float] = []

            def mine() -> None:
                held, whole = timed_job(stack, conn, doc, "PullPrint", registered=True)
                ours.append(held)
                releasable.append(whole)

            def theirs() -> None:
                plain.append(timed_job(stack, conn, doc, "Plain", registered=False)[0])

            timed_job(stack, conn, doc, "PullPrint", registered=True)
            timed_job(stack, conn, doc, "Plain", registered=False)
            for turn in taking_turns(n, mine, theirs):
                turn()
    return {
        "bench": "submit_hold",
        "submitd": submitd,
        "n": n,
        "document_bytes": size,
        "ours_p50_ms": round(statistics.median(ours), 1),
        "ours_p99_ms": round(percentile(ours, 99), 1),
        "plain_p50_ms": round(statistics.median(plain), 1),
        "plain_p99_ms": round(percentile(plain, 99), 1),
        "ratio": round(statistics.median(ours) / statistics.median(plain), 2),
        "ours_document_in_cloud_p50_ms": round(statistics.median(releasable), 1),
        "ours_document_in_cloud_p99_ms": round(percentile(releasable, 99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="jobs per queue")
    parser.add_argument("--no-submitd", action="store_true", help="filter and backend in-process")
    args = parser.parse_args(argv)
    emit(run(args.n, submitd=not args.no_submitd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
