"""Audit of the end-to-end and node issues (2, 4, 6): points of the issue texts that no other test
checked, each against the real peers (private cupsd with our queue, ippeveprinter, cloud, node)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState, StorageKind
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack

HELD = {CupsJobState.HELD}
END = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}


def test_registration_carries_every_field_of_the_issue(stack: Stack, world_dir: Path) -> None:
    """Issue 2: owner = job-originating-user-name, title, copies, options, pages, size, sha256,
    queue, CUPS job-id and job-uuid, as the real backend registers them."""
    assert stack.cups is not None
    doc = make_pdf(world_dir / "fields.pdf", 2)
    cups_job = stack.cups.lp(
        doc, user="alice", title="Audit fields", options={"copies": "2", "Duplex": "DuplexNoTumble"}
    )
    stack.cups.wait_job(cups_job, HELD)
    job = stack.wait_cloud_job("alice", cups_job)
    assert (job.owner, job.title, job.copies, job.pages) == ("alice", "Audit fields", 2, 2)
    assert job.queue == "PullPrint" and job.cups_job_id == cups_job
    assert job.options.get("Duplex") == "DuplexNoTumble", job.options
    assert "job-password" not in job.options
    assert job.size > 0 and re.fullmatch(r"[0-9a-f]{64}", job.sha256)
    cups_uuid = stack.cups.job(cups_job).get("job-uuid")
    assert cups_uuid and job.cups_job_uuid == cups_uuid
    assert job.uuid != cups_uuid  # our own identity, never CUPS's


def test_cli_jobs_json_lists_the_held_job(stack: Stack, world_dir: Path) -> None:
    """Issue 2: `pullprint jobs --user U --json`."""
    assert stack.cups is not None
    cups_job = stack.cups.lp(make_pdf(world_dir / "json.pdf", 1), user="alice")
    stack.cups.wait_job(cups_job, HELD)
    job = stack.wait_cloud_job("alice", cups_job)
    out = stack.cli("jobs", "--user", "alice", "--json")
    assert out.returncode == 0, out.stderr
    listed = {j["uuid"]: j for j in json.loads(out.stdout)}
    assert listed[job.uuid]["state"] == "held" and listed[job.uuid]["owner"] == "alice"
    assert listed[job.uuid]["transaction"]["status"] in ("pending", "Pending")
    assert stack.cli("jobs", "--user", "bob", "--json").stdout.strip() in ("[]", "")


def test_operator_release_without_release_printer_says_how_to_release(
    stack: Stack, world_dir: Path
) -> None:
    """Issue 6: "held again with an INFO message that says how to release when none is set"."""
    assert stack.cups is not None
    doc = make_pdf(world_dir / "op.pdf", 1)
    cups_job = stack.cups.lp(doc, user="alice")
    stack.cups.wait_job(cups_job, HELD)
    stack.wait_cloud_job("alice", cups_job)
    stack.cups.run("lp", "-i", str(cups_job), "-H", "resume")
    wanted = "held again; release it with: pullprint release"  # INFO, and WARNING in error_log
    deadline = time.monotonic() + 20
    while True:
        log = stack.cups.error_log.read_text(errors="replace")
        state_message = str(stack.cups.job(cups_job).get("job-printer-state-message", ""))
        if wanted in log or wanted in state_message:
            break
        assert time.monotonic() < deadline, "no INFO line saying how to release the job"
        time.sleep(0.1)
    stack.cups.wait_job(cups_job, HELD)  # held again once the backend has exited
    assert wanted in stack.cups.error_log.read_text(errors="replace")  # and it stays there


def test_node_storage_mode_prints_end_to_end(world_dir: Path) -> None:
    """Issue 4: "on the node (the document never leaves the printers' network; the cloud keeps
    metadata only)": print -> hold -> release -> printed with cloud.storage_mode = "node"."""
    stack = Stack(world_dir / "stack")
    stack.cloud = CloudServer(stack.root / "cloud", storage_mode="node")
    with stack:
        assert stack.cups is not None
        cups_job = stack.cups.lp(make_pdf(world_dir / "node.pdf", 2), user="alice")
        stack.cups.wait_job(cups_job, HELD)
        job = stack.wait_cloud_job("alice", cups_job)
        assert job.storage is StorageKind.NODE
        assert not list(stack.cloud.storage_dir.rglob(f"*{job.uuid}*"))
        kept = stack.root / "spool" / "kept" / f"{job.uuid}.pdf"
        assert kept.is_file()  # the document stays on the node's spool
        out = stack.cli(
            "release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(job.uuid, END, timeout=30)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert final.impressions == 2
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        deadline = time.monotonic() + 10
        while kept.exists():  # gone once the CUPS job is finished
            assert time.monotonic() < deadline, "the kept document outlived its CUPS job"
            time.sleep(0.1)


def test_the_user_can_see_the_finishing_plan(stack: Stack, world_dir: Path) -> None:
    """Issue 5: "The plan is stored with the job and the user can see it"."""
    assert stack.cups is not None
    cups_job = stack.cups.lp(make_pdf(world_dir / "plan.pdf", 2), user="alice")
    stack.cups.wait_job(cups_job, HELD)
    job = stack.wait_cloud_job("alice", cups_job)
    out = stack.cli(
        "release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234",
        "--option", "copies=2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert stack.wait_state(job.uuid, END).state is JobState.COMPLETED
    shown = stack.cli("show", job.uuid, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    steps = {s["option"]: s for s in data["finishing"]}
    assert steps["copies"]["value"].startswith("2"), data["finishing"]
    assert steps["copies"]["where"] == "printer", data["finishing"]  # ippeveprinter: copies
    text = stack.cli("show", job.uuid).stdout
    assert "finishing copies" in text and "the printer [printer]" in text, text


def test_backend_with_a_file_argument_holds_and_registers(stack: Stack, world_dir: Path) -> None:
    """DESIGN.md's backend contract: 6 arguments (document on stdin) or 7 (the file named by the
    last one, as with `-m raw` queues): the real executable, run by hand with 7."""
    import os
    import subprocess

    assert stack.cups is not None
    backend = stack.cups.root / "bin" / "backend" / "pullprint"
    doc = make_pdf(world_dir / "file-arg.pdf", 4)
    env = dict(
        os.environ,
        PULLPRINT_CONFIG=str(stack.config_path),
        DEVICE_URI="pullprint:/",
        PRINTER="PullPrint",
        CONTENT_TYPE="application/pdf",
    )
    out = subprocess.run(
        [str(backend), "91", "alice", "file arg", "1", "job-uuid=urn:uuid:audit-file", str(doc)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 3, out.stderr  # CUPS_BACKEND_HOLD
    assert "INFO: pullprint: held (4 page(s))" in out.stderr
    assert all(
        line.split(":", 1)[0] in ("INFO", "ERROR", "WARNING", "DEBUG", "STATE", "ATTR", "PAGE")
        for line in out.stderr.splitlines()
        if line
    ), out.stderr
    job = stack.wait_cloud_job("alice", 91)
    assert (job.title, job.pages, job.cups_job_uuid) == ("file arg", 4, "urn:uuid:audit-file")
