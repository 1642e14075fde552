"""HTTPS when given a certificate: the server serves TLS with cloud.tls_cert/tls_key, the client
verifies it against the cloud's CA bundle (CloudClient ``verify``), and refuses a server it
cannot verify."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from pullprint.cloudsync.client import CloudClient
from pullprint.errors import CloudUnavailable
from pullprint.model import JobState
from pullprint.peers.cloud import CloudServer
from pullprint.peers.tls import make_tls_files
from tests.test_cloud_api import PINS, held_job, start_cloud


def test_https_with_a_verified_certificate(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    server = start_cloud(
        tmp_path / "cloud", "sqlite", ca=str(ca), tls_cert=str(cert), tls_key=str(key)
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        with server.node_client("node1") as node, server.admin_client() as admin:
            assert node.health()
            job, doc = held_job(node, tmp_path, origin="node1")
            admin.release(job.uuid, "alice", PINS["alice"], "printer1")
            assert node.claim(job.uuid).state is JobState.CLAIMED
            assert node.download(job.uuid, tmp_path / "got.pdf") == doc.stat().st_size
        # Without the cloud's CA the certificate is not trusted: the client refuses.
        with CloudClient(server.url, server.node_tokens["node1"]) as untrusting:
            assert not untrusting.health()
            with pytest.raises(CloudUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                untrusting.list_printers()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url.replace("https", "http") + "/api/v1/health", timeout=5)
    finally:
        server.stop()


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    _, cert, _ = make_tls_files(tmp_path)
    server = CloudServer(tmp_path / "cloud", tls_cert=str(cert))
    with pytest.raises(RuntimeError, match=r"cloud\.tls_cert and cloud\.tls_key: give both"):
        server.start()


def test_whole_path_over_https_with_a_private_ca(world_dir: Path) -> None:
    """Backend, node and command line all talk HTTPS to the cloud and check its certificate
    against node.cloud_ca (a private CA): print -> held -> release -> completed."""
    from pullprint.cups.jobs import CupsJobState
    from pullprint.peers.documents import make_pdf
    from pullprint.peers.stack import Stack

    ca, cert, key = make_tls_files(world_dir)
    ca.chmod(0o644)  # the backend reads it as root, the node as itself
    stack = Stack(world_dir / "stack", node_options={"cloud_ca": str(ca)})
    stack.cloud = CloudServer(
        stack.root / "cloud", ca=str(ca), tls_cert=str(cert), tls_key=str(key)
    )
    with stack:
        assert stack.cloud.url.startswith("https://") and stack.cups is not None
        cups_job = stack.cups.lp(make_pdf(world_dir / "tls.pdf", 2), user="alice")
        stack.cups.wait_job(cups_job, {CupsJobState.HELD})
        job = stack.wait_cloud_job("alice", cups_job)  # registered by the backend over HTTPS
        out = stack.cli("release", job.uuid, "--printer", "printer1", "--user", "alice",
                        "--pin", "1234")  # fmt: skip
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(job.uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=30)
        assert final.state is JobState.COMPLETED and final.impressions == 2, final.state_reason
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
