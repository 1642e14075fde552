"""Audit of issues 4, 6 and 7 through the whole stack (cupsd + our queue, ippeveprinter, cloud,
node): the release paths other tests check only at the API.

- issue 7, scenario 1 "released by operator or creator, or printed directly": an operator's
  Release Job in CUPS, and Direct mode (the owner authenticates at the printer), each end with the
  print-out Completed and its cost in the Printer Usage transaction;
- issue 4, Automatic mode on the queue: the job prints on the fixed printer without a release;
- issue 6, LPR after a crash: at most once (a crash while sending is reported, never resent).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from pullprint.cloud.accounting.client import AccountingClient
from pullprint.cloudsync.client import AdminClient
from pullprint.cups.jobs import CupsJobState
from pullprint.daemon.journal import FAULT_ENV
from pullprint.model import JobState, Printer, TransactionStatus
from pullprint.peers.documents import make_pdf
from pullprint.peers.jetdirect import SocketSink
from pullprint.peers.lpd import LpdServer
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold

END = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}


def admin_of(stack: Stack) -> AdminClient:
    return AdminClient(stack.cloud.url, stack.cloud.admin_token)


def assert_completed_with_cost(stack: Stack, uuid: str, pages: int) -> None:
    with AccountingClient(stack.cloud.url, stack.cloud.admin_token) as acc:
        view = acc.wait_printout(uuid, lambda v: v["status_code"] != "pending")
    assert view["printout_status"] == "Completed", view
    assert view["type"] == "Printer Usage" and view["status"] == "Completed"
    assert Decimal(view["amount"]) == Decimal("0.05") * pages
    assert view["has_cost_data"] is True


def test_scenario_1_released_by_an_operator_in_cups(world_dir: Path) -> None:
    with Stack(world_dir / "stack", node_options={"release_printer": "printer1"}) as stack:
        assert stack.cups is not None
        cups_job, uuid = print_and_hold(stack, world_dir, pages=2)
        stack.cups.run("lp", "-i", str(cups_job), "-H", "resume")  # the operator's Release Job
        final = stack.wait_state(uuid, END, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert "cups" in final.released_by
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        assert_completed_with_cost(stack, uuid, 2)


def test_scenario_1_printed_directly_in_direct_mode(world_dir: Path) -> None:
    with Stack(world_dir / "stack") as stack:
        assert stack.cups is not None
        with admin_of(stack) as admin:
            admin.set_release_mode("printer", "printer1", "direct", direct_seconds=60)
            cups_job, uuid = print_and_hold(stack, world_dir, pages=3)
            released, _still = admin.authenticate("printer1", "alice", "1234")
            assert [j.uuid for j in released] == [uuid]
        final = stack.wait_state(uuid, END, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert final.impressions == 3
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        assert_completed_with_cost(stack, uuid, 3)


def test_automatic_queue_prints_without_a_release(world_dir: Path) -> None:
    with Stack(world_dir / "stack") as stack:
        assert stack.cups is not None
        with admin_of(stack) as admin:
            admin.set_release_mode("queue", "PullPrint", "automatic", printer="printer1")
        cups_job = stack.cups.lp(make_pdf(world_dir / "auto.pdf", 2), user="alice")
        job = stack.wait_cloud_job("alice", cups_job)
        final = stack.wait_state(job.uuid, END, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert final.printer == "printer1" and final.impressions == 2
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        assert final.transaction is not None
        assert final.transaction.status is TransactionStatus.COMPLETED


def test_lpr_after_a_crash_is_at_most_once(world_dir: Path) -> None:
    sink = SocketSink().start()
    try:
        with Stack(world_dir / "stack", start_node=False) as stack:
            assert stack.cups is not None
            stack.cups.run("lpadmin", "-p", "Sink", "-v", sink.uri, "-m", "raw", "-E")
            with LpdServer(stack.cups) as lpd:
                with stack.admin() as admin:
                    admin.add_printer(Printer("lpr1", lpd.uri("Sink"), "node1"))
                results = {}
                for step in ("downloaded", "sending", "sent"):
                    _, uuid = print_and_hold(stack, world_dir, pages=1)
                    node = stack.start_node_process({FAULT_ENV: step})
                    with stack.admin() as admin:
                        admin.release(uuid, "alice", "1234", "lpr1")
                    assert node.proc is not None
                    assert node.proc.wait(timeout=30) == -9, f"{step}: node not killed"
                    stack.start_node_process()
                    final = stack.wait_state(uuid, END, timeout=30)
                    time.sleep(1.0)  # cups-lpd -> Sink -> socket sink
                    count = sum(
                        1 for data in sink.received() if f"pullprint-{uuid}".encode() in data
                    )
                    results[step] = (final.state, count, final.state_reason)
                    assert stack.node is not None
                    stack.node.stop()
        assert results["downloaded"][:2] == (JobState.COMPLETED, 1), results
        assert results["sent"][:2] == (JobState.COMPLETED, 1), results
        state, count, reason = results["sending"]
        assert count <= 1, results
        assert state is JobState.FAILED and "unknown whether it printed" in reason, results
    finally:
        sink.stop()
