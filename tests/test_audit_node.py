"""Audit of the node issue (6): points no other test checked, against the real peers.

- printer-state-reasons of a real IPP printer (ippeveprinter, set by its print command with a
  ``STATE:`` line) reach the cloud job as its waiting reason;
- graceful SIGTERM while a job prints: the node finishes it (within node.drain_seconds), then stops;
- several printers per node: deliveries to two printers run at the same time, and one printer
  gets one job at a time.
"""

from __future__ import annotations

import json
import shlex
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from pullprint.model import JobState
from pullprint.peers.ippeve import IppEvePrinter
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold

END = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}


def slow(printer: IppEvePrinter, seconds: float, state_line: str = "") -> None:
    """Rewrite the printer's print command (run per job): optional ``STATE:`` line first, then
    ``seconds`` of printing, then the real counting command."""
    printer.command_delay = seconds
    printer._write_command()
    if state_line:
        text = printer.command_path.read_text()
        head, _, rest = text.partition("exec ")
        clear = state_line.replace("+", "-", 1)
        wrapped = (
            f"{head}echo {shlex.quote(state_line)} >&2\n"
            f"{rest.strip()}\nstatus=$?\necho {shlex.quote(clear)} >&2\nexit $status\n"
        )
        printer.command_path.write_text(wrapped)


def release(stack: Stack, uuid: str, printer: str) -> None:
    out = stack.cli("release", uuid, "--printer", printer, "--user", "alice", "--pin", "1234")
    assert out.returncode == 0, out.stderr


def test_printer_state_reasons_reach_the_cloud(world_dir: Path) -> None:
    with Stack(world_dir / "stack") as stack:
        slow(stack.printers[0], 6.0, "STATE: +media-empty")
        _, uuid = print_and_hold(stack, world_dir, pages=1)
        release(stack, uuid, "printer1")
        deadline = time.monotonic() + 15
        seen = ""
        with stack.admin() as admin:
            while time.monotonic() < deadline:
                job = admin.get_job(uuid)
                if "media-empty" in job.state_reason:
                    seen = job.state_reason
                    break
                assert job.state not in END, job.state_reason
                time.sleep(0.1)
        assert seen.startswith("waiting:"), "media-empty never reached the cloud job"
        final = stack.wait_state(uuid, END, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason


def test_sigterm_while_printing_finishes_the_job_then_stops(world_dir: Path) -> None:
    with Stack(world_dir / "stack", node_options={"drain_seconds": 30.0}) as stack:
        slow(stack.printers[0], 4.0)
        _, uuid = print_and_hold(stack, world_dir, pages=2)
        release(stack, uuid, "printer1")
        stack.wait_state(uuid, {JobState.PRINTING}, timeout=15)
        assert stack.node is not None and stack.node.proc is not None
        started = time.monotonic()
        stack.node.proc.send_signal(signal.SIGTERM)
        code = stack.node.proc.wait(timeout=40)
        took = time.monotonic() - started
        assert code == 0
        with stack.admin() as admin:
            job = admin.get_job(uuid)
        assert job.state is JobState.COMPLETED, (job.state, job.state_reason, took)
        assert job.impressions == 2
        assert len(stack.printers[0].spool_files()) == 1


def _plan_times(log_path: Path) -> dict[str, float]:
    """job uuid -> when the node made its plan (just before sending), from the JSON log."""
    times: dict[str, float] = {}
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        msg = record.get("msg", "")
        if msg.startswith("job=") and " plan=" in msg:
            uuid = msg[4:].split(" ", 1)[0]
            ts = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            times[uuid] = ts.timestamp()
    return times


def _printed_at(printer: IppEvePrinter) -> dict[str, float]:
    """pullprint job uuid -> when the printer's command finished printing it."""
    return {
        str(e["job_name"]).removeprefix("pullprint-"): float(e["time"])  # type: ignore[arg-type]
        for e in printer.job_log()
    }


def test_two_printers_at_once_one_job_at_a_time_per_printer(world_dir: Path) -> None:
    delay = 3.0
    with Stack(world_dir / "stack", printers=2, node_options={"log_format": "json"}) as stack:
        for peer in stack.printers:
            slow(peer, delay)
        jobs = [print_and_hold(stack, world_dir, pages=1)[1] for _ in range(3)]
        a, b, c = jobs
        for uuid, name in ((a, "printer1"), (b, "printer1"), (c, "printer2")):
            release(stack, uuid, name)
        for uuid in jobs:
            assert stack.wait_state(uuid, END, timeout=40).state is JobState.COMPLETED
        planned = _plan_times(stack.root / "node.log")
        done1, done2 = _printed_at(stack.printers[0]), _printed_at(stack.printers[1])
        # printer2's job was sent while printer1 was still printing job a
        assert planned[c] < done1[a], (planned, done1, done2)
        # printer1 got job b only after job a was done there
        assert planned[b] >= done1[a] - 0.2, (planned, done1)
        assert done2[c] < done1[b]


def test_cancel_in_the_cloud_while_printing_cancels_at_the_printer(world_dir: Path) -> None:
    """Issue 6: "Cancel-Job is sent when the job is cancelled while printing", through the node;
    the CUPS job is canceled too (issue 2/6: cancel in the cloud -> CUPS job canceled)."""
    from pullprint.cups.jobs import CupsJobState
    from pullprint.ipp.client import IppClient

    with Stack(world_dir / "stack") as stack:
        slow(stack.printers[0], 15.0)
        cups_job, uuid = print_and_hold(stack, world_dir, pages=1)
        release(stack, uuid, "printer1")
        stack.wait_state(uuid, {JobState.PRINTING}, timeout=15)
        time.sleep(0.5)
        out = stack.cli("cancel", uuid, "--user", "alice")
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(uuid, END, timeout=20)
        assert final.state is JobState.CANCELED, final.state_reason
        deadline = time.monotonic() + 15
        while True:
            with IppClient(stack.printers[0].uri) as client:
                states = [
                    j.job_state for j in client.get_jobs("all") if j.job_name == f"pullprint-{uuid}"
                ]
            if states and states[0] in (7, 8):  # canceled or aborted at the printer
                break
            assert time.monotonic() < deadline, f"printer job still in state {states}"
            time.sleep(0.2)
        assert stack.cups is not None
        stack.cups.wait_job(cups_job, {CupsJobState.CANCELED}, timeout=15)


def test_node_start_resyncs_a_cancel_made_in_cups_while_it_was_down(world_dir: Path) -> None:
    """Issue 6: "a Get-Jobs resync on start": a cancel in CUPS while the node is down reaches
    the cloud when the node starts."""
    from pullprint.model import TransactionStatus

    with Stack(world_dir / "stack") as stack:
        cups_job, uuid = print_and_hold(stack, world_dir, pages=1)
        assert stack.node is not None and stack.cups is not None
        stack.node.stop()
        stack.cups.connection().cancelJob(cups_job)
        time.sleep(1.0)
        with stack.admin() as admin:
            assert admin.get_job(uuid).state is JobState.HELD  # nobody told the cloud yet
        stack.start_node_process()
        job = stack.wait_state(uuid, {JobState.CANCELED}, timeout=20)
        assert job.transaction is not None
        assert job.transaction.status is TransactionStatus.CANCELED


def test_pwg_raster_only_printer_gets_a_conversion_through_the_node(world_dir: Path) -> None:
    """Issue 5/6: "Document format per document-format-supported": a printer that takes no PDF
    gets PWG raster, chosen by the plan, through the whole stack."""
    from pullprint.model import Printer

    with Stack(world_dir / "stack") as stack:
        with IppEvePrinter(world_dir / "pwg", name="pwg1", formats="image/pwg-raster") as pwg:
            with stack.admin() as admin:
                admin.add_printer(Printer("pwg1", pwg.uri, "node1"))
            _, uuid = print_and_hold(stack, world_dir, pages=2)
            release(stack, uuid, "pwg1")
            final = stack.wait_state(uuid, END, timeout=60)
            assert final.state is JobState.COMPLETED, final.state_reason
            assert final.impressions == 2
            files = pwg.spool_files()
            assert len(files) == 1 and files[0].read_bytes()[:4] == b"RaS2"


def test_ipps_through_the_node_pinned_prints_unpinned_fails(world_dir: Path) -> None:
    """Issue 6: IPPS with the certificate pinned per printer by the admin, through the whole
    stack; the same self-signed printer without a pin is refused (system CAs), never printed."""
    import hashlib
    import ssl

    from pullprint.model import Printer

    with IppEvePrinter(world_dir / "tls", name="tls1") as secure:
        der = ssl.PEM_cert_to_DER_cert(secure.certificate().read_text())
        pin = hashlib.sha256(der).hexdigest()
        options = {
            "tls_pins": {"pinned": pin},
            "retry_window_seconds": 2.0,
            "retry_max_backoff": 0.5,
        }
        with Stack(world_dir / "stack", node_options=options) as stack:
            with stack.admin() as admin:
                admin.add_printer(Printer("pinned", secure.ipps_uri, "node1"))
                admin.add_printer(Printer("unpinned", secure.ipps_uri, "node1"))
            _, bad = print_and_hold(stack, world_dir, pages=1)
            release(stack, bad, "unpinned")
            refused = stack.wait_state(bad, END, timeout=30)
            assert refused.state is JobState.FAILED, refused.state_reason
            assert secure.spool_files() == []
            _, good = print_and_hold(stack, world_dir, pages=2)
            release(stack, good, "pinned")
            final = stack.wait_state(good, END, timeout=30)
            assert final.state is JobState.COMPLETED, final.state_reason
            assert final.impressions == 2
            assert len(secure.spool_files()) == 1
