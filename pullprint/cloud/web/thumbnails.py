"""First-page thumbnails of stored documents, rendered with poppler's ``pdftoppm``.

The document is decrypted into a private temporary folder (0700), page 1 is rendered to a small
PNG and the folder is removed. PNGs are cached in memory only (a bounded LRU keyed by job and
content hash): the documents are encrypted at rest, so their pictures are not written to disk
either. A document that stays on the node (``storage_mode = "node"``) has no thumbnail.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from pullprint.cloud.documents import Documents
from pullprint.cloud.storage import CHUNK
from pullprint.errors import DocumentError

log = logging.getLogger(__name__)

PDFTOPPM = "pdftoppm"
WIDTH = 240  # pixels: sharp at 84 CSS px on a 2x phone screen, a few KB per thumbnail
TIMEOUT = 30.0  # seconds for one render
CACHE_ENTRIES = 512


class Thumbnails:
    """Renders and caches first-page PNGs. Thread-safe; at most ``parallel`` renders at once."""

    def __init__(self, documents: Documents, parallel: int = 2) -> None:
        self._documents = documents
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(parallel)

    def png(self, uuid: str, sha256: str) -> bytes:
        """The PNG of page 1 of job ``uuid``'s stored document (cached). FileNotFoundError when
        the job has no stored document; DocumentError when it cannot be rendered."""
        key = (uuid, sha256)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with self._slots:
            data = self._render(uuid)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return data

    def forget(self, uuid: str) -> None:
        """Drop the job's cached thumbnails (idempotent)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == uuid]:
                del self._cache[key]

    def _render(self, uuid: str) -> bytes:
        folder = Path(tempfile.mkdtemp(prefix="pullprint-thumb-"))  # mode 0700
        try:
            source = folder / "doc.pdf"
            reader = self._documents.open(uuid)
            try:
                with source.open("wb") as out:
                    while chunk := reader.read(CHUNK):
                        out.write(chunk)
            finally:
                reader.close()
            return render_first_page(source, folder / "page")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def render_first_page(pdf: Path, stem: Path, width: int = WIDTH) -> bytes:
    """Render page 1 of ``pdf`` to ``<stem>.png`` (``width`` pixels wide) and return its bytes.
    Writes only that file; DocumentError if pdftoppm fails or takes longer than TIMEOUT."""
    try:
        done = subprocess.run(
            [PDFTOPPM, "-f", "1", "-l", "1", "-png", "-singlefile", "-scale-to-x", str(width),
             "-scale-to-y", "-1", str(pdf), str(stem)],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise DocumentError(f"the first page took longer than {TIMEOUT:.0f} s to draw") from exc
    out = stem.with_suffix(".png")
    if done.returncode != 0 or not out.is_file():
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise DocumentError(f"pdftoppm could not draw page 1: {reason[-1] if reason else ''}")
    return out.read_bytes()
