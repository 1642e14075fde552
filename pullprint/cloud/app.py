"""The HTTP API of the release service (docs/api.md): ``create_app(config)`` builds it.

Handlers are thin: they check the caller's role, validate the input (``validate``), run the
synchronous database work in a worker thread (``jobs.JobBook`` and friends) and turn
``pullprint.errors`` refusals into ``{"detail": ...}`` answers with their status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pullprint.cloud import db, events, validate
from pullprint.cloud.auth import Principal, Role, TokenAuth, require
from pullprint.cloud.jobs import Download, JobBook
from pullprint.cloud.limits import BodyLimit
from pullprint.cloud.notify import LocalNotifier, Notifier
from pullprint.cloud.printers import PrinterRegistry
from pullprint.cloud.storage import CHUNK, DocumentStore, discard
from pullprint.cloud.users import UserDirectory
from pullprint.config import CloudConfig
from pullprint.errors import CloudRefused, DocumentError, InvalidRequest

log = logging.getLogger(__name__)

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Cloud:
    """Everything the handlers use, built once per app."""

    config: CloudConfig
    engine: Engine
    auth: TokenAuth
    users: UserDirectory
    printers: PrinterRegistry
    jobs: JobBook
    store: DocumentStore
    notifier: Notifier


def create_app(config: CloudConfig, notifier: Notifier | None = None) -> FastAPI:
    """Build the API app: opens the database and applies its migrations (``upgrade head``),
    creates ``storage_dir``. The notifier binds to the loop when the app starts serving."""
    engine = db.make_engine(config.database_url)
    db.upgrade(engine)
    store = DocumentStore(config.storage_dir)
    notifier = notifier or LocalNotifier()
    users = UserDirectory(engine)
    cloud = Cloud(
        config=config,
        engine=engine,
        auth=TokenAuth(config.admin_token, config.node_tokens),
        users=users,
        printers=PrinterRegistry(engine),
        jobs=JobBook(engine, store, notifier, users, config.currency),
        store=store,
        notifier=notifier,
    )
    if not config.admin_token:
        log.warning("cloud.admin_token is empty: admin endpoints are disabled")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()
            engine.dispose()

    app = FastAPI(
        title="pullprint cloud",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.cloud = cloud
    app.add_middleware(BodyLimit, limit=validate.MAX_JSON_BODY, exempt=_is_upload)
    app.add_exception_handler(CloudRefused, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router, prefix=PREFIX)
    return app


def _is_upload(method: str, path: str) -> bool:
    return method == "PUT" and path.startswith(f"{PREFIX}/jobs/") and path.endswith("/document")


async def _refused(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CloudRefused)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


async def _invalid(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    detail = f"{where}: {first.get('msg', 'invalid value')}"
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


# -- dependencies ------------------------------------------------------------------------------


def _cloud(request: Request) -> Cloud:
    cloud = request.app.state.cloud
    assert isinstance(cloud, Cloud)
    return cloud


def _principal(request: Request) -> Principal:
    return _cloud(request).auth.authenticate(request.headers.get("authorization"))


def _admin(principal: Principal = Depends(_principal)) -> Principal:
    return require(principal, Role.ADMIN)


def _node(principal: Principal = Depends(_principal)) -> Principal:
    return require(principal, Role.NODE)


def _admin_or_node(principal: Principal = Depends(_principal)) -> Principal:
    return require(principal, Role.ADMIN, Role.NODE)


async def _json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(400, f"the request body is not valid JSON: {exc}") from exc


router = APIRouter()


# -- endpoints ---------------------------------------------------------------------------------


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/users", status_code=201)
async def add_user(request: Request, _p: Principal = Depends(_admin)) -> dict[str, str]:
    body = validate.body_object(await _json(request))
    name = validate.name(body.get("name"), "name")
    pin = validate.pin(body.get("pin"))
    await run_in_threadpool(_cloud(request).users.add, name, pin)
    return {"name": name}


@router.post("/printers", status_code=201)
async def add_printer(request: Request, _p: Principal = Depends(_admin)) -> dict[str, Any]:
    printer = validate.printer(await _json(request))
    stored = await run_in_threadpool(_cloud(request).printers.upsert, printer)
    return stored.to_json()


@router.get("/printers")
async def list_printers(
    request: Request, _p: Principal = Depends(_admin_or_node)
) -> dict[str, Any]:
    found = await run_in_threadpool(_cloud(request).printers.all)
    return {"printers": [p.to_json() for p in found]}


@router.post("/jobs")
async def register(request: Request, caller: Principal = Depends(_node)) -> Response:
    sub = validate.submission(await _json(request))
    job, created = await run_in_threadpool(_cloud(request).jobs.register, caller, sub)
    return JSONResponse(job.to_json(), status_code=201 if created else 200)


@router.put("/jobs/{uuid}/document", status_code=204)
async def upload(uuid: str, request: Request, caller: Principal = Depends(_node)) -> Response:
    uuid = validate.job_uuid(uuid)
    cloud = _cloud(request)
    plan = await run_in_threadpool(cloud.jobs.plan_upload, caller, uuid)
    if plan.already_stored:
        await discard(request.stream())
        return Response(status_code=204)
    try:
        await cloud.store.receive(uuid, request.stream(), plan.expected)
    except DocumentError as exc:
        raise InvalidRequest(422, str(exc)) from exc
    await run_in_threadpool(cloud.jobs.document_stored, uuid)
    return Response(status_code=204)


@router.get("/jobs")
async def list_jobs(request: Request, _p: Principal = Depends(_admin)) -> dict[str, Any]:
    user_q = request.query_params.get("user")
    state_q = request.query_params.get("state")
    user = validate.name(user_q) if user_q else None
    state = validate.job_state(state_q) if state_q else None
    found = await run_in_threadpool(_cloud(request).jobs.list, user, state)
    return {"jobs": [j.to_json() for j in found]}


@router.get("/jobs/{uuid}")
async def get_job(
    uuid: str, request: Request, caller: Principal = Depends(_admin_or_node)
) -> dict[str, Any]:
    job = await run_in_threadpool(_cloud(request).jobs.get, caller, validate.job_uuid(uuid))
    return job.to_json()


@router.post("/jobs/{uuid}/release")
async def release(uuid: str, request: Request, _p: Principal = Depends(_admin)) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    req = validate.release(await _json(request))
    job = await run_in_threadpool(_cloud(request).jobs.release, uuid, req)
    return job.to_json()


@router.post("/jobs/{uuid}/operator-release")
async def operator_release(
    uuid: str, request: Request, caller: Principal = Depends(_admin_or_node)
) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    obj = validate.body_object(await _json(request))
    printer = validate.name(obj.get("printer"), "printer")
    operator = validate.name(obj.get("operator"), "operator")
    job = await run_in_threadpool(
        _cloud(request).jobs.operator_release, caller, uuid, printer, operator
    )
    return job.to_json()


@router.post("/jobs/{uuid}/cancel")
async def cancel(
    uuid: str, request: Request, caller: Principal = Depends(_admin_or_node)
) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    req = validate.cancel(await _json(request))
    job = await run_in_threadpool(_cloud(request).jobs.cancel, caller, uuid, req)
    return job.to_json()


@router.get("/node/events")
async def node_events(request: Request, caller: Principal = Depends(_node)) -> dict[str, Any]:
    cloud = _cloud(request)
    limit = cloud.config.long_poll_seconds
    after = validate.query_int(request.query_params.get("after"), "after", 0)
    timeout = validate.query_seconds(request.query_params.get("timeout"), "timeout", limit, limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        generation = cloud.notifier.generation(caller.node)
        found = await run_in_threadpool(events.after, cloud.engine, caller.node, after)
        remaining = deadline - loop.time()
        if found or remaining <= 0:
            break
        if not await cloud.notifier.wait(caller.node, generation, remaining):
            found = await run_in_threadpool(events.after, cloud.engine, caller.node, after)
            break
    cursor = found[-1].id if found else after
    return {"events": [e.to_json() for e in found], "cursor": cursor}


@router.post("/jobs/{uuid}/claim")
async def claim(uuid: str, request: Request, caller: Principal = Depends(_node)) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    validate.body_object(await _json(request))
    job = await run_in_threadpool(_cloud(request).jobs.claim, caller, uuid)
    return job.to_json()


@router.get("/jobs/{uuid}/document")
async def download(uuid: str, request: Request, caller: Principal = Depends(_node)) -> Response:
    uuid = validate.job_uuid(uuid)
    doc = await run_in_threadpool(_cloud(request).jobs.open_document, caller, uuid)
    return StreamingResponse(
        _read_chunks(doc),
        media_type=doc.media_type,
        headers={"Content-Length": str(doc.size)},
    )


async def _read_chunks(doc: Download) -> AsyncIterator[bytes]:
    """Yield the open document in chunks, closing it at the end (or when abandoned)."""
    try:
        while chunk := await run_in_threadpool(doc.file.read, CHUNK):
            yield chunk
    finally:
        doc.file.close()


@router.post("/jobs/{uuid}/progress")
async def progress(
    uuid: str, request: Request, caller: Principal = Depends(_node)
) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    req = validate.progress(await _json(request))
    job = await run_in_threadpool(_cloud(request).jobs.progress, caller, uuid, req)
    return job.to_json()
