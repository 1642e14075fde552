"""Directory sync and single sign-on endpoints (``/api/v1/directory/...``, ``/api/v1/sso/...``).

Included by ``cloud.app.create_app`` with ``app.include_router(identity_api.router,
prefix=PREFIX)`` and set up with :func:`configure` (the ``[directory]`` and ``[oidc]``
sections); until then every endpoint answers 404 "not configured". While the app serves, the
router's lifespan runs the scheduled directory sync (``directory.sync_seconds``).

- ``POST /directory/sync`` (admin): run one sync now; answers what it added, updated, disabled.
- ``GET /directory/sync`` (admin): the last run, its result or error, and when the next is due.
- ``GET /sso/login``: redirect (303) to the provider; sets a cookie binding the login to this
  browser (no login CSRF).
- ``GET /sso/callback``: finish the login, open a session (kind ``sso``) and answer it; the
  token is also set as the ``pullprint_session`` cookie (HttpOnly, SameSite=Lax).

Handlers are thin: they check the caller, run the blocking work in a worker thread, and turn
``DirectoryError``/``OidcError`` into answers. No secret is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import requests
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pullprint.cloud import schemas
from pullprint.cloud.auth import Principal
from pullprint.cloud.context import Cloud, admin, cloud_of
from pullprint.config import DirectoryConfig, OidcConfig
from pullprint.errors import InvalidRequest, NotFound, Unauthorized
from pullprint.identity.directory import DirectoryError, DirectorySync
from pullprint.identity.oidc import OidcClient, OidcError, sign_in_user

log = logging.getLogger(__name__)

SESSION_COOKIE = "pullprint_session"
BINDING_COOKIE = "pullprint_sso"
WEB_HOME = "/"  # where a browser goes once signed in by single sign-on
TICK_SECONDS = 5.0  # how often the background loop asks whether a scheduled sync is due


@dataclass
class Identity:
    """What these endpoints use, made by :func:`configure` (None: that part is off)."""

    directory: DirectorySync | None
    oidc: OidcClient | None
    oidc_config: OidcConfig


def configure(
    app: FastAPI,
    directory: DirectoryConfig,
    oidc: OidcConfig,
    *,
    clock: Callable[[], float] = time.time,
    http: requests.Session | None = None,
) -> Identity:
    """Set up directory sync and single sign-on for ``app`` (after ``create_app`` made its
    Cloud): an empty ``directory.url`` or ``oidc.issuer`` leaves that part off. ``clock`` is
    the time of schedules and login expiries (injected by tests). Replaces a previous setup."""
    cloud = cloud_of_app(app)
    sync = DirectorySync(directory, cloud.users, cloud.groups, clock) if directory.url else None
    client = OidcClient(oidc, clock=clock, session=http) if oidc.issuer else None
    identity = Identity(sync, client, oidc)
    app.state.identity = identity
    log.info(
        "identity: directory sync %s, single sign-on %s",
        f"every {directory.sync_seconds} s from {directory.url}" if sync else "off",
        f"with {oidc.issuer}" if client else "off",
    )
    return identity


def cloud_of_app(app: FastAPI) -> Cloud:
    cloud = getattr(app.state, "cloud", None)
    if not isinstance(cloud, Cloud):
        raise RuntimeError("identity_api.configure needs the app made by cloud.app.create_app")
    return cloud


def _identity(request: Request) -> Identity:
    identity = getattr(request.app.state, "identity", None)
    if not isinstance(identity, Identity):
        raise NotFound(404, "directory sync and single sign-on are not configured")
    return identity


def _directory(request: Request) -> DirectorySync:
    sync = _identity(request).directory
    if sync is None:
        raise NotFound(404, "directory sync is not configured (directory.url is empty)")
    return sync


def _oidc(request: Request) -> OidcClient:
    client = _identity(request).oidc
    if client is None:
        raise NotFound(404, "single sign-on is not configured (oidc.issuer is empty)")
    return client


# -- the scheduled sync ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the scheduled directory sync while the app serves (idle while it is off)."""
    task = asyncio.get_running_loop().create_task(_sync_forever(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        identity = getattr(app.state, "identity", None)
        if isinstance(identity, Identity) and identity.oidc is not None:
            identity.oidc.close()


async def _sync_forever(app: FastAPI) -> None:
    while True:
        identity = getattr(app.state, "identity", None)
        if isinstance(identity, Identity) and identity.directory is not None:
            try:
                await run_in_threadpool(identity.directory.tick)
            except Exception:  # keep the schedule: the next tick retries
                log.exception("scheduled directory sync failed")
        await asyncio.sleep(TICK_SECONDS)


router = APIRouter(lifespan=lifespan)


# -- directory ---------------------------------------------------------------------------------


_EMPTY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
    }
}
_PUBLIC: dict[str, Any] = {"security": []}  # reached by a browser before it has any token


@router.post("/directory/sync", openapi_extra=_EMPTY_BODY, responses=schemas.answers(None))
async def directory_sync(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    """Run one directory sync now (admin): read the directory, write users, cards and groups,
    disable the users gone from it. 502 with the reason when the directory cannot be read."""
    sync = _directory(request)
    try:
        result = await run_in_threadpool(sync.run_once)
    except DirectoryError as exc:
        raise InvalidRequest(502, str(exc)) from exc
    return result.to_json()


@router.get("/directory/sync", responses=schemas.answers(None))
async def directory_status(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    """The last sync (time, result or error) and when the next scheduled one is due (admin)."""
    return _directory(request).status.to_json()


# -- single sign-on ----------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/sso/login", status_code=303, openapi_extra=_PUBLIC, responses=schemas.answers(None))
async def sso_login(request: Request) -> Response:
    """Start a single sign-on login: answer 303 to the provider's authorization URL, and set
    a short-lived cookie that binds the login to this browser."""
    client = _oidc(request)
    binding = secrets.token_urlsafe(32)
    try:
        start = await run_in_threadpool(client.start_login, binding)
    except OidcError as exc:
        raise InvalidRequest(502, str(exc)) from exc
    response = RedirectResponse(start.url, status_code=303)
    response.set_cookie(
        BINDING_COOKIE,
        binding,
        max_age=client.cfg.login_seconds,
        path=request.url.path.rsplit("/", 1)[0],
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


def _wants_html(request: Request) -> bool:
    """True when the caller is a browser navigating (Accept lists text/html first)."""
    accept = request.headers.get("accept", "")
    return accept.split(",", 1)[0].strip().lower().startswith("text/html")


@router.get("/sso/callback", openapi_extra=_PUBLIC, responses=schemas.answers(None))
async def sso_callback(request: Request) -> Response:
    """Finish a single sign-on login (the provider redirects here with ``code`` and
    ``state``): verify it, create or update the user (source ``oidc``), open a session and
    answer ``{"user", "token", "kind", "expires_in"}``, the token also as the
    ``pullprint_session`` cookie; a browser (Accept: text/html) is sent on to the web pages
    (303) instead. 401 with the reason when the login is refused."""
    client = _oidc(request)
    cloud = cloud_of(request)
    identity = _identity(request)
    q = request.query_params

    def finish() -> str:
        login = client.finish_login(
            state=q.get("state"),
            code=q.get("code"),
            error=q.get("error"),
            binding=request.cookies.get(BINDING_COOKIE, ""),
        )
        return sign_in_user(
            cloud.users,
            login,
            link_sources=identity.oidc_config.link_sources,
            groups=cloud.groups if identity.oidc_config.groups_claim else None,
        )

    try:
        user = await run_in_threadpool(finish)
    except OidcError as exc:
        log.warning("single sign-on refused: %s", exc)
        raise Unauthorized(401, f"single sign-on refused: {exc}") from exc
    token = await run_in_threadpool(cloud.sessions.open, user, "sso")
    ttl = int(cloud.sessions.ttl)
    response: Response
    if _wants_html(request):  # a browser: to the web pages, signed in by the cookie
        response = RedirectResponse(WEB_HOME, status_code=303)
    else:
        response = JSONResponse({"user": user, "token": token, "kind": "sso", "expires_in": ttl})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(BINDING_COOKIE, path=request.url.path.rsplit("/", 1)[0])
    return response
