"""The durable outbox: registrations that must reach the cloud, kept on disk until they do.

An entry is ``outbox/<uuid>.json`` holding the JobSubmission and the path of its document. It is
written (atomically) before the first attempt, and removed only after the cloud has the job and
its document, so a cloud that is down, or a crash at any point, loses nothing. Registration and
upload are idempotent on the cloud side, so an entry may be sent again safely.

When the cloud answers that the job's document stays on the node (``storage_mode = "node"``),
it is not uploaded: it is moved to the keep folder (``Spool.kept``), where the node prints it
from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pullprint.backend.spool import atomic_write_json, read_json
from pullprint.errors import CloudRefused, CloudUnavailable
from pullprint.model import Job, JobSubmission, StorageKind

log = logging.getLogger(__name__)


class Registrar(Protocol):
    """The part of the cloud client the outbox needs."""

    def register(self, submission: JobSubmission) -> Job: ...

    def upload_document(self, uuid: str, path: Path) -> None: ...


@dataclass(frozen=True)
class OutboxEntry:
    submission: JobSubmission
    document: Path


@dataclass(frozen=True)
class Refusal:
    uuid: str
    message: str


@dataclass(frozen=True)
class FlushResult:
    sent: int
    waiting: int
    refused: tuple[Refusal, ...] = ()

    @property
    def rejected(self) -> int:
        return len(self.refused)


class Outbox:
    def __init__(self, folder: Path, keep: Path | None = None) -> None:
        self.folder = folder
        self.rejected = folder / "rejected"
        self.keep = keep  # where documents the cloud does not store are kept (None: upload all)

    def put(self, submission: JobSubmission, document: Path) -> Path:
        """Add an entry (replacing one for the same uuid). Durable when this returns."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{submission.uuid}.json"
        atomic_write_json(path, {"submission": submission.to_json(), "document": str(document)})
        return path

    def entries(self) -> list[tuple[Path, OutboxEntry]]:
        """The waiting entries, oldest first."""
        if not self.folder.is_dir():
            return []
        paths = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        out = []
        for path in paths:
            data = read_json(path)
            if data is None:
                continue
            sub = JobSubmission.from_json(data["submission"])
            out.append((path, OutboxEntry(sub, Path(data["document"]))))
        return out

    def __len__(self) -> int:
        return len(self.entries())

    def send(self, path: Path, entry: OutboxEntry, cloud: Registrar) -> None:
        """Register one entry and upload its document (or move it to the keep folder when the
        cloud keeps metadata only), then remove the entry and the uploaded document.

        Raises CloudUnavailable (entry kept) or CloudRefused (entry moved to ``rejected/``).
        """
        uuid = entry.submission.uuid
        try:
            job = cloud.register(entry.submission)
            if job.storage is StorageKind.NODE and self.keep is not None:
                kept = self.keep / f"{uuid}.pdf"
                self.keep.mkdir(mode=0o700, exist_ok=True)
                try:
                    entry.document.replace(kept)  # same file system: atomic, durable
                except FileNotFoundError:
                    # The node's outbox loop and the backend may send one entry at once: the
                    # other one moved it already.
                    if not kept.exists():
                        raise CloudRefused(
                            409, f"the document of job {uuid} is gone from the spool"
                        ) from None
                path.unlink(missing_ok=True)
                log.info("job %s registered with the cloud; its document stays here", uuid)
                return
            cloud.upload_document(uuid, entry.document)
        except CloudUnavailable:
            raise
        except CloudRefused as exc:
            self.rejected.mkdir(mode=0o700, exist_ok=True)
            path.replace(self.rejected / path.name)
            log.error("cloud refused job %s: %s", entry.submission.uuid, exc)
            raise
        path.unlink(missing_ok=True)
        entry.document.unlink(missing_ok=True)
        log.info("job %s registered with the cloud", entry.submission.uuid)

    def flush(self, cloud: Registrar) -> FlushResult:
        """Send every waiting entry, oldest first; stop at the first CloudUnavailable."""
        sent = 0
        refused: list[Refusal] = []
        entries = self.entries()
        for index, (path, entry) in enumerate(entries):
            try:
                self.send(path, entry, cloud)
            except CloudUnavailable as exc:
                log.info(
                    "cloud unavailable, %d job(s) wait in the outbox: %s", len(entries) - index, exc
                )
                return FlushResult(sent, len(entries) - index, tuple(refused))
            except CloudRefused as exc:
                refused.append(Refusal(entry.submission.uuid, exc.message))
                continue
            sent += 1
        return FlushResult(sent, 0, tuple(refused))
