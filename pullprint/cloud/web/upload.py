"""Web upload: a PDF, PNG or JPEG from the browser becomes a held job in my queue.

The document goes through the same preparation as a job printed to the CUPS queue
(``filters.submission.prepare_submission``: sanitised, pages checked; images are first made
into a lossless PDF with img2pdf, one image per A4 page). The job is registered like a node's
(``JobBook.register``: held, with a pending transaction) with origin ``web`` and no CUPS job,
and its document is stored encrypted in the cloud (``Documents.cloud.receive`` then
``JobBook.document_stored``), so any node's printer can print it. The body limit is
``MAX_UPLOAD_BYTES`` (named in the error).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import img2pdf
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pullprint.cloud.auth import Principal
from pullprint.cloud.context import Cloud, cloud_of
from pullprint.cloud.storage import CHUNK, Expected
from pullprint.cloud.validate import CancelRequest
from pullprint.cloud.web import layout
from pullprint.cloud.web.layout import check_form, redirect, render, require_person
from pullprint.errors import CloudRefused, DocumentError, InvalidRequest
from pullprint.filters.options import FinishingOptions
from pullprint.filters.submission import prepare_submission
from pullprint.model import Job, JobSubmission, StorageKind

log = logging.getLogger(__name__)

router = APIRouter(route_class=layout.WebRoute)

PATH = "/upload"
ORIGIN = "web"  # the origin of web-uploaded jobs: no node's CUPS holds them
QUEUE = "web"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart headers and the other fields
MAX_TITLE = 255
A4 = (img2pdf.mm_to_pt(210), img2pdf.mm_to_pt(297))
KINDS = "PDF, PNG or JPEG"


def limit_text(limit: int = MAX_UPLOAD_BYTES) -> str:
    return f"{limit // (1024 * 1024)} MB"


def sniff(head: bytes) -> str:
    """The kind of a file from its first bytes: pdf, png, jpeg or "" (not printable)."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return ""


def image_to_pdf(src: Path, dst: Path) -> None:
    """Write ``dst``: the image ``src`` on an A4 page (fitted, lossless where img2pdf can be;
    an image with transparency is flattened onto white first). DocumentError if unreadable."""
    layout_fun = img2pdf.get_layout_fun(A4, fit=img2pdf.FitMode.into, auto_orient=True)
    try:
        try:
            data = img2pdf.convert(str(src), layout_fun=layout_fun)
        except img2pdf.AlphaChannelError:
            from PIL import Image

            with Image.open(src) as image:
                flat = Image.new("RGB", image.size, "white")
                flat.paste(image, mask=image.convert("RGBA").split()[-1])
            buffer = io.BytesIO()
            flat.save(buffer, format="PNG")
            data = img2pdf.convert(buffer.getvalue(), layout_fun=layout_fun)
    except (img2pdf.ImageOpenError, OSError, ValueError) as exc:
        raise DocumentError(f"the image cannot be read: {exc}") from exc
    assert isinstance(data, bytes)
    dst.write_bytes(data)


@dataclass(frozen=True)
class Prepared:
    """A document ready to register: the sanitised PDF and its facts."""

    path: Path
    pages: int
    size: int
    sha256: str


def prepare(src: Path, work: Path) -> Prepared:
    """Make ``src`` (PDF, PNG or JPEG) a sanitised PDF in ``work``, as the CUPS filter would.
    Raises DocumentError naming what cannot be printed. Writes only under ``work``."""
    with src.open("rb") as fh:
        kind = sniff(fh.read(1024))
    if not kind:
        raise DocumentError(f"this file cannot be printed: upload a {KINDS} file")
    pdf = src
    if kind != "pdf":
        pdf = work / "image.pdf"
        image_to_pdf(src, pdf)
    out = work / "prepared.pdf"
    done = prepare_submission(pdf, out, FinishingOptions())
    digest = hashlib.sha256()
    with out.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return Prepared(out, done.pages, out.stat().st_size, digest.hexdigest())


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            yield chunk


async def store_upload(cloud: Cloud, me: Principal, title: str, doc: Prepared) -> Job:
    """Register a held web job of ``me`` for ``doc`` and store its document encrypted in the
    cloud. If storing fails the job is canceled again (nothing is left held without a
    document)."""
    sub = JobSubmission(
        uuid=str(uuidlib.uuid4()),
        owner=me.user,
        title=title,
        copies=1,
        options={},
        pages=doc.pages,
        size=doc.size,
        sha256=doc.sha256,
        queue=QUEUE,
        origin=ORIGIN,
        cups_job_id=0,
        cups_job_uuid="",
    )
    job, _created = await run_in_threadpool(cloud.jobs.register, me, sub)
    try:
        stored = await cloud.documents.cloud.receive(
            job.uuid, _chunks(doc.path), Expected(doc.size, doc.sha256)
        )
        await run_in_threadpool(cloud.jobs.document_stored, job.uuid, stored)
    except BaseException:
        await run_in_threadpool(
            cloud.jobs.cancel, me, job.uuid, CancelRequest(None, "the web upload failed")
        )
        raise
    log.info("web upload: job %s of %s, %d page(s)", job.uuid, me.user, doc.pages)
    return await run_in_threadpool(cloud.jobs.get, me, job.uuid)


def _upload_page(request: Request, status: int = 200, error: str = "") -> Response:
    return render(
        request, "upload.html", status_code=status, nav="upload", error=error,
        limit=limit_text(), kinds=KINDS,
    )  # fmt: skip


@router.get(PATH)
async def upload_page(request: Request, _me: Principal = Depends(require_person)) -> Response:
    return _upload_page(request)


@router.post(PATH)
async def upload(request: Request, me: Principal = Depends(require_person)) -> Response:
    """Take the form's ``document``: prepare it, register it and store it; then to my queue.
    Too large (by Content-Length, before reading): 413; not printable: 422; both say why."""
    cloud = cloud_of(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + FORM_OVERHEAD:
        return _upload_page(
            request, 413, f"the file is larger than the upload limit of {limit_text()}"
        )
    if cloud.config.storage_mode == StorageKind.NODE.value:
        return _upload_page(
            request, 409, 'web upload needs documents stored in the cloud (storage_mode = "node")'
        )
    form = await check_form(request)
    document = form.get("document")
    if not isinstance(document, UploadFile) or not document.filename:
        return _upload_page(request, 422, f"choose a {KINDS} file to upload")
    raw_title = form.get("title")
    title = (raw_title.strip() if isinstance(raw_title, str) else "") or document.filename
    title = title[:MAX_TITLE]
    work = Path(tempfile.mkdtemp(prefix="pullprint-upload-"))  # 0700
    try:
        src = work / "upload"
        size = await run_in_threadpool(_save, document, src)
        if size > MAX_UPLOAD_BYTES:
            raise InvalidRequest(413, f"the file is larger than the upload limit of {limit_text()}")
        if size == 0:
            raise DocumentError("the file is empty")
        prepared = await run_in_threadpool(prepare, src, work)
        job = await store_upload(cloud, me, title, prepared)
    except DocumentError as exc:
        reason = str(exc).replace(f"{work}/upload: ", "").replace(str(work), "")
        log.info("web upload of %s refused: %s", me.user, reason)
        return _upload_page(request, 422, f"{document.filename}: {reason}")
    except CloudRefused as exc:
        return _upload_page(request, exc.status, f"{document.filename}: {exc.message}")
    finally:
        await document.close()
        shutil.rmtree(work, ignore_errors=True)
    return redirect(
        request,
        "/",
        message=f"Uploaded {job.title!r} ({job.pages} page{'s' if job.pages != 1 else ''}): "
        "it waits for release.",
    )


def _save(document: UploadFile, dst: Path) -> int:
    """Copy the spooled upload to ``dst``, stopping just past the limit; returns bytes read."""
    size = 0
    document.file.seek(0)
    with dst.open("wb") as out:
        while chunk := document.file.read(CHUNK):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                break
            out.write(chunk)
    return size
