"""``POST /api/v1/jobs/upload``: a signed-in user puts a PDF, PNG or JPEG into their queue over
the API (``pullprint print FILE``). Included by ``cloud.app.create_app``.

The same library code as the web upload (``web.upload.prepare`` and ``store_upload``): the
document is prepared as the CUPS filter would, registered as a held web job of the caller and
stored encrypted in the cloud. The body is the raw file (``application/octet-stream``), streamed
to a private temporary folder and never held whole in memory; ``title`` comes as a query
parameter (default: ``X-Filename``, else "upload"). Exempt from the JSON body limit; its own
limit is ``web.upload.MAX_UPLOAD_BYTES``, named in the 413.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pullprint.cloud import schemas
from pullprint.cloud.auth import Principal
from pullprint.cloud.context import cloud_of, person
from pullprint.cloud.web.upload import (
    MAX_TITLE,
    MAX_UPLOAD_BYTES,
    limit_text,
    prepare,
    store_upload,
)
from pullprint.errors import Conflict, DocumentError, Forbidden, InvalidRequest
from pullprint.model import StorageKind

log = logging.getLogger(__name__)

router = APIRouter()

PATH = "/jobs/upload"


def _too_large() -> InvalidRequest:
    return InvalidRequest(413, f"the file is larger than the upload limit of {limit_text()}")


async def save_stream(chunks: AsyncIterator[bytes], dst: Path, limit: int) -> int:
    """Write the request body to ``dst``; returns its size. InvalidRequest (413) as soon as it
    passes ``limit`` bytes (what was written stays for the caller to remove)."""
    size = 0
    with dst.open("wb") as fh:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise _too_large()
            await run_in_threadpool(fh.write, chunk)
    return size


@router.post(
    PATH,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **schemas.query(("title", {"type": "string", "maxLength": MAX_TITLE})),
    },
    responses=schemas.answers(schemas.JobOut, 201),
)
async def upload_job(request: Request, caller: Principal = Depends(person)) -> Response:
    """Put the body (a PDF, PNG or JPEG) into the signed-in caller's queue as a held job.
    413 over the limit, 422 for what cannot be printed, 409 when documents stay on nodes."""
    if not caller.user or caller.terminal:
        raise Forbidden(
            403, "uploading a document needs a signed-in user's session (pullprint login)"
        )
    cloud = cloud_of(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()
    if StorageKind(cloud.config.storage_mode) is StorageKind.NODE:
        raise Conflict(409, 'uploads need documents stored in the cloud (storage_mode = "node")')
    title = (
        request.query_params.get("title") or request.headers.get("x-filename") or "upload"
    ).strip()[:MAX_TITLE] or "upload"
    work = Path(tempfile.mkdtemp(prefix="pullprint-upload-"))  # 0700
    try:
        size = await save_stream(request.stream(), work / "upload", MAX_UPLOAD_BYTES)
        if size == 0:
            raise InvalidRequest(422, "the file is empty")
        try:
            prepared = await run_in_threadpool(prepare, work / "upload", work)
        except DocumentError as exc:
            raise InvalidRequest(422, f"{title}: {exc}") from exc
        job = await store_upload(cloud, caller, title, prepared)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("API upload: job %s of %s, %d page(s)", job.uuid, caller.user, job.pages)
    return JSONResponse(job.to_json(), status_code=201)
