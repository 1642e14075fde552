"""Exactly once across crashes: the node kills itself (SIGKILL, via the test-only hook
PULLPRINT_FAULT=<step>) right after journaling each step, is started again, and the jobs at the
printer are counted. IPP: every job printed exactly once. Raw 9100: at most once, and a job that
died while sending is reported FAILED "unknown whether it printed", never sent again."""

from __future__ import annotations

import time
from pathlib import Path

from pullprint.daemon.journal import FAULT_ENV, STEPS
from pullprint.ipp.client import IppClient
from pullprint.model import JobState, Printer
from pullprint.peers.jetdirect import SocketSink
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold

FINAL = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}
ROUNDS = 2  # every step, every protocol, twice: 24 crashes


def _printer_jobs(uri: str, name: str) -> int:
    with IppClient(uri) as client:
        return sum(1 for job in client.get_jobs("all") if job.job_name == name)


def test_sigkill_at_every_step_loses_none_prints_none_twice(world_dir: Path) -> None:
    sink = SocketSink().start()
    try:
        with Stack(world_dir / "stack", start_node=False) as stack:
            with stack.admin() as admin:
                admin.add_printer(Printer("raw1", sink.uri, "node1"))
            results: list[tuple[str, str, JobState, int]] = []
            for printer in ("printer1", "raw1") * ROUNDS:
                for step in STEPS:
                    _, uuid = print_and_hold(stack, world_dir, pages=1)
                    node = stack.start_node_process({FAULT_ENV: step})
                    with stack.admin() as admin:
                        admin.release(uuid, "alice", "1234", printer)
                    assert node.proc is not None
                    code = node.proc.wait(timeout=30)
                    assert code == -9, f"{printer}/{step}: node exited {code}, not killed"
                    stack.start_node_process()  # no fault: resumes the job
                    final = stack.wait_state(uuid, FINAL, timeout=30)
                    name = f"pullprint-{uuid}"
                    if printer == "printer1":
                        count = _printer_jobs(stack.printers[0].uri, name)
                    else:
                        time.sleep(0.2)
                        count = sum(1 for data in sink.received() if name.encode() in data)
                    results.append((printer, step, final.state, count))
                    assert stack.node is not None
                    stack.node.stop()
            for printer, step, state, count in results:
                if printer == "raw1" and step == "sending":
                    assert (state, count) == (JobState.FAILED, 0), (printer, step, state, count)
                else:
                    assert (state, count) == (JobState.COMPLETED, 1), (printer, step, state, count)
            with stack.admin() as admin:
                failed = [j for j in admin.list_jobs(user="alice") if j.state is JobState.FAILED]
            assert len(failed) == ROUNDS
            assert "unknown whether it printed" in failed[0].state_reason
    finally:
        sink.stop()
