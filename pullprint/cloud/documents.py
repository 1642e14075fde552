"""Documents and their keys: the stores (``storage``) plus the ``document_keys`` table.

A cloud-stored document is usable only while its key row exists: :meth:`Documents.shred`
deletes the key first (crypto-shredding: what may be left of the file is noise) and then every
file of the job. All methods are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pullprint.cloud.db import document_keys
from pullprint.cloud.storage import DocumentStore, EncryptedFolder, OnNode, Readable, StoredDocument
from pullprint.model import StorageKind

log = logging.getLogger(__name__)


class Documents:
    """Every store by kind, and the keys of the stored documents."""

    def __init__(self, engine: Engine, folder: Path, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self.cloud = EncryptedFolder(folder)
        self.node = OnNode()

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
        self.cloud.path(uuid, stored.file_id).unlink(missing_ok=True)

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
