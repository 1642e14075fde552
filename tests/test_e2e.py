"""End to end against the real peers: cupsd with our queue, filter and backend; ippeveprinter;
the cloud service; the node daemon. Each test follows one story of the end-to-end issue."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pikepdf

from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState, TransactionStatus
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack
from tests.cupsweb import web_cancel

HELD = {CupsJobState.HELD}


def print_and_hold(stack: Stack, tmp: Path, pages: int = 3, user: str = "alice") -> tuple[int, str]:
    assert stack.cups is not None
    doc = make_pdf(tmp / f"doc{pages}.pdf", pages)
    cups_job = stack.cups.lp(doc, user=user)
    attrs = stack.cups.wait_job(cups_job, HELD)
    assert attrs["job-state"] == CupsJobState.HELD
    job = stack.wait_cloud_job(user, cups_job)
    assert job.state is JobState.HELD
    return cups_job, job.uuid


def test_print_hold_release_complete(stack: Stack, world_dir: Path) -> None:
    cups_job, uuid = print_and_hold(stack, world_dir)
    job = stack.wait_cloud_job("alice", cups_job)
    assert (job.owner, job.pages, job.copies, job.queue) == ("alice", 3, 1, "PullPrint")
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.PENDING
    assert job.transaction.amount == 0

    out = stack.cli("release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234")
    assert out.returncode == 0, out.stderr
    final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED})
    assert final.state is JobState.COMPLETED, final.state_reason
    assert final.impressions == 3

    files = stack.printers[0].spool_files()
    assert len(files) == 1
    with pikepdf.open(files[0]) as pdf:
        assert len(pdf.pages) == 3

    assert stack.cups is not None
    attrs = stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})
    assert attrs["job-state"] == CupsJobState.COMPLETED
    tx = final.transaction
    assert tx is not None
    assert tx.status is TransactionStatus.COMPLETED
    assert tx.amount == Decimal("0.15")  # 3 impressions x 0.05
    assert "0.15" in tx.summary()


def test_wrong_pin_is_refused_and_nothing_prints(stack: Stack, world_dir: Path) -> None:
    cups_job, uuid = print_and_hold(stack, world_dir)
    out = stack.cli("release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "9999")
    assert out.returncode == 3
    assert "wrong PIN" in out.stderr
    with stack.admin() as admin:
        assert admin.get_job(uuid).state is JobState.HELD
    assert stack.cups is not None
    assert stack.cups.job(cups_job)["job-state"] == CupsJobState.HELD
    time.sleep(0.5)
    assert stack.printers[0].spool_files() == []


def test_cancel_in_cups_web_ui_cancels_everywhere(
    stack: Stack, world_dir: Path, operator_account: tuple[str, str]
) -> None:
    cups_job, uuid = print_and_hold(stack, world_dir)
    assert stack.cups is not None
    page = web_cancel(stack.cups.url, cups_job, "PullPrint", operator_account)
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert f"Job {cups_job} has been canceled" in text, text
    job = stack.wait_state(uuid, {JobState.CANCELED}, timeout=15)
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.CANCELED
    assert job.transaction.amount == 0
    out = stack.cli("release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234")
    assert out.returncode == 3
    assert stack.printers[0].spool_files() == []


def test_cancel_by_owner_in_cloud_cancels_cups_job(stack: Stack, world_dir: Path) -> None:
    cups_job, uuid = print_and_hold(stack, world_dir)
    out = stack.cli("cancel", uuid, "--user", "alice")
    assert out.returncode == 0, out.stderr
    assert stack.cups is not None
    attrs = stack.cups.wait_job(cups_job, {CupsJobState.CANCELED}, timeout=15)
    assert attrs["job-state"] == CupsJobState.CANCELED
    with stack.admin() as admin:
        job = admin.get_job(uuid)
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.CANCELED


def test_other_user_cannot_cancel(stack: Stack, world_dir: Path) -> None:
    cups_job, uuid = print_and_hold(stack, world_dir)
    out = stack.cli("cancel", uuid, "--user", "bob")
    assert out.returncode == 3
    assert stack.cups is not None
    assert stack.cups.job(cups_job)["job-state"] == CupsJobState.HELD


def test_cloud_down_while_printing_to_the_queue(stack: Stack, world_dir: Path) -> None:
    assert stack.cups is not None
    stack.cloud.stop()
    doc = make_pdf(world_dir / "offline.pdf", 2)
    cups_job = stack.cups.lp(doc, user="alice")
    stack.cups.wait_job(cups_job, HELD, timeout=30)
    outbox = list((stack.root / "spool" / "outbox").glob("*.json"))
    assert len(outbox) == 1
    stack.cloud.start()
    job = stack.wait_cloud_job("alice", cups_job, timeout=30)
    assert job.pages == 2
    out = stack.cli(
        "release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
    )
    assert out.returncode == 0, out.stderr
    final = stack.wait_state(job.uuid, {JobState.COMPLETED, JobState.FAILED})
    assert final.state is JobState.COMPLETED
    assert final.impressions == 2
    stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})
    assert list((stack.root / "spool" / "outbox").glob("*.json")) == []


def test_sigterm_mid_job_registers_nothing(stack: Stack, world_dir: Path) -> None:
    """The real backend executable, killed while the document is still arriving."""
    assert stack.cups is not None
    backend = stack.cups.root / "bin" / "backend" / "pullprint"
    env = dict(
        os.environ,
        PULLPRINT_CONFIG=str(stack.config_path),
        DEVICE_URI="pullprint:/",
        PRINTER="PullPrint",
        CONTENT_TYPE="application/pdf",
    )
    proc = subprocess.Popen(
        [str(backend), "77", "alice", "half", "1", "job-uuid=urn:uuid:0000-half"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    doc = make_pdf(world_dir / "big.pdf", 40).read_bytes()
    proc.stdin.write(doc[: len(doc) // 2])
    proc.stdin.flush()
    time.sleep(1.0)  # the backend has started and is blocked reading the rest
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)  # ends while its input is still open
    proc.stdin.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode != 3, err
    assert b"nothing was registered" in err
    spool = stack.root / "spool"
    assert list((spool / "docs").iterdir()) == []
    assert list((spool / "outbox").glob("*.json")) == []
    assert list((spool / "jobs").iterdir()) == []
    with stack.admin() as admin:
        assert [j for j in admin.list_jobs(user="alice") if j.title == "half"] == []


def test_backend_discovery_line(stack: Stack) -> None:
    assert stack.cups is not None
    out = subprocess.run(
        [str(stack.cups.root / "bin" / "backend" / "pullprint")], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("network pullprint:/ ")
    lpinfo = stack.cups.run("lpinfo", "-v").stdout
    assert "pullprint:/" in lpinfo


def test_python_is_reachable_by_lp() -> None:
    """CUPS runs the filter as lp: the interpreter must be executable by that user."""
    out = subprocess.run(
        ["su", "-s", "/bin/sh", "lp", "-c", f"{sys.executable} -c 'import pullprint'"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, (
        f"{sys.executable}: {out.stderr} (build the venv on /usr/bin/python3)"
    )


def test_cupsd_restart_then_cancel_in_cups_cancels_in_cloud(stack: Stack, world_dir: Path) -> None:
    """Events queued in cupsd are lost when it restarts: the node resubscribes and resyncs."""
    assert stack.cups is not None
    cups_a, uuid_a = print_and_hold(stack, world_dir, pages=1)
    cups_b, uuid_b = print_and_hold(stack, world_dir, pages=2)
    stack.cups.restart()
    assert stack.cups.job(cups_a)["job-state"] == CupsJobState.HELD
    stack.cups.connection().cancelJob(cups_a)
    job = stack.wait_state(uuid_a, {JobState.CANCELED}, timeout=20)
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.CANCELED
    with stack.admin() as admin:
        assert admin.get_job(uuid_b).state is JobState.HELD
    assert stack.cups.job(cups_b)["job-state"] == CupsJobState.HELD


def test_operator_release_in_cups_without_release_printer_holds_again(
    stack: Stack, world_dir: Path
) -> None:
    assert stack.cups is not None
    cups_job, uuid = print_and_hold(stack, world_dir)
    stack.cups.run("lp", "-i", str(cups_job), "-H", "resume")
    deadline = time.monotonic() + 20
    while True:  # the backend ran again (cupsd logs it) and held the job again
        lines = [
            line
            for line in stack.cups.error_log.read_text(errors="replace").splitlines()
            if f"[Job {cups_job}]" in line
        ]
        reruns = sum(1 for line in lines if "Started backend" in line)
        holds = sum(1 for line in lines if "Backend returned status 3" in line)
        if reruns == 2 and holds == 2:
            break
        assert time.monotonic() < deadline, "the backend did not run again and hold the job"
        time.sleep(0.1)
    assert stack.cups.job(cups_job)["job-state"] == CupsJobState.HELD
    with stack.admin() as admin:
        assert admin.get_job(uuid).state is JobState.HELD
    assert stack.printers[0].spool_files() == []


def test_operator_release_in_cups_prints_on_release_printer(world_dir: Path) -> None:
    with Stack(world_dir / "stack", node_options={"release_printer": "printer1"}) as stack:
        assert stack.cups is not None
        cups_job, uuid = print_and_hold(stack, world_dir, pages=2)
        stack.cups.run("lp", "-i", str(cups_job), "-H", "resume")
        final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert final.impressions == 2
        assert final.printer == "printer1"
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        assert len(stack.printers[0].spool_files()) == 1


def test_refused_after_the_cloud_came_back_cancels_the_cups_job(
    stack: Stack, world_dir: Path
) -> None:
    """A job held while the cloud was down, then refused when the outbox sends it (its user is
    no pullprint user): the node cancels the CUPS job instead of leaving it held for nobody."""
    assert stack.cups is not None
    stack.cloud.stop()
    cups_job = stack.cups.lp(make_pdf(world_dir / "stranger.pdf", 1), user="mallory")
    stack.cups.wait_job(cups_job, HELD, timeout=30)
    assert len(list((stack.root / "spool" / "outbox").glob("*.json"))) == 1
    stack.cloud.start()
    stack.cups.wait_job(cups_job, {CupsJobState.CANCELED}, timeout=30)
    assert list((stack.root / "spool" / "outbox").glob("*.json")) == []
    assert list((stack.root / "spool" / "jobs").glob("*.json")) == []
