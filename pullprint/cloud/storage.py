"""Stored documents: one file per job in ``storage_dir``, written atomically while streaming.

A document is written to a temp file in the same folder while its size and sha256 are computed,
and renamed over ``<uuid>.doc`` only when both match the registration; otherwise the temp file is
removed and nothing is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pullprint.errors import DocumentError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# How much of an over-long body is read and discarded so the client sees the 422, not a reset.
DRAIN_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Expected:
    """What the registration promised about a document."""

    size: int
    sha256: str


class DocumentStore:
    """The folder of stored documents; creates it (mode 0700) if missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, uuid: str) -> Path:
        """Where the document of job ``uuid`` lives (``uuid`` must be validated already)."""
        return self.folder / f"{uuid}.doc"

    def exists(self, uuid: str) -> bool:
        return self.path(uuid).is_file()

    async def receive(self, uuid: str, chunks: AsyncIterator[bytes], expected: Expected) -> int:
        """Stream ``chunks`` into the job's document; on success the file is replaced atomically.

        Raises DocumentError (message names the limit) and keeps nothing when the size or the
        sha256 differ from ``expected``. Returns the number of bytes stored.
        """
        fd, tmp_name = tempfile.mkstemp(prefix=f".{uuid}.", suffix=".part", dir=self.folder)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    size += len(chunk)
                    if size > expected.size:
                        await _drain(chunks, size, expected.size)
                        raise DocumentError(
                            f"the document is larger than the registered size of "
                            f"{expected.size} bytes"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            if size != expected.size:
                raise DocumentError(
                    f"the document has {size} bytes but the registration said {expected.size} bytes"
                )
            actual = digest.hexdigest()
            if actual != expected.sha256:
                raise DocumentError(
                    f"the document's sha256 is {actual} but the registration said {expected.sha256}"
                )
            tmp.replace(self.path(uuid))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        log.info("stored document of job %s (%d bytes)", uuid, size)
        return size

    def open(self, uuid: str) -> BinaryIO:
        """Open the stored document for reading (raises FileNotFoundError if absent)."""
        return self.path(uuid).open("rb")

    def delete(self, uuid: str) -> bool:
        """Remove the job's document if stored; True if a file was removed (idempotent)."""
        try:
            self.path(uuid).unlink()
        except FileNotFoundError:
            return False
        log.info("deleted document of job %s", uuid)
        return True


async def _drain(chunks: AsyncIterator[bytes], seen: int, limit: int) -> None:
    """Read and discard the rest of an over-long body, up to DRAIN_LIMIT bytes past ``limit``."""
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit + DRAIN_LIMIT:
            return


async def discard(chunks: AsyncIterator[bytes]) -> int:
    """Read a body to its end and drop it; returns its size."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
    return total
