"""Stored documents behind one small interface (:class:`DocumentStore`), chosen per job:

- :class:`EncryptedFolder` ("cloud"): one file per document in ``storage_dir``, encrypted at rest
  with its own AES-256-GCM key, written atomically while streaming;
- :class:`S3Store` ("s3"): the same encrypted format, one object per document in a bucket of an
  S3-compatible object store (boto3), uploaded while streaming (multipart), read back streaming;
  the key stays in the database, so the object store only ever holds ciphertext;
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Sealer:
    """Encrypts a stream segment by segment into ``fh`` (a file, or an S3 part buffer)."""

    def __init__(self, fh: _Sink, key: bytes) -> None:
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


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _read_exact(fh: _Source, size: int) -> bytes:
    """``size`` bytes from ``fh`` (fewer only at its end): network bodies return short reads."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = fh.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


class DecryptingReader:
    """Reads an encrypted document one segment at a time; raises DocumentError if it was
    altered or truncated. ``total`` is the stored size (a file's is looked up). Closing closes
    the source (idempotent)."""

    def __init__(self, fh: _Source, key: bytes, total: int | None = None) -> None:
        self._fh = fh
        try:
            if total is None:
                total = os.fstat(fh.fileno()).st_size  # type: ignore[attr-defined]
            self._total = total
            header = _read_exact(fh, _HEADER.size)
            if len(header) != _HEADER.size:
                raise DocumentError("the stored document is truncated")
            magic, self._prefix, self._segment = _HEADER.unpack(header)
            if magic != MAGIC or not 0 < self._segment <= 16 * SEGMENT:
                raise DocumentError("the stored document is not in pullprint's format")
        except BaseException:
            fh.close()
            raise
        self._header = header
        self._position = len(header)
        self._aead = AESGCM(key)
        self._index = 0
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        """The next segment's plaintext (``size`` is a hint only), b"" after the last."""
        del size
        if self._done:
            return b""
        sealed = _read_exact(self._fh, self._segment + TAG)
        self._position += len(sealed)
        last = self._position >= self._total
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
        try:
            with os.fdopen(fd, "wb") as fh:
                size = await _seal_checked(chunks, expected, _Sealer(fh, key))
                fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
            tmp.replace(self.path(uuid, file_id))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        log.info("stored document of job %s (%d bytes, encrypted)", uuid, size)
        return StoredDocument(file_id, key, size)

    def open(self, uuid: str, file_id: str, key: bytes) -> Readable:
        return DecryptingReader(self.path(uuid, file_id).open("rb"), key)

    def discard(self, uuid: str, file_id: str) -> None:
        """Remove one stored file that was not kept (idempotent)."""
        self.path(uuid, file_id).unlink(missing_ok=True)

    def delete(self, uuid: str) -> bool:
        removed = False
        for path in self.files(uuid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        if removed:
            log.info("deleted document of job %s", uuid)
        return removed


class _Parts:
    """Sealed bytes gathered into multipart-upload parts of at least ``PART`` bytes."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


# S3 parts must be at least 5 MiB (but the last); 8 MiB keeps memory flat and requests few.
PART = 8 * 1024 * 1024


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 store keeps its objects (``cloud.s3_*`` in the configuration)."""

    bucket: str
    endpoint_url: str = ""
    prefix: str = ""
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""


class S3Store:
    """Documents as objects in an S3-compatible bucket, each encrypted with its own key before
    it leaves this process ("s3" storage; jobs are of kind "cloud": the cloud serves them).

    The object is ``{prefix}{uuid}.{file_id}.enc`` in the format of :class:`EncryptedFolder`.
    An upload is a multipart upload completed only once size and sha256 match the registration;
    otherwise it is aborted and nothing is kept. Reads stream the object's body."""

    kind = StorageKind.CLOUD

    def __init__(self, settings: S3Settings, client: Any = None) -> None:
        """``client``: a boto3 S3 client (made from ``settings`` if None). Creates the bucket
        if it is missing; DocumentError if the store cannot be reached."""
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client = client if client is not None else self._make_client(settings)
        self._ensure_bucket()

    @staticmethod
    def _make_client(settings: S3Settings) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret_key or None,
            region_name=settings.region or None,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise DocumentError(f"S3 bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentError(f"S3 store unreachable: {exc}") from exc
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise DocumentError(f"cannot create S3 bucket {self.bucket}: {exc}") from exc
        log.info("created S3 bucket %s", self.bucket)

    def key(self, uuid: str, file_id: str) -> str:
        """The object key of a stored document."""
        return f"{self.prefix}{uuid}.{file_id}.enc"

    def files(self, uuid: str) -> list[Path]:
        """Every object of job ``uuid`` and every unfinished upload of it, as key paths."""
        found = [Path(k) for k in self._keys(uuid)]
        uploads = self._client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=f"{self.prefix}{uuid}."
        )
        found += [Path(u["Key"]) for u in uploads.get("Uploads", [])]
        return sorted(found)

    def _keys(self, uuid: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{uuid}."):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return keys

    async def receive(
        self, uuid: str, chunks: AsyncIterator[bytes], expected: Expected
    ) -> StoredDocument:
        """Encrypt ``chunks`` with a new key into a multipart upload, checking size and sha256
        of the plaintext against ``expected``; complete it on success, abort it otherwise.
        Raises DocumentError (message names the limit or the store's error); keeps nothing
        then."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = AESGCM.generate_key(bit_length=256)
        file_id = secrets.token_hex(8)
        name = self.key(uuid, file_id)
        client = self._client
        try:
            upload = await asyncio.to_thread(
                client.create_multipart_upload, Bucket=self.bucket, Key=name
            )
        except (BotoCoreError, ClientError) as exc:
            raise DocumentError(f"the S3 store refused the document: {exc}") from exc
        upload_id = upload["UploadId"]
        parts: list[dict[str, object]] = []
        buffer = _Parts()

        async def send(data: bytes) -> None:
            number = len(parts) + 1
            answer = await asyncio.to_thread(
                client.upload_part,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        async def flush() -> None:
            if len(buffer.buffer) >= PART:
                await send(buffer.take())

        try:
            size = await _seal_checked(chunks, expected, _Sealer(buffer, key), flush)
            await send(buffer.take())
            await asyncio.to_thread(
                client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    client.abort_multipart_upload, Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            if isinstance(exc, BotoCoreError | ClientError):
                raise DocumentError(f"the S3 store failed while storing: {exc}") from exc
            raise
        log.info("stored document of job %s in S3 (%d bytes, encrypted)", uuid, size)
        return StoredDocument(file_id, key, size)

    def open(self, uuid: str, file_id: str, key: bytes) -> Readable:
        """Stream the object decrypted; FileNotFoundError if it is not there."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.key(uuid, file_id))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"no stored document for job {uuid} in S3") from exc
            raise DocumentError(f"the S3 store failed while reading: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentError(f"the S3 store failed while reading: {exc}") from exc
        return DecryptingReader(answer["Body"], key, int(answer["ContentLength"]))

    def discard(self, uuid: str, file_id: str) -> None:
        """Remove one stored object that was not kept (idempotent)."""
        self._client.delete_object(Bucket=self.bucket, Key=self.key(uuid, file_id))

    def delete(self, uuid: str) -> bool:
        """Remove every object and unfinished upload of job ``uuid``; True if one was there."""
        removed = False
        for name in self._keys(uuid):
            self._client.delete_object(Bucket=self.bucket, Key=name)
            removed = True
        uploads = self._client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=f"{self.prefix}{uuid}."
        )
        for upload in uploads.get("Uploads", []):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        if removed:
            log.info("deleted document of job %s from S3", uuid)
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


async def _seal_checked(
    chunks: AsyncIterator[bytes],
    expected: Expected,
    sealer: _Sealer,
    after_write: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Encrypt ``chunks`` through ``sealer`` (finished at the end), checking size and sha256 of
    the plaintext against ``expected``; ``after_write`` runs after each chunk (S3 sends a full
    part). Returns the size; DocumentError (naming the limit) if the document is not the one
    registered."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk)
        if size > expected.size:
            await _drain(chunks, size, expected.size)
            raise DocumentError(
                f"the document is larger than the registered size of {expected.size} bytes"
            )
        digest.update(chunk)
        sealer.write(chunk)
        if after_write is not None:
            await after_write()
    sealer.finish()
    if size != expected.size:
        raise DocumentError(
            f"the document has {size} bytes but the registration said {expected.size} bytes"
        )
    actual = digest.hexdigest()
    if actual != expected.sha256:
        raise DocumentError(
            f"the document's sha256 is {actual} but the registration said {expected.sha256}"
        )
    return size


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
