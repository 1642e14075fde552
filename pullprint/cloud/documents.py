"""Documents and their keys: the stores (``storage``) plus the ``document_keys`` table.

A cloud-stored document is usable only while its key row exists: :meth:`Documents.shred`
deletes the key first (crypto-shredding: what may be left of the file is noise) and then every
file of the job. All methods are idempotent.

The cloud's own documents live in ``storage_dir`` (``storage_mode = "cloud"``) or in an
S3-compatible bucket (``storage_mode = "s3"``, :class:`~pullprint.cloud.storage.S3Store`); jobs
of either are of kind "cloud" (the cloud keeps and serves them, encrypted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pullprint.cloud.db import document_keys
from pullprint.cloud.storage import (
    DocumentStore,
    EncryptedFolder,
    OnNode,
    Readable,
    S3Settings,
    S3Store,
    StoredDocument,
)
from pullprint.config import CloudConfig, ConfigError
from pullprint.errors import DocumentError
from pullprint.model import StorageKind

log = logging.getLogger(__name__)


S3_MODE = "s3"


def storage_kind(mode: str) -> StorageKind:
    """The kind of the jobs a cloud with ``storage_mode = mode`` stores ("s3" stores "cloud"
    jobs in a bucket); ValueError for an unknown mode."""
    return StorageKind.CLOUD if mode == S3_MODE else StorageKind(mode)


def s3_settings(config: CloudConfig) -> S3Settings | None:
    """The bucket settings when ``storage_mode`` is "s3", else None; ConfigError names the key."""
    if config.storage_mode != S3_MODE:
        return None
    if not config.s3_bucket:
        raise ConfigError("cloud.s3_bucket: required when storage_mode is s3")
    if bool(config.s3_access_key) != bool(config.s3_secret_key):
        raise ConfigError("cloud.s3_access_key and cloud.s3_secret_key: give both or neither")
    return S3Settings(
        bucket=config.s3_bucket,
        endpoint_url=config.s3_endpoint_url,
        prefix=config.s3_prefix,
        region=config.s3_region,
        access_key=config.s3_access_key,
        secret_key=config.s3_secret_key,
    )


class Documents:
    """Every store by kind, and the keys of the stored documents."""

    def __init__(
        self,
        engine: Engine,
        folder: Path,
        clock: Callable[[], float],
        s3: S3Settings | None = None,
    ) -> None:
        """``s3``: keep the cloud's documents in that bucket instead of ``folder``."""
        self._engine = engine
        self._clock = clock
        self.cloud: EncryptedFolder | S3Store = S3Store(s3) if s3 else EncryptedFolder(folder)
        self.node = OnNode()

    @classmethod
    def from_config(
        cls, engine: Engine, config: CloudConfig, clock: Callable[[], float]
    ) -> Documents:
        """The stores ``config`` names; ConfigError if its S3 store cannot be reached."""
        try:
            return cls(engine, config.storage_dir, clock, s3_settings(config))
        except DocumentError as exc:
            raise ConfigError(f"cloud.s3_endpoint_url: {exc}") from exc

    def store(self, kind: StorageKind) -> DocumentStore:
        """The store for documents of ``kind``."""
        return self.cloud if kind is StorageKind.CLOUD else self.node

    def add_key(self, conn: Connection, uuid: str, stored: StoredDocument) -> bool:
        """Record the key of a newly stored document (in ``conn``'s transaction). False if the
        job already has one (a concurrent upload won): the caller removes its own file."""
        exists = conn.execute(
            sa.select(document_keys.c.file_id).where(document_keys.c.job_uuid == uuid)
        ).first()
        if exists is not None:
            return False
        conn.execute(
            sa.insert(document_keys).values(
                job_uuid=uuid, file_id=stored.file_id, key=stored.key, created_at=self._clock()
            )
        )
        return True

    def discard_file(self, uuid: str, stored: StoredDocument) -> None:
        """Remove one stored file that was not kept (its key was never recorded)."""
        self.cloud.discard(uuid, stored.file_id)

    def has(self, uuid: str) -> bool:
        """True if the job has a stored document (a key row)."""
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(document_keys.c.job_uuid).where(document_keys.c.job_uuid == uuid)
            ).first()
        return found is not None

    def open(self, uuid: str) -> Readable:
        """Open the job's document decrypted; FileNotFoundError if there is none."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(document_keys.c.file_id, document_keys.c.key).where(
                    document_keys.c.job_uuid == uuid
                )
            ).first()
        if row is None:
            raise FileNotFoundError(f"no stored document for job {uuid}")
        return self.cloud.open(uuid, str(row.file_id), bytes(row.key))

    def shred(self, uuid: str) -> bool:
        """Delete the job's key, then its files. True if there was anything to delete."""
        with self._engine.begin() as conn:
            done = conn.execute(sa.delete(document_keys).where(document_keys.c.job_uuid == uuid))
        removed = self.cloud.delete(uuid)
        if done.rowcount:
            log.info("shredded the document of job %s (key deleted)", uuid)
        return bool(done.rowcount) or removed

    def files(self, uuid: str) -> list[Path]:
        """Every file of the job on disk (tests check that none is left after deletion)."""
        return self.cloud.files(uuid)
