"""Release latency: from the release call to the printer's first byte and to the end state.

Runs the real stack (cupsd + our filter and backend, ippeveprinter, the cloud, the node), holds
jobs printed with lp, then releases them one by one through the cloud API, round robin over 1, 10
and 50 printers (one node serving them all; at least 20 jobs, and one per printer). The
printer's first byte is when ippeveprinter's spool file for the job appears (it writes the
document as it reads it); the end state is when the cloud reports the job completed. Prints one
JSON line per printer count (``--printers 1,10`` to choose).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._stats import emit, percentile
from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack


def wait_new_file(folder: Path, known: set[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name not in known and not entry.name.startswith("."):
                    return entry.name
        time.sleep(0.0005)
    raise TimeoutError("the printer received nothing")


def run(n: int = 20, printers: int = 1) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pullprint-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        with Stack(root / "stack", users={"alice": "1234"}, printers=printers) as stack:
            assert stack.cups is not None
            doc = make_pdf(root / "doc.pdf", 3)
            uuids = []
            for _ in range(n):
                cups_job = stack.cups.lp(doc, user="alice")
                stack.cups.wait_job(cups_job, {CupsJobState.HELD})
                uuids.append(stack.wait_cloud_job("alice", cups_job).uuid)
            first_byte: list[float] = []
            done: list[float] = []
            with stack.admin() as admin:
                for index, uuid in enumerate(uuids):
                    name = stack.printer_names[index % printers]
                    printer = stack.printers[index % printers]
                    spool = printer.spool_dir
                    known = {e.name for e in os.scandir(spool)}
                    start = time.perf_counter()
                    admin.release(uuid, "alice", "1234", name)
                    wait_new_file(spool, known)
                    first_byte.append((time.perf_counter() - start) * 1000)
                    while admin.get_job(uuid).state is not JobState.COMPLETED:
                        time.sleep(0.002)
                    done.append((time.perf_counter() - start) * 1000)
    return {
        "bench": "release_latency",
        "n": n,
        "printers": printers,
        "first_byte_p50_ms": round(statistics.median(first_byte), 1),
        "first_byte_p99_ms": round(percentile(first_byte, 99), 1),
        "done_p50_ms": round(statistics.median(done), 1),
        "done_p99_ms": round(percentile(done, 99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--printers", default="1,10,50", help="comma-separated printer counts")
    parser.add_argument("-n", type=int, default=20, help="jobs (at least one per printer)")
    args = parser.parse_args(argv)
    for count in (int(c) for c in args.printers.split(",")):
        emit(run(max(args.n, count), count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
