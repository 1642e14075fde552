"""The durable outbox: registrations that must reach the cloud, kept on disk until they do.

An entry is ``outbox/<uuid>.json`` holding the JobSubmission and the path of its document. It is
written (atomically) before the first attempt, and removed only after the cloud has the job and
its document, so a cloud that is down, or a crash at any point, loses nothing. Registration and
upload are idempotent on the cloud side, so an entry may be sent again safely.

Whoever sends an entry holds a lock on it (``flock``, exclusive): the backend from the moment it
writes the entry (:meth:`Outbox.put`) until its document is uploaded, which submitd does after it
answered cupsd (the job is held meanwhile), and the node's outbox loop while it sends one. The
loop passes over an entry locked by someone else; a lock goes with the process that held it, so
the entry of a backend or submitd that died is sent by the loop.

When the cloud answers that the job's document stays on the node (``storage_mode = "node"``),
it is not uploaded: it is moved to the keep folder (``Spool.kept``), where the node prints it
from.
"""

from __future__ import annotations

import fcntl
import logging
import os
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


class Claim:
    """The lock on one outbox entry, held until :meth:`release` (or the process exits)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock the entry (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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

    def put(self, submission: JobSubmission, document: Path) -> Claim:
        """Add an entry (replacing one for the same uuid), claimed by the caller from before it
        appears. Durable when this returns."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{submission.uuid}.json"
        data = {"submission": submission.to_json(), "document": str(document)}
        fd = atomic_write_json(path, data, lock=True)
        assert fd is not None
        return Claim(path, fd)

    def claim(self, path: Path) -> Claim | None:
        """Lock the entry at ``path`` to send it; None when another process holds it or it is
        gone (sent meanwhile)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink == 0:  # removed by the sender we waited for
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            return None
        return Claim(path, fd)

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

    def send(
        self, path: Path, entry: OutboxEntry, cloud: Registrar, *, upload: bool = True
    ) -> bool:
        """Register one entry and upload its document (or move it to the keep folder when the
        cloud keeps metadata only), then remove the entry and the uploaded document. With
        ``upload=False`` the document is not uploaded and the entry kept: returns True when it
        is still to be uploaded (:meth:`upload`), else False.

        Raises CloudUnavailable (entry kept) or CloudRefused (entry moved to ``rejected/``).
        """
        try:
            pending = self.register(path, entry, cloud)
            if pending and upload:
                self.upload(path, entry, cloud)
                pending = False
            return pending
        except CloudRefused as exc:
            self.rejected.mkdir(mode=0o700, exist_ok=True)
            path.replace(self.rejected / path.name)
            log.error("cloud refused job %s: %s", entry.submission.uuid, exc)
            raise

    def register(self, path: Path, entry: OutboxEntry, cloud: Registrar) -> bool:
        """Register one entry; True when its document is still to be uploaded (:meth:`upload`).
        When the cloud keeps metadata only, the document is moved to the keep folder and the
        entry removed (False). Raises CloudError; the entry is kept either way."""
        uuid = entry.submission.uuid
        job = cloud.register(entry.submission)
        if job.storage is not StorageKind.NODE or self.keep is None:
            return True
        kept = self.keep / f"{uuid}.pdf"
        self.keep.mkdir(mode=0o700, exist_ok=True)
        try:
            entry.document.replace(kept)  # same file system: atomic, durable
        except FileNotFoundError:
            # Moved by an earlier send of this entry (one that died before removing it).
            if not kept.exists():
                raise CloudRefused(
                    409, f"the document of job {uuid} is gone from the spool"
                ) from None
        path.unlink(missing_ok=True)
        log.info("job %s registered with the cloud; its document stays here", uuid)
        return False

    def upload(self, path: Path, entry: OutboxEntry, cloud: Registrar) -> None:
        """Upload a registered entry's document, then remove the entry and the document.
        Idempotent; an entry removed meanwhile with its document is done. Raises CloudError;
        the entry is kept."""
        uuid = entry.submission.uuid
        try:
            cloud.upload_document(uuid, entry.document)
        except FileNotFoundError:
            if path.exists():
                raise CloudRefused(
                    409, f"the document of job {uuid} is gone from the spool"
                ) from None
            return  # entry and document removed meanwhile (Node._drop_outbox: canceled in CUPS)
        path.unlink(missing_ok=True)
        entry.document.unlink(missing_ok=True)
        log.info("job %s registered with the cloud", uuid)

    def flush(self, cloud: Registrar) -> FlushResult:
        """Send every waiting entry, oldest first; stop at the first CloudUnavailable."""
        sent = 0
        refused: list[Refusal] = []
        entries = self.entries()
        for index, (path, entry) in enumerate(entries):
            claim = self.claim(path)
            if claim is None:
                continue  # being sent by its backend or submitd (or sent meanwhile)
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
            finally:
                claim.release()
            sent += 1
        return FlushResult(sent, 0, tuple(refused))
