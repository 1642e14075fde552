"""The outbox's lock against the real cloud server: whoever writes an entry owns it until it
releases the claim or its process ends, and the node's outbox loop (``flush``) passes over an
entry someone else holds. And a release that comes between the registration and the upload
(submitd uploads after the job is held) waits for the document."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pullprint.cloud.jobs import DOCUMENT_WAIT_SECONDS
from pullprint.cloudsync.client import CloudClient
from pullprint.cloudsync.outbox import Outbox, OutboxEntry
from pullprint.errors import Conflict, NotFound
from pullprint.model import JobState
from tests.test_cloud_api import PINS, admin, cloud, make_document, node2, submission

__all__ = ["admin", "cloud", "node2"]  # fixtures used here


def _outbox(folder: Path) -> Outbox:
    return Outbox(folder / "outbox")


def _claim_elsewhere(path: Path) -> str:
    """What another process gets when it tries to claim the entry at ``path``."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from pullprint.cloudsync.outbox import Outbox
        claim = Outbox(Path({str(path.parent)!r})).claim(Path({str(path)!r}))
        print("claimed" if claim is not None else "held by another")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_entry_is_its_writers_until_released(node2: CloudClient, tmp_path: Path) -> None:
    doc = make_document(tmp_path)
    sub = submission(doc)
    outbox = _outbox(tmp_path)
    claim = outbox.put(sub, doc)
    assert claim.path.exists()
    assert _claim_elsewhere(claim.path) == "held by another"
    assert outbox.claim(claim.path) is None  # another open file in this process too
    done = outbox.flush(node2)
    assert (done.sent, done.waiting) == (0, 0)
    with pytest.raises(NotFound):
        node2.get_job(sub.uuid)  # the loop did not send it
    claim.release()
    claim.release()  # idempotent
    assert _claim_elsewhere(claim.path) == "claimed"
    assert outbox.flush(node2).sent == 1
    assert node2.get_job(sub.uuid).state is JobState.HELD
    assert not claim.path.exists() and not doc.exists()  # uploaded: both gone
    assert outbox.claim(claim.path) is None  # gone: nothing to claim


def test_the_lock_goes_with_a_killed_writer(node2: CloudClient, tmp_path: Path) -> None:
    doc = make_document(tmp_path)
    sub = submission(doc)
    outbox = _outbox(tmp_path)
    data = json.dumps(sub.to_json())
    code = textwrap.dedent(
        f"""
        import json, os, signal
        from pathlib import Path
        from pullprint.cloudsync.outbox import Outbox
        from pullprint.model import JobSubmission
        sub = JobSubmission.from_json(json.loads({data!r}))
        Outbox(Path({str(outbox.folder)!r})).put(sub, Path({str(doc)!r}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    [(path, entry)] = outbox.entries()
    assert entry == OutboxEntry(sub, doc)
    assert outbox.flush(node2).sent == 1
    assert node2.get_job(sub.uuid).state is JobState.HELD
    assert not doc.exists()  # uploaded
    assert not path.exists()


def test_a_release_before_the_upload_waits_for_the_document(
    admin: CloudClient, node2: CloudClient, tmp_path: Path
) -> None:
    """submitd holds the CUPS job once the job is registered and uploads the document right
    after: a release that comes between waits for it (DOCUMENT_WAIT_SECONDS), and is refused,
    saying why, when it does not come."""
    doc = make_document(tmp_path)
    sub = submission(doc)
    node2.register(sub)  # held, its document not uploaded yet
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        release = pool.submit(admin.release, sub.uuid, "alice", PINS["alice"], "printer1", {})
        time.sleep(0.5)
        assert not release.done()  # waiting for the document
        node2.upload_document(sub.uuid, doc)
        released = release.result(timeout=30)
    assert released.state is JobState.RELEASED
    assert 0.5 <= time.monotonic() - started < DOCUMENT_WAIT_SECONDS

    other = submission(make_document(tmp_path))
    node2.register(other)  # its document never comes
    started = time.monotonic()
    with pytest.raises(Conflict) as refused:
        admin.release(other.uuid, "alice", PINS["alice"], "printer1", {})
    assert time.monotonic() - started >= DOCUMENT_WAIT_SECONDS
    assert (
        f"the document of job {other.uuid} has not arrived yet (waited 5 s for node node2 to "
        "upload it); try again in a moment"
    ) in str(refused.value)
    assert node2.get_job(other.uuid).state is JobState.HELD
