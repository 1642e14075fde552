"""The print server's local spool: what the backend received, keyed by the CUPS job's uuid.

Layout under ``spool_dir`` (0700, root):
  jobs/<key>.json    the record of one CUPS job: our uuid, the CUPS job-id, how far we got
  docs/<uuid>.pdf    the received document until it is registered and uploaded
  outbox/<uuid>.json registrations waiting for the cloud (see pullprint.cloudsync.outbox)
  done/<uuid>.json   the end state of a job, written by the node before it releases the CUPS job
  kept/<uuid>.pdf    with cloud.storage_mode = "node": the document, kept here (never uploaded)
                     until its CUPS job is finished or canceled
Every file is written atomically (temp file in the same folder, then rename).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pullprint.model import JobState

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def own_like_parent(path: Path) -> None:
    """Give ``path`` the owner of its folder when running as root: the backend runs as root, the
    node as the spool's owner (the system user ``pullprint``), and both must handle the files."""
    if os.geteuid() == 0:
        st = path.parent.stat()
        if st.st_uid != 0 or st.st_gid != 0:
            os.chown(path, st.st_uid, st.st_gid)


def atomic_write_json(path: Path, data: dict[str, Any], *, lock: bool = False) -> int | None:
    """Write ``data`` to ``path`` atomically (fsync'd temp file, then rename).

    With ``lock``, the file is locked (``flock``, exclusive) before it appears under its name,
    and the locked descriptor is returned: the caller owns the file until it closes that (or
    exits). Without, returns None."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        held = None
        if lock:
            held = os.dup(fh.fileno())
            fcntl.flock(held, fcntl.LOCK_EX)
        try:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
            own_like_parent(tmp)
            tmp.replace(path)
        except BaseException:
            if held is not None:
                os.close(held)
            raise
    return held


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it does not exist or is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class CupsJobRecord:
    """What the backend remembers of one CUPS job between its runs."""

    uuid: str
    cups_job_id: int
    cups_job_uuid: str
    queue: str
    stage: str  # "receiving" until the document is whole, then "held"


@dataclass(frozen=True)
class DoneRecord:
    state: JobState
    impressions: int | None


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs = root / "jobs"
        self.docs = root / "docs"
        self.outbox = root / "outbox"
        self.done = root / "done"
        self.kept = root / "kept"

    def ensure(self) -> Spool:
        """Create the folders (0700, owned like the spool root). Idempotent."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (self.jobs, self.docs, self.outbox, self.done, self.kept):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue  # made by us earlier, or right now by the node or another backend run
            own_like_parent(path)
        return self

    @staticmethod
    def key(cups_job_uuid: str) -> str:
        return _SAFE.sub("_", cups_job_uuid.removeprefix("urn:uuid:"))

    def record_path(self, cups_job_uuid: str) -> Path:
        return self.jobs / f"{self.key(cups_job_uuid)}.json"

    def load_record(self, cups_job_uuid: str) -> CupsJobRecord | None:
        return self.load_record_file(self.record_path(cups_job_uuid))

    def save_record(self, record: CupsJobRecord) -> None:
        atomic_write_json(self.record_path(record.cups_job_uuid), asdict(record))

    def records(self) -> list[CupsJobRecord]:
        out = []
        for path in sorted(self.jobs.glob("*.json")):
            rec = self.load_record_file(path)
            if rec:
                out.append(rec)
        return out

    def load_record_file(self, path: Path) -> CupsJobRecord | None:
        data = read_json(path)
        if data is None:
            return None
        return CupsJobRecord(
            uuid=str(data["uuid"]),
            cups_job_id=int(data["cups_job_id"]),
            cups_job_uuid=str(data["cups_job_uuid"]),
            queue=str(data.get("queue", "")),
            stage=str(data["stage"]),
        )

    def find_by_uuid(self, uuid: str) -> CupsJobRecord | None:
        return next((r for r in self.records() if r.uuid == uuid), None)

    def document_path(self, uuid: str) -> Path:
        return self.docs / f"{uuid}.pdf"

    def kept_path(self, uuid: str) -> Path:
        """Where a document the cloud does not store (storage mode "node") is kept."""
        return self.kept / f"{uuid}.pdf"

    def mark_done(self, uuid: str, state: JobState, impressions: int | None) -> None:
        """Remember a job's end state so the backend's next run can finish the CUPS job."""
        atomic_write_json(
            self.done / f"{uuid}.json", {"state": state.value, "impressions": impressions}
        )

    def load_done(self, uuid: str) -> DoneRecord | None:
        data = read_json(self.done / f"{uuid}.json")
        if data is None:
            return None
        imp = data.get("impressions")
        return DoneRecord(JobState(data["state"]), int(imp) if imp is not None else None)

    def forget(self, record: CupsJobRecord) -> None:
        """Drop everything the spool holds for a finished CUPS job. Idempotent."""
        for path in (
            self.record_path(record.cups_job_uuid),
            self.document_path(record.uuid),
            self.kept_path(record.uuid),
            self.done / f"{record.uuid}.json",
        ):
            path.unlink(missing_ok=True)
