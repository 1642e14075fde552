"""Reliability suite (``make reliability``): bounded in time, ends with one summary JSON line
``{"suite":"reliability","lost":..,"duplicated":..,"errors":..,"faults_tried":..,
"bad_inputs_tried":..}`` and exits 1 if anything was lost, duplicated or failed.

Three parts, each printing its own JSON lines first:

1. Faults on a scale-out world (``bench.scale_out.ScaleOut``: 2 cloud processes on one
   PostgreSQL, 3 node processes, 6 ippeveprinters): while jobs are being released, one fault at a
   time: SIGKILL of a cloud process mid-request (then restarted), SIGKILL of a node (restarted),
   a printer stopped and started again, the database restarted (``pg_ctl restart``). For each:
   jobs lost, duplicated (counted at the printers), release calls that failed for good, and the
   seconds from the recovery until every job of the round was finished.
2. Soak on the same world: held jobs, released by many concurrent clients for a bounded time;
   errors, lost, duplicated, and the RSS of every server and node process at start and end.
   Default scaled down (300 held, 20 concurrent, at most 60 s); ``--full``: 10,000 held, 200
   concurrent, 300 s.
3. The existing fault and bad-input tests, run as they are (pytest, JUnit XML counted): the node
   SIGKILLed right after each journal step (IPP and raw), the backend SIGTERMed mid-read, the
   cloud down while printing to the queue, cupsd restarted with held jobs, an unreachable
   printer; malformed PDFs and hostile options through the filter, forged/cross-job/cross-node/
   unsigned download URLs, hostile option strings. Each case is one fault or bad input tried;
   a test asserts its own "lost none, printed none twice" or "refused", so a failed case
   counts as an error.
"""

from __future__ import annotations

import argparse
import collections
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench._stats import emit
from bench.scale_out import FINAL, PIN, ScaleOut
from pullprint.errors import CloudError, Conflict
from pullprint.model import JobState
from pullprint.peers.postgres import RUN_AS, PostgresServer

REPO = Path(__file__).resolve().parents[1]
FAULT_TESTS = [
    "tests/test_faults.py",
    "tests/test_e2e.py::test_sigterm_mid_job_registers_nothing",
    "tests/test_e2e.py::test_cloud_down_while_printing_to_the_queue",
    "tests/test_e2e.py::test_cupsd_restart_then_cancel_in_cups_cancels_in_cloud",
    "tests/test_node_delivery.py::test_unreachable_printer_waits_then_fails_then_prints_elsewhere",
]
BAD_INPUT_TESTS = [
    "tests/test_filter_bad_input.py",
    "tests/test_documents_signed.py::test_forged_cross_job_cross_node_and_unsigned_urls_get_403",
    "tests/test_protocol.py::test_parse_options_hostile_input_does_not_crash",
]
# Faults each test injects (its own count; the rest inject one).
INJECTED = {"test_sigkill_at_every_step_loses_none_prints_none_twice": 24}
# Bad inputs a test tries in one case (forged URLs: 5 kinds).
TRIED = {"test_forged_cross_job_cross_node_and_unsigned_urls_get_403": 5}


@dataclass
class Round:
    """One fault round's counts."""

    name: str
    n: int
    lost: int = 0
    duplicated: int = 0
    errors: int = 0
    recover_seconds: float = 0.0
    released_again: int = 0  # made FAILED by the fault, released again by their owner
    notes: list[str] = field(default_factory=list)

    def figure(self) -> dict[str, object]:
        return {
            "bench": "reliability",
            "part": "fault",
            "fault": self.name,
            "n": self.n,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "errors": self.errors,
            "recover_seconds": round(self.recover_seconds, 1),
            "failed_then_released_again": self.released_again,
        }


def release_retrying(world: ScaleOut, index: int, uuid: str, printer: str, limit: float) -> bool:
    """Release like a patient user: retry through outages for ``limit`` seconds. A 409 after an
    attempt whose answer was lost means the release had been committed: success."""
    deadline = time.monotonic() + limit
    tried = False
    while True:
        server = world.servers[index % 2]
        try:
            with server.admin_client() as admin:
                admin.release(uuid, "alice", PIN, printer)
            return True
        except Conflict:
            if tried:
                return True
            raise
        except (CloudError, OSError):
            tried = True
            if time.monotonic() > deadline:
                return False
            index += 1  # the other server, as a load balancer would
            time.sleep(0.2)


def fault_round(
    world: ScaleOut, name: str, inject: Callable[[], None], n: int, threads: int = 4
) -> Round:
    """Submit ``n`` jobs, release them from ``threads`` clients, call ``inject`` (the fault and
    its recovery) once a third is released; count what the printers printed."""
    result = Round(name, n)
    uuids = world.submit(n)
    printers = sorted(world.printers)
    released = threading.Semaphore(0)

    def one(index: int) -> bool:
        ok = release_retrying(world, index, uuids[index], printers[index % len(printers)], 90)
        released.release()
        return ok

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        for _ in range(max(1, n // 3)):
            released.acquire(timeout=60)
        inject()
        recovered = time.monotonic()
        result.errors = sum(not f.result() for f in futures)
    states = world.wait(uuids, timeout=180)
    result.recover_seconds = time.monotonic() - recovered
    # A job the fault made FAILED (a printer that lost its queue says "Job not found") is
    # shown failed with its reason and may be released again, as its owner would: do so once.
    failed = [u for u in uuids if states.get(u) is JobState.FAILED]
    for index, uuid in enumerate(failed):
        release_retrying(world, index, uuid, printers[(index + 1) % len(printers)], 60)
    if failed:
        states.update(world.wait(failed, timeout=120))
    result.released_again = len(failed)
    time.sleep(0.5)
    counts = world.printed()
    for uuid in uuids:
        printed = counts.get(f"pullprint-{uuid}", 0)
        if printed == 0:
            result.lost += 1
            result.notes.append(f"{uuid}: {states.get(uuid)} and not printed")
        elif printed > 1:
            result.duplicated += 1
    return result


def _pid_of(fragment: str) -> int:
    """The pid of the process whose command line names ``fragment`` (a config path)."""
    for proc in psutil.process_iter(["cmdline"]):
        if fragment in " ".join(proc.info.get("cmdline") or []):
            return int(proc.pid)
    raise RuntimeError(f"no process for {fragment}")


def kill_cloud(world: ScaleOut) -> None:
    """SIGKILL server a (requests in flight die with it), then start it again."""
    os.kill(_pid_of(str(world.a.config_path)), signal.SIGKILL)
    time.sleep(1.0)
    world.a.stop()  # reaps the dead process
    world.a.start()


def kill_node(world: ScaleOut) -> None:
    """SIGKILL node2 wherever it is, then start it again (its journal resumes the jobs)."""
    node = world.nodes[1]
    node.kill()
    time.sleep(1.0)
    node.start()


def bounce_printer(world: ScaleOut) -> None:
    """Stop one printer for 3 s (its node retries), then start it on the same port."""
    printer = world.printers[sorted(world.printers)[0]]
    printer.stop()
    time.sleep(3.0)
    printer.start()


def restart_database(pg: PostgresServer) -> Callable[[], None]:
    """``pg_ctl restart`` of the world's PostgreSQL (fast shutdown: connections are cut)."""

    def restart() -> None:
        prefix = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        if prefix:
            pwd.getpwnam(RUN_AS)
        subprocess.run(
            [
                *prefix,
                str(pg.bin / "pg_ctl"),
                *("-D", str(pg.data), "-l", str(pg.log_path)),
                *("-m", "fast", "-w", "-t", "60", "restart"),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )

    return restart


def rss_mb(world: ScaleOut) -> dict[str, float]:
    """RSS of every server and node process of the world."""
    found: dict[str, float] = {}
    for label, path in [("cloud-a", world.a.config_path)] + (
        [("cloud-b", world.b.config_path)] if world.b is not None else []
    ):
        found[label] = round(psutil.Process(_pid_of(str(path))).memory_info().rss / 2**20, 1)
    for name, node in zip(world.node_names, world.nodes, strict=True):
        if node.proc is not None and node.proc.poll() is None:
            found[name] = round(psutil.Process(node.proc.pid).memory_info().rss / 2**20, 1)
    return found


def soak(
    world: ScaleOut, held: int, concurrent: int, seconds: float, drain: float
) -> dict[str, object]:
    """``held`` jobs, released by ``concurrent`` clients until all are or ``seconds`` pass; then
    up to ``drain`` seconds for the printers to print what was released.

    A released job is lost when it ended in any state but completed, or completed without
    reaching a printer; one still queued or printing when ``drain`` runs out is counted as
    ``in_flight`` (the 6 printers print a few jobs a second, 200 clients release faster).
    """
    uuids = world.submit(held, threads=8)
    start_rss = rss_mb(world)
    printers = sorted(world.printers)
    deadline = time.monotonic() + seconds
    next_index = iter(range(held))
    lock = threading.Lock()
    released: list[str] = []
    failures: list[str] = []

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            uuid = uuids[index]
            try:
                with world.servers[index % 2].admin_client() as admin:
                    admin.release(uuid, "alice", PIN, printers[index % len(printers)])
                with lock:
                    released.append(uuid)
            except (CloudError, OSError) as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}"[:160])

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    releasing = time.monotonic() - began
    end_rss = rss_mb(world)
    drained = time.monotonic()
    states = world.wait(released, timeout=drain, every=2.0)
    draining = time.monotonic() - drained
    time.sleep(0.5)
    counts = world.printed()
    completed = [u for u in released if states.get(u) is JobState.COMPLETED]
    ended_otherwise = [u for u in released if states.get(u) in FINAL - {JobState.COMPLETED}]
    in_flight = [u for u in released if states.get(u) not in FINAL]
    return {
        "bench": "reliability",
        "part": "soak",
        "held": held,
        "concurrent": concurrent,
        "released": len(released),
        "release_seconds": round(releasing, 1),
        "releases_per_s": round(len(released) / releasing, 1) if releasing else 0.0,
        "drain_seconds": round(draining, 1),
        "completed": len(completed),
        "printed_per_s": round(len(completed) / (releasing + draining), 1),
        "in_flight": len(in_flight),
        "in_flight_states": dict(collections.Counter(str(states.get(u)) for u in in_flight)),
        "lost": len(ended_otherwise) + sum(counts.get(f"pullprint-{u}", 0) == 0 for u in completed),
        "duplicated": sum(counts.get(f"pullprint-{uuid}", 0) > 1 for uuid in released),
        "errors": len(failures),
        "error_samples": sorted(collections.Counter(failures).items())[:5],
        "rss_start_mb": start_rss,
        "rss_after_releases_mb": end_rss,
        "rss_end_mb": rss_mb(world),
    }


def run_tests(selection: list[str], junit: Path) -> dict[str, object]:
    """Run pytest on ``selection``; count cases, failures and what they tried."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            f"--junitxml={junit}",
            *selection,
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        timeout=900,
    )
    cases = ET.parse(junit).getroot().iter("testcase")  # noqa: S314 - pytest's own file
    tried = failed = 0
    failures: list[str] = []
    for case in cases:
        name = case.get("name", "")
        base = name.split("[", 1)[0]
        weight = INJECTED.get(base, TRIED.get(base, 1))
        tried += weight
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failures.append(name)
    return {"tried": tried, "failed": failed, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="10,000 held, 200 concurrent, 5 min")
    parser.add_argument("--jobs-per-fault", type=int, default=24)
    parser.add_argument("--skip-tests", action="store_true", help="only the faults and the soak")
    parser.add_argument(
        "--drain", type=float, default=300.0, help="seconds the soak waits for released jobs"
    )
    args = parser.parse_args(argv)
    held, concurrent, seconds = (10_000, 200, 300.0) if args.full else (300, 20, 60.0)
    lost = duplicated = errors = faults = bad = 0
    with (
        tempfile.TemporaryDirectory(prefix="pullprint-reliability-") as tmp,
        PostgresServer() as pg,
    ):
        root = Path(tmp)
        root.chmod(0o755)
        with ScaleOut(root / "world", pg.create_database("reliability")) as world:
            world.run(6, timeout=120)  # warm-up (creates the account, see ScaleOut.release)
            injections: list[tuple[str, Callable[[], None]]] = [
                ("cloud_sigkill_mid_request", lambda: kill_cloud(world)),
                ("node_sigkill", lambda: kill_node(world)),
                ("printer_stop_start", lambda: bounce_printer(world)),
                ("database_restart", restart_database(pg)),
            ]
            for name, inject in injections:
                result = fault_round(world, name, inject, args.jobs_per_fault)
                emit(result.figure())
                for note in result.notes[:5]:
                    print(f"# {name}: {note}", file=sys.stderr)
                lost, duplicated = lost + result.lost, duplicated + result.duplicated
                errors += result.errors
                faults += 1
            soaked = soak(world, held, concurrent, seconds, drain=args.drain)
            emit(soaked)
            lost += int(str(soaked["lost"]))
            duplicated += int(str(soaked["duplicated"]))
            errors += int(str(soaked["errors"]))
            soak_in_flight = int(str(soaked["in_flight"]))
        if not args.skip_tests:
            for part, selection in (
                ("fault_tests", FAULT_TESTS),
                ("bad_input_tests", BAD_INPUT_TESTS),
            ):
                tally = run_tests(selection, root / f"{part}.xml")
                emit({"bench": "reliability", "part": part, **tally})
                errors += int(str(tally["failed"]))
                if part == "fault_tests":
                    faults += int(str(tally["tried"]))
                else:
                    bad += int(str(tally["tried"]))
    emit(
        {
            "suite": "reliability",
            "lost": lost,
            "duplicated": duplicated,
            "errors": errors,
            "faults_tried": faults,
            "bad_inputs_tried": bad,
            "soak_in_flight": soak_in_flight,
            "full": args.full,
        }
    )
    return 0 if lost == duplicated == errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
