"""Stored documents behind one small interface (:class:`DocumentStore`), chosen per job:

- :class:`EncryptedFolder` ("cloud"): one file per document in ``storage_dir``, encrypted at rest
  with its own AES-256-GCM key, written atomically while streaming;
- :class:`OnNode` ("node"): the document never leaves the printers' network; the cloud keeps
  metadata only, and has nothing to store, open or delete.

The encrypted format is a chunked AEAD (the STREAM construction): a header, then segments of up
to ``SEGMENT`` plaintext bytes, each sealed with its own nonce (a random per-file prefix, the
segment's index and a last-segment flag) and tag, with the header as associated data. Reordered,
truncated, extended or altered files fail to decrypt. Memory stays flat: one segment at a time.

The key is returned to the caller, which keeps it in the database (``documents.Documents``);
without the key the file is noise (crypto-shredding), and deleting removes the file as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import struct
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pullprint.errors import DocumentError
from pullprint.model import StorageKind

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
SEGMENT = 64 * 1024
TAG = 16
MAGIC = b"PPDOC1\n\x00"
_PREFIX = 7
_HEADER = struct.Struct(f">8s{_PREFIX}sI")  # magic, nonce prefix, segment size
# How much of an over-long body is read and discarded so the client sees the 422, not a reset.
DRAIN_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Expected:
    """What the registration promised about a document."""

    size: int
    sha256: str


@dataclass(frozen=True)
class StoredDocument:
    """A document written to the store: its file id and its key (keep both, secretly)."""

    file_id: str
    key: bytes
    size: int


class Readable(Protocol):
    """An open document: ``read`` returns plaintext bytes, b"" at the end."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class DocumentStore(Protocol):
    """Where documents of one storage kind live."""

    kind: StorageKind

    async def receive(
        self, uuid: str, chunks: AsyncIterator[bytes], expected: Expected
    ) -> StoredDocument:
        """Stream ``chunks`` into a new stored document; DocumentError keeps nothing."""

    def open(self, uuid: str, file_id: str, key: bytes) -> Readable:
        """Open a stored document for reading; FileNotFoundError if it is not there."""

    def delete(self, uuid: str) -> bool:
        """Remove every file of job ``uuid``; True if one was removed (idempotent)."""

    def files(self, uuid: str) -> list[Path]:
        """Every file of job ``uuid`` on disk, finished or partial (for checks and tests)."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", index, last)


class _Sealer:
    """Encrypts a stream segment by segment into ``fh``."""

    def __init__(self, fh: BinaryIO, key: bytes) -> None:
        self._fh = fh
        self._aead = AESGCM(key)
        self._prefix = secrets.token_bytes(_PREFIX)
        self._header = _HEADER.pack(MAGIC, self._prefix, SEGMENT)
        self._index = 0
        self._buffer = bytearray()
        fh.write(self._header)

    def write(self, data: bytes) -> None:
        self._buffer += data
        # Keep at least one byte back: the last segment must be sealed as the last one.
        while len(self._buffer) > SEGMENT:
            self._seal(bytes(self._buffer[:SEGMENT]), last=False)
            del self._buffer[:SEGMENT]

    def finish(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, last: bool) -> None:
        if self._index >= 2**32 - 1:
            raise DocumentError("the document is too large to encrypt")
        nonce = _nonce(self._prefix, self._index, last)
        self._fh.write(self._aead.encrypt(nonce, plain, self._header))
        self._index += 1


class DecryptingReader:
    """Reads an encrypted document one segment at a time; raises DocumentError if it was
    altered or truncated. Closing closes the file (idempotent)."""

    def __init__(self, fh: BinaryIO, key: bytes) -> None:
        self._fh = fh
        try:
            self._total = os.fstat(fh.fileno()).st_size
            header = fh.read(_HEADER.size)
            if len(header) != _HEADER.size:
                raise DocumentError("the stored document is truncated")
            magic, self._prefix, self._segment = _HEADER.unpack(header)
            if magic != MAGIC or not 0 < self._segment <= 16 * SEGMENT:
                raise DocumentError("the stored document is not in pullprint's format")
        except BaseException:
            fh.close()
            raise
        self._header = header
        self._aead = AESGCM(key)
        self._index = 0
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        """The next segment's plaintext (``size`` is a hint only), b"" after the last."""
        del size
        if self._done:
            return b""
        sealed = self._fh.read(self._segment + TAG)
        last = self._fh.tell() >= self._total
        try:
            plain = self._aead.decrypt(
                _nonce(self._prefix, self._index, last), sealed, self._header
            )
        except InvalidTag as exc:
            raise DocumentError("the stored document failed its integrity check") from exc
        self._index += 1
        self._done = last
        return plain

    def close(self) -> None:
        self._fh.close()


class EncryptedFolder:
    """Documents in a folder (mode 0700), each encrypted with its own key ("cloud" storage)."""

    kind = StorageKind.CLOUD

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, uuid: str, file_id: str) -> Path:
        """Where a stored document lives (``uuid`` validated already; ``file_id`` is hex)."""
        return self.folder / f"{uuid}.{file_id}.enc"

    def files(self, uuid: str) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if uuid in p.name)

    async def receive(
        self, uuid: str, chunks: AsyncIterator[bytes], expected: Expected
    ) -> StoredDocument:
        """Encrypt ``chunks`` with a new key into a temp file, checking size and sha256 of the
        plaintext against ``expected``; on success rename it to its final name. Raises
        DocumentError (message names the limit) and keeps nothing otherwise."""
        key = AESGCM.generate_key(bit_length=256)
        file_id = secrets.token_hex(8)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{uuid}.", suffix=".part", dir=self.folder)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                sealer = _Sealer(fh, key)
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
                    sealer.write(chunk)
                sealer.finish()
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
            tmp.replace(self.path(uuid, file_id))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        log.info("stored document of job %s (%d bytes, encrypted)", uuid, size)
        return StoredDocument(file_id, key, size)

    def open(self, uuid: str, file_id: str, key: bytes) -> Readable:
        return DecryptingReader(self.path(uuid, file_id).open("rb"), key)

    def delete(self, uuid: str) -> bool:
        removed = False
        for path in self.files(uuid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        if removed:
            log.info("deleted document of job %s", uuid)
        return removed


class OnNode:
    """The document stays on the origin node ("node" storage): nothing is kept here."""

    kind = StorageKind.NODE

    async def receive(
        self, uuid: str, chunks: AsyncIterator[bytes], expected: Expected
    ) -> StoredDocument:
        raise DocumentError(f"job {uuid} keeps its document on its node; nothing is uploaded")

    def open(self, uuid: str, file_id: str, key: bytes) -> Readable:
        raise FileNotFoundError(f"job {uuid} keeps its document on its node")

    def delete(self, uuid: str) -> bool:
        return False

    def files(self, uuid: str) -> list[Path]:
        return []


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
