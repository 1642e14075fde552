"""A pool of PullPrint queues: a CUPS class whose members all use the pullprint backend. cupsd runs
one job per queue at a time, so a class of N queues holds N jobs at once. To the user and the
cloud it is one queue (the class's name, cupsd's ``CLASS``), a cancel in CUPS counts as for a
queue, also when the node learns of it only at its resync (Get-Jobs leaves out classes' jobs),
and ``pullprint doctor`` checks the pool's members.
Against the real peers: the private cupsd, submitd, the cloud, the node and ippeveprinter."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pullprint.cups.jobs import CupsJobState
from pullprint.cups.protocol import queue_of
from pullprint.ipp.client import IppClient
from pullprint.model import JobState, TransactionStatus
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack
from tests.test_doctor import doctor

HELD = {CupsJobState.HELD}
POOL = "PullPrintPool"


def test_the_queue_is_the_class_when_cupsd_runs_a_class_job() -> None:
    assert queue_of({"PRINTER": "PullPrint2", "CLASS": POOL}) == POOL
    assert queue_of({"PRINTER": "PullPrint2"}) == "PullPrint2"
    assert queue_of({}) == "PullPrint"


def test_a_class_of_pullprint_queues_holds_prints_and_cancels(world_dir: Path) -> None:
    with Stack(world_dir / "stack", submitd=True) as stack:
        cups = stack.cups
        assert cups is not None and stack.node is not None
        cups.add_pool(POOL, ["PullPrint", "PullPrint2", "PullPrint3"])
        doc = make_pdf(world_dir / "pool.pdf", 2)
        sent = [cups.lp(doc, user="alice", queue=POOL) for _ in range(6)]
        for job_id in sent:
            assert cups.wait_job(job_id, HELD)["job-state"] == CupsJobState.HELD
        jobs = {job_id: stack.wait_cloud_job("alice", job_id) for job_id in sent}
        # Get-Jobs at the class's own URI lists them, a page at a time (cupsd: 500 at most)
        with IppClient(f"ipp://127.0.0.1:{cups.port}/classes/{POOL}") as client:
            page = client.get_jobs("all", limit=2, first_job_id=sent[2])
        assert [j.job_id for j in page] == sent[2:4]
        assert {j.job_state for j in page} == {CupsJobState.HELD}
        assert {job.queue for job in jobs.values()} == {POOL}
        assert all(job.state is JobState.HELD and job.pages == 2 for job in jobs.values())
        said = (stack.root / "submitd.log").read_text(errors="replace")
        ran_on = set(re.findall(r"backend job \d+ of pid \d+ on (\S+): exit 3", said))
        assert len(ran_on) >= 2 and ran_on <= {"PullPrint", "PullPrint2", "PullPrint3"}, ran_on

        # released: printed, the CUPS job (of the class) completed by the backend's re-run
        first = jobs[sent[0]]
        out = stack.cli(
            "release", first.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(first.uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=60)
        assert final.state is JobState.COMPLETED, final.state_reason
        cups.wait_job(sent[0], {CupsJobState.COMPLETED})

        # canceled in CUPS while the node runs: canceled in the cloud (its event)
        cups.connection().cancelJob(sent[1])
        gone = stack.wait_state(jobs[sent[1]].uuid, {JobState.CANCELED}, timeout=30)
        assert gone.transaction is not None
        assert gone.transaction.status is TransactionStatus.CANCELED

        # canceled in CUPS while the node is down: found at the node's resync, by the job's id
        stack.node.stop()
        cups.connection().cancelJob(sent[2])
        time.sleep(0.5)
        with stack.admin() as admin:
            assert admin.get_job(jobs[sent[2]].uuid).state is JobState.HELD
        stack.start_node_process()
        late = stack.wait_state(jobs[sent[2]].uuid, {JobState.CANCELED}, timeout=30)
        assert late.state is JobState.CANCELED
        for job_id in sent[3:]:  # the others are untouched
            assert cups.job(job_id)["job-state"] == CupsJobState.HELD

        # pullprint doctor checks a pool named in node.queues: every member on pullprint:/
        stack.write_config(queues=("PullPrint", POOL))
        code, text = doctor(stack)
        assert code == 0, text
        assert f"pool {POOL}: class of 3 queues on pullprint:/" in text
        cups.run("lpadmin", "-p", "Stray", "-v", stack.printers[0].uri, "-E")
        cups.run("lpadmin", "-p", "Stray", "-c", POOL)
        code, text = doctor(stack)
        assert code != 0
        assert f"FAIL pool {POOL}: members not on pullprint:/: Stray" in text, text
