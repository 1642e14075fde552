"""The HTTP API of the release service (docs/api.md): ``create_app(config)`` builds it.

Handlers are thin: they check the caller's role, validate the input (``validate``), run the
synchronous database work in a worker thread (``jobs.JobBook`` and friends) and turn
``pullprint.errors`` refusals into ``{"detail": ...}`` answers with their status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pullprint.cloud import (
    db,
    events,
    identity_api,
    pins,
    schemas,
    signing,
    users_api,
    validate,
    web,
)
from pullprint.cloud.accounting import api as accounting_api
from pullprint.cloud.auth import Principal, Role, TokenAuth
from pullprint.cloud.context import (
    Cloud,
    admin,
    admin_or_node,
    admin_or_terminal,
    anyone,
    cloud_of,
    json_answer,
    node,
    person,
    read_json,
    self_or_admin,
)
from pullprint.cloud.documents import S3_MODE, Documents, storage_kind
from pullprint.cloud.groups import DelegateKind, Delegation, Delegations, Groups
from pullprint.cloud.jobs import Download, JobBook, paged
from pullprint.cloud.limits import BodyLimit
from pullprint.cloud.lockout import Lockout, LockoutPolicy, guarded
from pullprint.cloud.notify import LocalNotifier, Notifier, PgNotifier
from pullprint.cloud.policies import DEFAULT_DIRECT_SECONDS, ReleasePolicies, ReleasePolicy, Scope
from pullprint.cloud.printers import PrinterRegistry
from pullprint.cloud.sessions import SESSION_PREFIX, TERMINAL_PREFIX, SessionBook, TerminalBook
from pullprint.cloud.signing import UrlSigner
from pullprint.cloud.storage import CHUNK, discard
from pullprint.cloud.upload_api import router as upload_router
from pullprint.cloud.users import UserDirectory, UserRole
from pullprint.config import CloudConfig, ConfigError, DirectoryConfig, OidcConfig
from pullprint.errors import CloudRefused, DocumentError, Forbidden, InvalidRequest, NotFound
from pullprint.model import MAX_JOBS_PAGE, ReleaseMode, StorageKind

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
CARD_REGISTRATION = ("auto", "approve", "off")
UNKNOWN_USER = ("refuse", "hold")  # a job whose owner is no enabled user


def check_config(config: CloudConfig) -> StorageKind:
    """The values ``config.parse`` cannot check alone; ConfigError names the key."""
    try:
        storage = storage_kind(config.storage_mode)
    except ValueError:
        raise ConfigError(
            f"cloud.storage_mode: expected one of {', '.join(k.value for k in StorageKind)}, "
            f"{S3_MODE}, got {config.storage_mode!r}"
        ) from None
    if config.download_url_seconds < 1:
        raise ConfigError("cloud.download_url_seconds: must be at least 1")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("cloud.tls_cert and cloud.tls_key: give both or neither")
    if config.card_registration not in CARD_REGISTRATION:
        raise ConfigError(
            f"cloud.card_registration: expected one of {', '.join(CARD_REGISTRATION)}, "
            f"got {config.card_registration!r}"
        )
    if config.unknown_user not in UNKNOWN_USER:
        raise ConfigError(
            f"cloud.unknown_user: expected one of {', '.join(UNKNOWN_USER)}, "
            f"got {config.unknown_user!r}"
        )
    for key in ("session_seconds", "terminal_session_seconds", "lockout_failures"):
        if getattr(config, key) < 1:
            raise ConfigError(f"cloud.{key}: must be at least 1")
    return storage


def create_app(
    config: CloudConfig,
    notifier: Notifier | None = None,
    clock: Callable[[], float] = time.time,
    directory: DirectoryConfig | None = None,
    oidc: OidcConfig | None = None,
) -> FastAPI:
    """Build the API app: opens the database and applies its migrations (``upgrade heads``),
    creates ``storage_dir``. The notifier binds to the loop when the app starts serving:
    PostgreSQL LISTEN/NOTIFY on PostgreSQL (several server processes), in-process otherwise.
    The retention sweep runs every ``retention_sweep_seconds`` while serving. ``clock`` is
    the time source of expiries and URLs (injected by tests)."""
    storage = check_config(config)
    engine = db.make_engine(config.database_url, background_checkpoints=True)
    db.upgrade(engine)
    documents = Documents.from_config(engine, config, clock)
    if notifier is None:
        notifier = PgNotifier(engine) if engine.dialect.name == "postgresql" else LocalNotifier()
    users = UserDirectory(engine, clock=clock, pin_key=pins.load_key(config.pin_key_file))
    sessions = SessionBook(engine, config.session_seconds, config.terminal_session_seconds, clock)
    terminals = TerminalBook(engine, clock)
    signer = UrlSigner(
        engine,
        signing.load_key(engine, config.download_signing_key),
        config.download_url_seconds,
        clock,
        PREFIX,
    )
    cloud = Cloud(
        config=config,
        engine=engine,
        auth=TokenAuth(
            config.admin_token,
            config.node_tokens,
            {
                SESSION_PREFIX: partial(_session_principal, sessions, terminals, users),
                TERMINAL_PREFIX: partial(_terminal_principal, terminals),
            },
        ),
        users=users,
        printers=PrinterRegistry(engine),
        jobs=JobBook(
            engine,
            documents,
            notifier,
            users,
            config.currency,
            signer=signer,
            clock=clock,
            storage=storage,
            expire_seconds=config.expire_seconds,
            keep_printed_seconds=config.keep_printed_seconds,
            unknown_user=config.unknown_user,
        ),
        documents=documents,
        notifier=notifier,
        policies=ReleasePolicies(engine, clock),
        groups=Groups(engine, clock),
        delegations=Delegations(engine, clock),
        signer=signer,
        sessions=sessions,
        terminals=terminals,
        lockout=Lockout(
            engine,
            LockoutPolicy(
                max_failures=config.lockout_failures, lock_seconds=config.lockout_seconds
            ),
            clock,
        ),
    )
    if not config.admin_token:
        log.warning("cloud.admin_token is empty: admin endpoints are disabled")
    running_notifier = notifier

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await running_notifier.start()
        loop = asyncio.get_running_loop()
        background = [loop.create_task(_sweep_forever(cloud))]
        if engine.dialect.name == "sqlite":
            background.append(loop.create_task(_checkpoint_forever(engine)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await running_notifier.stop()
            engine.dispose()  # the last SQLite connection to close checkpoints the WAL

    app = FastAPI(
        title="pullprint cloud",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    schemas.install(app)
    app.state.cloud = cloud
    app.add_middleware(BodyLimit, limit=validate.MAX_JSON_BODY, exempt=_is_upload)
    app.add_exception_handler(CloudRefused, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router, prefix=PREFIX)
    app.include_router(accounting_api.router, prefix=PREFIX)  # accounting (docs/accounting.md)
    app.include_router(users_api.router, prefix=PREFIX)  # sessions, accounts, terminals
    app.include_router(upload_router, prefix=PREFIX)  # POST /jobs/upload (pullprint print)
    app.include_router(identity_api.router, prefix=PREFIX)  # directory sync, single sign-on
    identity_api.configure(app, directory or DirectoryConfig(), oidc or OidcConfig(), clock=clock)
    app.include_router(web.router)  # the web pages (pullprint/cloud/web)
    return app


_SESSION_ROLES = {UserRole.USER: Role.USER, UserRole.OPERATOR: Role.OPERATOR}


def _session_principal(
    sessions: SessionBook, terminals: TerminalBook, users: UserDirectory, token: str
) -> Principal | None:
    """The signed-in user of a session token, with the role they have now (a disabled user has
    none). At a terminal the session is bound to the terminal's printer and an admin acts as an
    operator there."""
    session = sessions.resolve(token)
    if session is None:
        return None
    role = users.role_of(session.user)
    if role is None:
        return None
    printer = ""
    if session.terminal:
        bound = terminals.find(session.terminal)
        if bound is None:
            return None
        printer = bound.printer
        if role is UserRole.ADMIN:
            role = UserRole.OPERATOR
    return Principal(
        _SESSION_ROLES.get(role, Role.ADMIN),
        user=session.user,
        terminal=session.terminal,
        printer=printer,
    )


def _terminal_principal(terminals: TerminalBook, token: str) -> Principal | None:
    terminal = terminals.resolve(token)
    if terminal is None:
        return None
    return Principal(Role.TERMINAL, terminal=terminal.name, printer=terminal.printer)


async def _sweep_forever(cloud: Cloud) -> None:
    """Run the retention sweep now and then every ``retention_sweep_seconds``; a failed
    sweep is logged and tried again next time."""
    while True:
        try:
            await run_in_threadpool(cloud.jobs.sweep)
            await run_in_threadpool(cloud.sessions.sweep)
            await run_in_threadpool(cloud.lockout.sweep)
        except Exception:  # keep sweeping: the next pass retries
            log.exception("the retention sweep failed")
        await asyncio.sleep(cloud.config.retention_sweep_seconds)


CHECKPOINT_SECONDS = 1.0


async def _checkpoint_forever(engine: Engine) -> None:
    """Checkpoint the SQLite WAL every ``CHECKPOINT_SECONDS`` in a worker thread (the server's
    connections do not, see ``db.make_engine``); a failure is logged and tried again."""
    while True:
        try:
            await run_in_threadpool(db.checkpoint, engine)
        except Exception:  # keep checkpointing: the next pass retries
            log.exception("the SQLite WAL checkpoint failed")
        await asyncio.sleep(CHECKPOINT_SECONDS)


def _is_upload(method: str, path: str) -> bool:
    if method == "POST" and path == "/upload":  # web upload: web.upload checks its own limit
        return True
    if method == "POST" and path == f"{PREFIX}/jobs/upload":  # upload_api checks its own limit
        return True
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


router = APIRouter()


# -- endpoints ---------------------------------------------------------------------------------


@router.get("/health", responses=schemas.answers(schemas.Health))
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.post(
    "/users",
    status_code=201,
    openapi_extra=schemas.request_body(schemas.UserIn),
    responses=schemas.answers(schemas.UserOut, 201),
)
async def add_user(request: Request, _p: Principal = Depends(admin)) -> dict[str, str]:
    """Create a local user: ``pin`` and/or ``password``, optional ``role`` (user, operator,
    admin), ``display_name`` and ``email``."""
    body = validate.body_object(await read_json(request))
    name = validate.name(body.get("name"), "name")
    pin = validate.pin(body.get("pin")) if body.get("pin") is not None else None
    password = validate.password(body["password"]) if body.get("password") is not None else None
    if pin is None and password is None:
        raise InvalidRequest(422, "give the user a pin, a password, or both")
    role = UserRole(validate.choice(body.get("role", "user"), "role", users_api.ROLES))
    await run_in_threadpool(
        lambda: cloud_of(request).users.add(
            name,
            pin,
            password=password,
            role=role,
            display_name=validate.text(body, "display_name", max_len=255, min_len=0, default=""),
            email=validate.text(body, "email", max_len=255, min_len=0, default=""),
        )
    )
    return {"name": name}


@router.post(
    "/printers",
    status_code=201,
    openapi_extra=schemas.request_body(schemas.PrinterBody),
    responses=schemas.answers(schemas.PrinterBody, 201),
)
async def add_printer(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    printer = validate.printer(await read_json(request))
    stored = await run_in_threadpool(cloud_of(request).printers.upsert, printer)
    return stored.to_json()


@router.put(
    "/node/discovered",
    openapi_extra=schemas.request_body(schemas.DiscoveredReportIn),
    responses=schemas.answers(None),
    status_code=204,
)
async def report_discovered(request: Request, caller: Principal = Depends(node)) -> Response:
    """The IPP printers announced with DNS-SD on the calling node's network (replaces its
    last report); the admin's printers page offers them."""
    found = validate.discovered(await read_json(request))
    cloud = cloud_of(request)
    now = time.time()
    await run_in_threadpool(cloud.printers.report_discovered, caller.node, found, now)
    return Response(status_code=204)


@router.get("/printers/discovered")
async def list_discovered(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    """What each node last found on its network: ``{node, seen_at, ...printer}``."""
    found = await run_in_threadpool(cloud_of(request).printers.discovered)
    return {"printers": [{"node": n, "seen_at": when, **d.to_json()} for n, d, when in found]}


@router.get("/printers", responses=schemas.answers(schemas.Printers))
async def list_printers(request: Request, _p: Principal = Depends(anyone)) -> dict[str, Any]:
    found = await run_in_threadpool(cloud_of(request).printers.all)
    return {"printers": [p.to_json() for p in found]}


@router.post(
    "/jobs",
    openapi_extra=schemas.request_body(schemas.JobSubmissionIn),
    responses={**schemas.answers(schemas.JobOut, 201), 200: {"model": schemas.JobOut}},
)
async def register(request: Request, caller: Principal = Depends(node)) -> Response:
    sub = validate.submission(await read_json(request))
    job, created = await run_in_threadpool(cloud_of(request).jobs.register, caller, sub)
    return JSONResponse(job.to_json(), status_code=201 if created else 200)


@router.put(
    "/jobs/{uuid}/document",
    status_code=204,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses=schemas.answers(None),
)
async def upload(uuid: str, request: Request, caller: Principal = Depends(node)) -> Response:
    uuid = validate.job_uuid(uuid)
    cloud = cloud_of(request)
    plan = await run_in_threadpool(cloud.jobs.plan_upload, caller, uuid)
    if plan.already_stored:
        await discard(request.stream())
        return Response(status_code=204)
    try:
        stored = await cloud.documents.cloud.receive(uuid, request.stream(), plan.expected)
    except DocumentError as exc:
        raise InvalidRequest(422, str(exc)) from exc
    await run_in_threadpool(cloud.jobs.document_stored, uuid, stored)
    return Response(status_code=204)


@router.get(
    "/jobs",
    responses=schemas.answers(schemas.Jobs),
    openapi_extra=schemas.query(
        ("user", {"type": "string", "maxLength": 64}),
        (
            "state",
            {
                "type": "string",
                "enum": [
                    "held",
                    "released",
                    "claimed",
                    "printing",
                    "completed",
                    "canceled",
                    "failed",
                    "expired",
                ],
            },
        ),
        ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_JOBS_PAGE}),
        ("after", {"type": "string", "maxLength": 128}),
    ),
)
async def list_jobs(request: Request, caller: Principal = Depends(person)) -> Response:
    """Jobs, newest first, ``limit`` (at most MAX_JOBS_PAGE) to a page. Admins and operators see
    every job (``user`` filters by owner); a signed-in user sees their own and those delegated
    to them. ``next`` is None on the last page, else the ``after`` that asks for the next one."""
    user_q = request.query_params.get("user")
    state_q = request.query_params.get("state")
    user = validate.name(user_q) if user_q else None
    state = validate.job_state(state_q) if state_q else None
    limit = validate.page_limit(request.query_params.get("limit"))
    after = validate.Cursor.parse(request.query_params.get("after"))
    book = cloud_of(request).jobs
    if caller.is_staff:
        listing = partial(book.list, user, state)
    else:
        if user is not None and user != caller.user:
            raise Forbidden(403, f"{caller.describe()} may list only their own jobs")
        listing = partial(book.list_for, caller.user, state)
    found, following = await run_in_threadpool(paged, listing, limit, after)
    return json_answer({"jobs": [j.to_json() for j in found], "next": following})


@router.get("/jobs/{uuid}", responses=schemas.answers(schemas.JobOut))
async def get_job(uuid: str, request: Request, caller: Principal = Depends(anyone)) -> Response:
    job = await run_in_threadpool(cloud_of(request).jobs.get, caller, validate.job_uuid(uuid))
    return json_answer(job.to_json())


@router.post(
    "/jobs/{uuid}/release",
    openapi_extra=schemas.request_body(schemas.ReleaseIn),
    responses=schemas.answers(schemas.JobOut),
)
async def release(uuid: str, request: Request, caller: Principal = Depends(person)) -> Response:
    """With the admin token: ``user`` and ``pin`` say who releases. Signed in: the session
    does (no PIN; at a terminal only to its printer); operators release any held job."""
    uuid = validate.job_uuid(uuid)
    req = validate.release(await read_json(request), signed_in=caller.user)
    cloud = cloud_of(request)
    if caller.user:
        job = await run_in_threadpool(cloud.jobs.release, uuid, req, caller)
        return json_answer(job.to_json())
    job = await guarded(cloud.lockout, req.user, lambda: cloud.jobs.release(uuid, req))
    return json_answer(job.to_json())


@router.post(
    "/jobs/{uuid}/operator-release",
    openapi_extra=schemas.request_body(schemas.OperatorReleaseIn),
    responses=schemas.answers(schemas.JobOut),
)
async def operator_release(
    uuid: str, request: Request, caller: Principal = Depends(admin_or_node)
) -> Response:
    uuid = validate.job_uuid(uuid)
    obj = validate.body_object(await read_json(request))
    printer = validate.name(obj.get("printer"), "printer")
    operator = validate.name(obj.get("operator"), "operator")
    job = await run_in_threadpool(
        cloud_of(request).jobs.operator_release, caller, uuid, printer, operator
    )
    return json_answer(job.to_json())


@router.post(
    "/jobs/{uuid}/assign",
    openapi_extra=schemas.request_body(schemas.AssignIn),
    responses=schemas.answers(schemas.JobOut),
)
async def assign(
    uuid: str, request: Request, caller: Principal = Depends(person)
) -> dict[str, Any]:
    """An admin or operator gives a held job to ``owner``: a job held for an admin because
    its CUPS user is no pullprint user (``cloud.unknown_user = "hold"``), or a misattributed
    one."""
    uuid = validate.job_uuid(uuid)
    owner = validate.name(validate.body_object(await read_json(request)).get("owner"), "owner")
    job = await run_in_threadpool(cloud_of(request).jobs.assign, caller, uuid, owner)
    return job.to_json()


@router.post(
    "/jobs/{uuid}/cancel",
    openapi_extra=schemas.request_body(schemas.CancelIn),
    responses=schemas.answers(schemas.JobOut),
)
async def cancel(
    uuid: str, request: Request, caller: Principal = Depends(anyone)
) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    req = validate.cancel(await read_json(request))
    job = await run_in_threadpool(cloud_of(request).jobs.cancel, caller, uuid, req)
    return job.to_json()


@router.get(
    "/node/events",
    responses=schemas.answers(schemas.Events),
    openapi_extra=schemas.query(
        ("after", {"type": "integer", "minimum": 0}),
        ("timeout", {"type": "number", "minimum": 0, "maximum": 2}),
    ),
)
async def node_events(request: Request, caller: Principal = Depends(node)) -> dict[str, Any]:
    cloud = cloud_of(request)
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


@router.post(
    "/jobs/{uuid}/claim",
    openapi_extra=schemas.request_body(schemas.EmptyIn, required=False),
    responses=schemas.answers(schemas.JobOut),
)
async def claim(uuid: str, request: Request, caller: Principal = Depends(node)) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    validate.body_object(await read_json(request))
    job = await run_in_threadpool(cloud_of(request).jobs.claim, caller, uuid)
    return job.to_json()


@router.post(
    "/jobs/{uuid}/download-url",
    openapi_extra=schemas.request_body(schemas.EmptyIn, required=False),
    responses=schemas.answers(schemas.DownloadUrl),
)
async def download_url(
    uuid: str, request: Request, caller: Principal = Depends(node)
) -> dict[str, Any]:
    """A fresh signed URL for the claimed job's document (path and query on this server)."""
    uuid = validate.job_uuid(uuid)
    validate.body_object(await read_json(request))
    cloud = cloud_of(request)
    url = await run_in_threadpool(cloud.jobs.download_url, caller, uuid)
    return {"download_url": url, "expires_in": cloud.signer.ttl}


@router.get(
    "/jobs/{uuid}/document",
    responses={
        **schemas.answers(None),
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
    },
    openapi_extra=schemas.query(
        ("node", {"type": "string"}),
        ("expires", {"type": "string"}),
        ("nonce", {"type": "string"}),
        ("sig", {"type": "string"}),
    ),
)
async def download(uuid: str, request: Request, caller: Principal = Depends(node)) -> Response:
    """Stream the document through a signed URL (from the claim or ``download-url``)."""
    uuid = validate.job_uuid(uuid)
    signed = UrlSigner.params(request.query_params)
    doc = await run_in_threadpool(cloud_of(request).jobs.open_document, caller, uuid, signed)
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


@router.put(
    "/jobs/{uuid}/finishing",
    openapi_extra=schemas.request_body(schemas.PlanIn),
    responses=schemas.answers(schemas.JobOut),
)
async def record_plan(
    uuid: str, request: Request, caller: Principal = Depends(node)
) -> dict[str, Any]:
    """The finishing plan the claiming node made for its printer, kept with the job."""
    uuid = validate.job_uuid(uuid)
    steps = validate.plan_steps(await read_json(request))
    job = await run_in_threadpool(cloud_of(request).jobs.record_plan, caller, uuid, steps)
    return job.to_json()


@router.post(
    "/jobs/{uuid}/progress",
    openapi_extra=schemas.request_body(schemas.ProgressIn),
    responses=schemas.answers(schemas.JobOut),
)
async def progress(
    uuid: str, request: Request, caller: Principal = Depends(node)
) -> dict[str, Any]:
    uuid = validate.job_uuid(uuid)
    req = validate.progress(await read_json(request))
    job = await run_in_threadpool(cloud_of(request).jobs.progress, caller, uuid, req)
    return job.to_json()


# -- release modes, authentication at printers ------------------------------------------------


def _policy(scope: Scope, name: str, data: Any) -> ReleasePolicy:
    obj = validate.body_object(data)
    mode = ReleaseMode(
        validate.choice(obj.get("mode"), "mode", tuple(m.value for m in ReleaseMode))
    )
    printer = obj.get("printer")
    return ReleasePolicy(
        scope=scope,
        name=name,
        mode=mode,
        printer=None if printer is None else validate.name(printer, "printer"),
        direct_seconds=validate.integer(
            obj, "direct_seconds", minimum=1, maximum=3600, default=DEFAULT_DIRECT_SECONDS
        ),
    )


@router.put(
    "/queues/{name}/release-mode",
    openapi_extra=schemas.request_body(schemas.ReleaseModeIn),
    responses=schemas.answers(schemas.ReleasePolicyOut),
)
async def set_queue_mode(
    name: str, request: Request, _p: Principal = Depends(admin)
) -> dict[str, Any]:
    """Set how jobs of queue ``name`` are released (hold, direct, fast, automatic)."""
    policy = _policy(Scope.QUEUE, validate.name(name, "queue"), await read_json(request))
    stored = await run_in_threadpool(cloud_of(request).policies.put, policy)
    return stored.to_json()


@router.put(
    "/printers/{name}/release-mode",
    openapi_extra=schemas.request_body(schemas.ReleaseModeIn),
    responses=schemas.answers(schemas.ReleasePolicyOut),
)
async def set_printer_mode(
    name: str, request: Request, _p: Principal = Depends(admin)
) -> dict[str, Any]:
    """Set how jobs are released at printer ``name`` (hold, direct, fast)."""
    policy = _policy(Scope.PRINTER, validate.name(name, "printer"), await read_json(request))
    stored = await run_in_threadpool(cloud_of(request).policies.put, policy)
    return stored.to_json()


@router.get("/release-modes", responses=schemas.answers(schemas.ReleasePolicies))
async def list_modes(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    found = await run_in_threadpool(cloud_of(request).policies.all)
    return {"policies": [p.to_json() for p in found]}


async def _authenticate(
    name: str, request: Request, caller: Principal, fast: bool
) -> dict[str, Any]:
    """User + PIN at a printer, from the admin token or the printer's own terminal. Wrong PINs
    count towards the user's lockout and slow a noisy terminal down."""
    printer = validate.name(name, "printer")
    if caller.role is Role.TERMINAL and caller.printer != printer:
        raise Forbidden(403, f"terminal {caller.terminal} is bound to printer {caller.printer}")
    obj = validate.body_object(await read_json(request))
    user = validate.name(obj.get("user"))
    pin = validate.pin(obj.get("pin"))
    cloud = cloud_of(request)
    where = caller.terminal or None
    done = await guarded(
        cloud.lockout, user, lambda: cloud.jobs.authenticate(printer, user, pin, fast), where
    )
    return done.to_json()


@router.post(
    "/printers/{name}/authenticate",
    openapi_extra=schemas.request_body(schemas.AuthenticateIn),
    responses=schemas.answers(schemas.AuthenticationOut),
)
async def authenticate(
    name: str, request: Request, caller: Principal = Depends(admin_or_terminal)
) -> dict[str, Any]:
    """A user authenticated at the printer (card/PIN): releases per the release modes."""
    return await _authenticate(name, request, caller, fast=False)


@router.post(
    "/printers/{name}/release-all",
    openapi_extra=schemas.request_body(schemas.AuthenticateIn),
    responses=schemas.answers(schemas.AuthenticationOut),
)
async def release_all(
    name: str, request: Request, caller: Principal = Depends(admin_or_terminal)
) -> dict[str, Any]:
    """Fast release: every held job of the user to this printer, each with its own options."""
    return await _authenticate(name, request, caller, fast=True)


# -- groups and delegation ----------------------------------------------------------------------


@router.put(
    "/groups/{name}",
    openapi_extra=schemas.request_body(schemas.GroupIn),
    responses=schemas.answers(schemas.GroupOut),
)
async def put_group(name: str, request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    """Create the group or replace its members."""
    name = validate.name(name, "group")
    obj = validate.body_object(await read_json(request))
    members = validate.names(obj.get("members"), "members")
    stored = await run_in_threadpool(cloud_of(request).groups.put, name, members)
    return {"name": name, "members": stored}


@router.get("/groups/{name}", responses=schemas.answers(schemas.GroupOut))
async def get_group(name: str, request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    name = validate.name(name, "group")
    members = await run_in_threadpool(cloud_of(request).groups.members, name)
    return {"name": name, "members": members}


@router.delete("/groups/{name}", status_code=204, responses=schemas.answers(None))
async def delete_group(name: str, request: Request, _p: Principal = Depends(admin)) -> Response:
    name = validate.name(name, "group")
    if not await run_in_threadpool(cloud_of(request).groups.delete, name):
        raise NotFound(404, f"no group {name}")
    return Response(status_code=204)


def _change_delegations(caller: Principal, owner: str) -> None:
    """The owner (not at a terminal: a kiosk session changes no settings) or the admin."""
    self_or_admin(caller, owner)
    if caller.terminal:
        raise Forbidden(403, "delegations cannot be changed at a terminal: sign in on the web")


@router.put(
    "/users/{owner}/delegations",
    openapi_extra=schemas.request_body(schemas.DelegationIn),
    responses=schemas.answers(schemas.DelegationOut),
)
async def put_delegation(
    owner: str, request: Request, caller: Principal = Depends(person)
) -> dict[str, Any]:
    """``owner`` lets a user or a group release their jobs, charged to ``account``."""
    owner = validate.name(owner, "owner")
    _change_delegations(caller, owner)
    obj = validate.body_object(await read_json(request))
    kind = DelegateKind(validate.choice(obj.get("kind"), "kind", ("user", "group")))
    delegation = Delegation(
        owner=owner,
        kind=kind,
        delegate=validate.name(obj.get("delegate"), "delegate"),
        account=validate.account(obj.get("account", "")),
    )
    stored = await run_in_threadpool(cloud_of(request).delegations.put, delegation)
    return stored.to_json()


@router.get("/users/{owner}/delegations", responses=schemas.answers(schemas.Delegations))
async def list_delegations(
    owner: str, request: Request, caller: Principal = Depends(person)
) -> dict[str, Any]:
    owner = validate.name(owner, "owner")
    self_or_admin(caller, owner)
    found = await run_in_threadpool(cloud_of(request).delegations.of, owner)
    return {"delegations": [d.to_json() for d in found]}


@router.delete(
    "/users/{owner}/delegations/{kind}/{delegate}",
    status_code=204,
    responses=schemas.answers(None),
)
async def delete_delegation(
    owner: str, kind: str, delegate: str, request: Request, caller: Principal = Depends(person)
) -> Response:
    owner = validate.name(owner, "owner")
    _change_delegations(caller, owner)
    which = DelegateKind(validate.choice(kind, "kind", ("user", "group")))
    delegate = validate.name(delegate, "delegate")
    if not await run_in_threadpool(cloud_of(request).delegations.delete, owner, which, delegate):
        raise NotFound(404, f"{owner} has no delegation to {which} {delegate}")
    return Response(status_code=204)


# -- retention ----------------------------------------------------------------------------------


@router.post(
    "/admin/retention/run",
    openapi_extra=schemas.request_body(schemas.EmptyIn, required=False),
    responses=schemas.answers(schemas.SweepOut),
)
async def run_retention(request: Request, _p: Principal = Depends(admin)) -> dict[str, int]:
    """Run the retention sweep now (it also runs every ``retention_sweep_seconds``)."""
    validate.body_object(await read_json(request))
    done = await run_in_threadpool(cloud_of(request).jobs.sweep)
    return done.to_json()
