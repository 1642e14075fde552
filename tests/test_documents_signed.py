"""Downloads only through signed, time-limited, single-use URLs bound to the job and the node
(forged, replayed, cross-job and cross-node URLs get 403 and are logged), documents encrypted at
rest and shredded when the job ends, and "node" storage (the document never reaches the cloud),
against the real server on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from pullprint.cloud.db import document_keys
from pullprint.cloudsync.client import CloudClient
from pullprint.errors import Conflict, Forbidden
from pullprint.model import EventKind, JobState, StorageKind, TransactionStatus
from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import (
    DATABASES,
    PINS,
    cursor_now,
    events_for,
    held_job,
    make_document,
    start_cloud,
    stored_files,
    submission,
)


@pytest.fixture(scope="module", params=DATABASES)
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("signed"), str(request.param))
    try:
        yield server
    finally:
        server.stop()


def claimed(cloud: CloudServer, folder: Path) -> tuple[str, Path, str]:
    """A job of alice from node1 released to printer1 and claimed by node1: (uuid, doc, url)."""
    with cloud.node_client("node1") as node, cloud.admin_client() as admin:
        job, doc = held_job(node, folder, origin="node1")
        admin.release(job.uuid, "alice", PINS["alice"], "printer1")
        got = node.claim(job.uuid)
    assert got.download_url is not None and got.download_url.startswith(
        f"/api/v1/jobs/{job.uuid}/document?"
    )
    return job.uuid, doc, got.download_url


def fetch(cloud: CloudServer, url: str, node: str = "node1") -> requests.Response:
    return requests.get(
        f"{cloud.url}{url}",
        headers={"Authorization": f"Bearer {cloud.node_tokens[node]}"},
        timeout=10,
    )


def key_rows(cloud: CloudServer, uuid: str) -> int:
    engine = sa.create_engine(cloud.config.database_url)
    try:
        with engine.connect() as conn:
            return len(
                conn.execute(
                    sa.select(document_keys.c.job_uuid).where(document_keys.c.job_uuid == uuid)
                ).all()
            )
    finally:
        engine.dispose()


def test_signed_url_works_once(cloud: CloudServer, tmp_path: Path) -> None:
    _, doc, url = claimed(cloud, tmp_path)
    first = fetch(cloud, url)
    assert first.status_code == 200 and first.content == doc.read_bytes()
    again = fetch(cloud, url)
    assert again.status_code == 403 and "replayed" in again.json()["detail"]
    assert "refused a download of job" in cloud.log_tail(200)


def test_forged_cross_job_cross_node_and_unsigned_urls_get_403(
    cloud: CloudServer, tmp_path: Path
) -> None:
    uuid, _, url = claimed(cloud, tmp_path)
    other, _, _ = claimed(cloud, tmp_path)
    path, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    forged = {**params, "sig": ("0" if params["sig"][0] != "0" else "1") + params["sig"][1:]}
    cases = {
        "forged": (f"{path}?" + "&".join(f"{k}={v}" for k, v in forged.items()), "node1"),
        "cross-job": (url.replace(uuid, other), "node1"),
        "later expiry": (
            url.replace(f"expires={params['expires']}", f"expires={int(params['expires']) + 3600}"),
            "node1",
        ),
        "unsigned": (path, "node1"),
        "cross-node": (url, "node2"),
    }
    for name, (bad, node) in cases.items():
        answer = fetch(cloud, bad, node)
        assert answer.status_code == 403, (name, answer.text)
    log = cloud.log_tail(400)
    assert "bad signature" in log and "a signed URL is needed" in log
    assert "signed for node node1, not for this node" in log
    assert params["sig"] not in log  # the signature itself is never logged
    # None of them used the URL up: it still works once.
    assert fetch(cloud, url).status_code == 200


def test_client_download_uses_the_claim_url_then_fresh_ones(
    cloud: CloudServer, tmp_path: Path
) -> None:
    with cloud.node_client("node1") as node, cloud.admin_client() as admin:
        job, doc = held_job(node, tmp_path, origin="node1")
        admin.release(job.uuid, "alice", PINS["alice"], "printer1")
        node.claim(job.uuid)
        assert node.download(job.uuid, tmp_path / "a.pdf") == doc.stat().st_size
        assert node.download(job.uuid, tmp_path / "b.pdf") == doc.stat().st_size  # fresh URL
        assert (tmp_path / "b.pdf").read_bytes() == doc.read_bytes()
        with cloud.node_client("node2") as node2:
            with pytest.raises(Forbidden, match="not claimed by node node2"):
                node2.download_url(job.uuid)


def test_document_is_encrypted_and_shredded_at_the_end(cloud: CloudServer, tmp_path: Path) -> None:
    uuid, doc, _ = claimed(cloud, tmp_path)
    files = stored_files(cloud, uuid)
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0  # owner-only
    plain = doc.read_bytes()
    cipher = files[0].read_bytes()
    assert all(plain[i : i + 48] not in cipher for i in range(0, len(plain) - 48, 997))
    assert key_rows(cloud, uuid) == 1
    with cloud.node_client("node1") as node:
        node.progress(uuid, JobState.COMPLETED, impressions=3)
    assert key_rows(cloud, uuid) == 0
    assert stored_files(cloud, uuid) == []
    assert not list(cloud.storage_dir.glob(".*.part"))


def test_canceled_document_is_shredded(cloud: CloudServer, tmp_path: Path) -> None:
    with cloud.node_client("node2") as node2, cloud.admin_client() as admin:
        job, _ = held_job(node2, tmp_path)
        assert stored_files(cloud, job.uuid) and key_rows(cloud, job.uuid) == 1
        admin.cancel(job.uuid, user="alice")
    assert stored_files(cloud, job.uuid) == [] and key_rows(cloud, job.uuid) == 0


def test_retention_endpoint(cloud: CloudServer) -> None:
    with cloud.admin_client() as admin:
        done = admin.run_retention()
    assert set(done) == {"expired", "documents_deleted", "nonces_pruned"}
    with cloud.node_client("node1") as node:
        with pytest.raises(Forbidden):
            node._json("POST", "/admin/retention/run", json_body={})


@pytest.mark.parametrize("kind", DATABASES)
def test_node_storage_keeps_documents_off_the_cloud(tmp_path: Path, kind: str) -> None:
    server = start_cloud(tmp_path / "cloud", kind, storage_mode="node")
    try:
        with server.node_client("node1") as node, server.admin_client() as admin:
            doc = make_document(tmp_path)
            sub = submission(doc, origin="node1")
            job = node.register(sub)
            assert job.storage is StorageKind.NODE
            node.upload_document(sub.uuid, doc)  # sends nothing
            assert stored_files(server, sub.uuid) == []
            with CloudClient(server.url, server.node_tokens["node1"]) as fresh:
                with pytest.raises(Conflict, match="keeps its document on node node1"):
                    fresh.upload_document(sub.uuid, doc)  # a client that did not register it
            with pytest.raises(Conflict, match="keeps its document on node node1"):
                admin.release(sub.uuid, "alice", PINS["alice"], "printer2")  # another node
            released = admin.release(sub.uuid, "alice", PINS["alice"], "printer1")
            assert released.state is JobState.RELEASED  # no upload needed
            got = node.claim(sub.uuid)
            assert got.download_url is None and got.storage is StorageKind.NODE
            with pytest.raises(Conflict, match="use that copy"):
                node.download_url(sub.uuid)
            done = node.progress(sub.uuid, JobState.COMPLETED, impressions=3)
            assert done.state is JobState.COMPLETED
            assert [p for p in tmp_path.rglob("*") if sub.uuid in p.name] == []
    finally:
        server.stop()


def test_unknown_storage_mode_is_a_config_error(tmp_path: Path) -> None:
    server = CloudServer(tmp_path, storage_mode="tape")
    with pytest.raises(RuntimeError, match=r"cloud\.storage_mode: expected one of cloud, node"):
        server.start()


def test_the_server_sweeps_by_itself(tmp_path: Path) -> None:
    """The periodic sweep runs in the server: a job 1 s old expires without an admin call, its
    origin node gets ``canceled`` (state expired) and nothing of its document is left."""
    server = start_cloud(
        tmp_path / "cloud", "sqlite", expire_seconds=1, retention_sweep_seconds=0.2
    )
    try:
        with server.node_client("node2") as node2, server.admin_client() as admin:
            start = cursor_now(node2)
            job, _ = held_job(node2, tmp_path)
            deadline = time.monotonic() + 10
            while admin.get_job(job.uuid).state is not JobState.EXPIRED:
                assert time.monotonic() < deadline, "the job did not expire"
                time.sleep(0.1)
            found = events_for(node2, start, job.uuid)
            assert [(e.kind, e.state) for e in found] == [(EventKind.CANCELED, JobState.EXPIRED)]
            tx = admin.get_job(job.uuid).transaction
            assert tx is not None and tx.status is TransactionStatus.CANCELED
            assert stored_files(server, job.uuid) == []
    finally:
        server.stop()
