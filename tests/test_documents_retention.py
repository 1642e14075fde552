"""Documents in-process with an injected clock (no sleeping), on SQLite and PostgreSQL:
encryption at rest with a key per document, crypto-shredding, retention (unprinted jobs expire,
printed documents are deleted after a time), and the expiry of signed download URLs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from pullprint.cloud.app import Cloud, create_app
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.db import document_keys, node_events
from pullprint.cloud.signing import UrlSigner
from pullprint.cloud.storage import SEGMENT, DecryptingReader, Expected
from pullprint.cloud.validate import ProgressRequest, ReleaseRequest
from pullprint.config import CloudConfig
from pullprint.errors import DocumentError, Forbidden
from pullprint.model import (
    EventKind,
    JobState,
    JobSubmission,
    Printer,
    TransactionStatus,
)
from tests.test_cloud_api import DATABASES, PINS, PRICE, database_url

NODE1 = Principal(Role.NODE, "node1")
ADMIN = Principal(Role.ADMIN)
DAY = 24 * 3600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    cloud: Cloud
    clock: Clock
    folder: Path


def make_env(kind: str, folder: Path, **overrides: object) -> Env:
    clock = Clock()
    config = CloudConfig(
        database_url=database_url(kind, folder),
        storage_dir=folder / "documents",
        pin_key_file=folder / "pin.key",
        admin_token="admin-token-for-tests",
        node_tokens={"node1": "node1-token-for-tests"},
        **overrides,  # type: ignore[arg-type]
    )
    app = create_app(config, clock=clock)
    cloud = app.state.cloud
    assert isinstance(cloud, Cloud)
    for name, pin in PINS.items():
        cloud.users.add(name, pin)
    cloud.printers.upsert(Printer("printer1", "ipp://127.0.0.1:1/ipp/print", "node1", PRICE))
    return Env(cloud, clock, folder)


@pytest.fixture(params=DATABASES)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    made = make_env(str(request.param), tmp_path)
    yield made
    made.cloud.engine.dispose()


async def _chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def held(env: Env, data: bytes | None = None) -> tuple[str, bytes]:
    """Register a job of alice from node1 and store its document; returns (uuid, bytes)."""
    data = data if data is not None else b"%PDF-1.7\n" + os.urandom(3 * SEGMENT + 123)
    sub = JobSubmission(
        uuid=str(uuidlib.uuid4()),
        owner="alice",
        title="t",
        copies=1,
        options={},
        pages=2,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        queue="PullPrint",
        origin="node1",
        cups_job_id=7,
        cups_job_uuid="urn:uuid:x",
    )
    env.cloud.jobs.register(NODE1, sub)
    stored = asyncio.run(
        env.cloud.documents.cloud.receive(sub.uuid, _chunks(data), Expected(len(data), sub.sha256))
    )
    env.cloud.jobs.document_stored(sub.uuid, stored)
    return sub.uuid, data


def read_all(env: Env, uuid: str) -> bytes:
    reader = env.cloud.documents.open(uuid)
    out = bytearray()
    try:
        while chunk := reader.read():
            out += chunk
    finally:
        reader.close()
    return bytes(out)


def key_rows(env: Env, uuid: str) -> int:
    with env.cloud.engine.connect() as conn:
        return len(
            conn.execute(
                sa.select(document_keys.c.job_uuid).where(document_keys.c.job_uuid == uuid)
            ).all()
        )


def left_on_disk(env: Env, uuid: str) -> list[Path]:
    return [p for p in env.folder.rglob("*") if uuid in p.name]


def release_and_claim(env: Env, uuid: str) -> str:
    env.cloud.jobs.release(uuid, ReleaseRequest("alice", PINS["alice"], "printer1", {}))
    job = env.cloud.jobs.claim(NODE1, uuid)
    assert job.download_url is not None
    return job.download_url


def signed(url: str) -> dict[str, str]:
    query = url.split("?", 1)[1]
    return dict(part.split("=", 1) for part in query.split("&"))


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7])
def test_encrypted_round_trip_every_size(tmp_path: Path, size: int) -> None:
    env = make_env("sqlite", tmp_path)
    data = os.urandom(size)
    uuid, _ = held(env, data)
    files = left_on_disk(env, uuid)
    assert len(files) == 1
    on_disk = files[0].read_bytes()
    assert data[:32] not in on_disk or size < 32
    assert read_all(env, uuid) == data


def test_tampered_or_truncated_document_is_refused(env: Env) -> None:
    uuid, _ = held(env)
    path = left_on_disk(env, uuid)[0]
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw[: len(raw) - SEGMENT // 2]))  # truncated: last segment cut
    with pytest.raises(DocumentError, match="integrity"):
        read_all(env, uuid)
    raw[40] ^= 1  # one bit flipped in the first segment
    path.write_bytes(bytes(raw))
    with pytest.raises(DocumentError, match="integrity"):
        read_all(env, uuid)


def test_each_document_has_its_own_key(env: Env) -> None:
    data = os.urandom(5000)
    a, _ = held(env, data)
    b, _ = held(env, data)
    with env.cloud.engine.connect() as conn:
        keys = {
            r.job_uuid: bytes(r.key)
            for r in conn.execute(
                sa.select(document_keys).where(document_keys.c.job_uuid.in_([a, b]))
            )
        }
    assert len(keys[a]) == 32 and keys[a] != keys[b]
    assert left_on_disk(env, a)[0].read_bytes() != left_on_disk(env, b)[0].read_bytes()
    # Without its key a document is noise: another document's key does not open it.
    path = left_on_disk(env, a)[0]
    with pytest.raises(DocumentError):
        reader = DecryptingReader(path.open("rb"), keys[b])
        try:
            reader.read()
        finally:
            reader.close()


def test_unprinted_jobs_expire(env: Env) -> None:
    uuid, _ = held(env)
    released, _ = held(env)
    env.cloud.jobs.release(released, ReleaseRequest("alice", PINS["alice"], "printer1", {}))
    env.clock.now += DAY
    young, _ = held(env)  # a day younger
    env.clock.now += 2 * DAY - 1
    assert env.cloud.jobs.sweep().expired == 0  # 1 s short of 3 days
    env.clock.now += 2
    assert env.cloud.jobs.sweep().expired == 2
    assert env.cloud.jobs.get(ADMIN, young).state is JobState.HELD
    assert read_all(env, young)  # untouched
    for job_uuid in (uuid, released):
        job = env.cloud.jobs.get(ADMIN, job_uuid)
        assert job.state is JobState.EXPIRED
        assert job.transaction is not None
        assert job.transaction.status is TransactionStatus.CANCELED
        assert job.transaction.amount == 0
        assert key_rows(env, job_uuid) == 0
        assert left_on_disk(env, job_uuid) == []
    with env.cloud.engine.connect() as conn:
        rows = (
            conn.execute(sa.select(node_events).where(node_events.c.job_uuid == uuid))
            .mappings()
            .all()
        )
    assert [(r["node"], r["kind"], r["payload"]["state"]) for r in rows] == [
        ("node1", EventKind.CANCELED.value, JobState.EXPIRED.value)
    ]
    assert env.cloud.jobs.sweep().expired == 0  # idempotent
    env.clock.now += DAY
    assert env.cloud.jobs.sweep().expired == 1
    assert left_on_disk(env, young) == []


def test_claimed_jobs_do_not_expire(env: Env) -> None:
    uuid, _ = held(env)
    release_and_claim(env, uuid)
    env.clock.now += 10 * DAY
    assert env.cloud.jobs.sweep().expired == 0
    assert env.cloud.jobs.get(ADMIN, uuid).state is JobState.CLAIMED


def test_printed_document_deleted_at_once_by_default(env: Env) -> None:
    uuid, _ = held(env)
    release_and_claim(env, uuid)
    env.cloud.jobs.progress(NODE1, uuid, ProgressRequest(JobState.COMPLETED, 2, 2, ""))
    assert key_rows(env, uuid) == 0
    assert left_on_disk(env, uuid) == []


@pytest.mark.parametrize("kind", DATABASES)
def test_printed_document_kept_then_deleted(tmp_path: Path, kind: str) -> None:
    env = make_env(kind, tmp_path, keep_printed_seconds=3600)
    uuid, data = held(env)
    release_and_claim(env, uuid)
    env.cloud.jobs.progress(NODE1, uuid, ProgressRequest(JobState.COMPLETED, 2, 2, ""))
    assert read_all(env, uuid) == data  # kept for an hour
    env.clock.now += 3599
    assert env.cloud.jobs.sweep().documents_deleted == 0
    env.clock.now += 2
    assert env.cloud.jobs.sweep().documents_deleted == 1
    assert key_rows(env, uuid) == 0
    assert left_on_disk(env, uuid) == []
    assert env.cloud.jobs.get(ADMIN, uuid).state is JobState.COMPLETED
    env.cloud.engine.dispose()


def test_signed_url_expires_and_is_single_use(env: Env) -> None:
    uuid, _ = held(env)
    url = release_and_claim(env, uuid)
    params = UrlSigner.params(signed(url))
    env.clock.now += 61
    with pytest.raises(Forbidden, match="expired"):
        env.cloud.jobs.open_document(NODE1, uuid, params)
    fresh = UrlSigner.params(signed(env.cloud.jobs.download_url(NODE1, uuid)))
    doc = env.cloud.jobs.open_document(NODE1, uuid, fresh)
    doc.file.close()
    with pytest.raises(Forbidden, match="replayed"):
        env.cloud.jobs.open_document(NODE1, uuid, fresh)
    env.clock.now += 120
    assert env.cloud.jobs.sweep().nonces_pruned >= 1
