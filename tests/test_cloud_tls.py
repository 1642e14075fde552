"""HTTPS when given a certificate: the server serves TLS with cloud.tls_cert/tls_key, the client
verifies it against the cloud's CA bundle (CloudClient ``verify``), and refuses a server it
cannot verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pullprint.cloudsync.client import CloudClient
from pullprint.errors import CloudUnavailable
from pullprint.model import JobState
from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import PINS, held_job, start_cloud


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pullprint test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def test_https_with_a_verified_certificate(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
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
    _, cert, _ = make_ca_and_cert(tmp_path)
    server = CloudServer(tmp_path / "cloud", tls_cert=str(cert))
    with pytest.raises(RuntimeError, match=r"cloud\.tls_cert and cloud\.tls_key: give both"):
        server.start()


def test_whole_path_over_https_with_a_private_ca(world_dir: Path) -> None:
    """Backend, node and command line all talk HTTPS to the cloud and check its certificate
    against node.cloud_ca (a private CA): print -> held -> release -> completed."""
    from pullprint.cups.jobs import CupsJobState
    from pullprint.peers.documents import make_pdf
    from pullprint.peers.stack import Stack

    ca, cert, key = make_ca_and_cert(world_dir)
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
