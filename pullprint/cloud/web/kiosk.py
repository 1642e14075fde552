"""The terminal kiosk page (release stations, MFP browsers): ``/kiosk``.

A terminal is set up once by opening ``/kiosk?terminal=TOKEN`` (its secret from
``POST /api/v1/terminals``): the token is kept in the HttpOnly cookie ``pullprint_terminal``
(path ``/kiosk``) and removed from the address. People then sign in there as the terminal
allows: a card number (the field has focus, so a keyboard-wedge reader types it and presses
Enter), user and PIN, or picking their name. The sign-in opens a terminal session
(``cloud.terminal_session_seconds``, bound to the terminal's printer) kept in the cookie
``pullprint_kiosk``; the page counts down and signs out at zero, and the session expires on the
server anyway. Signed in: my held jobs, released one by one (with grey / two-sided / copies
changes) or all at once to this terminal's printer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from pullprint.cloud import terminal_signin, validate
from pullprint.cloud.auth import Principal
from pullprint.cloud.context import Cloud, cloud_of
from pullprint.cloud.sessions import TERMINAL_PREFIX, Terminal
from pullprint.cloud.web import layout
from pullprint.cloud.web.layout import check_form, render
from pullprint.cloud.web.user import (
    COLOR_LABELS,
    SIDES_LABELS,
    estimate,
    facts,
    release_job,
    thumbnails,
    waiting,
)
from pullprint.errors import (
    CloudRefused,
    DocumentError,
    NotFound,
    Unauthorized,
)

log = logging.getLogger(__name__)

router = APIRouter(route_class=layout.WebRoute)

TERMINAL_COOKIE = "pullprint_terminal"
KIOSK_COOKIE = "pullprint_kiosk"
PATH = "/kiosk"
TERMINAL_COOKIE_SECONDS = 400 * 24 * 3600  # browsers cap cookies at 400 days


def _terminal(request: Request) -> tuple[Terminal, str] | None:
    token = request.cookies.get(TERMINAL_COOKIE, "")
    if not token.startswith(TERMINAL_PREFIX):
        return None
    found = cloud_of(request).terminals.resolve(token)
    return (found, token) if found else None


def _signed_in(request: Request, terminal: Terminal) -> tuple[Principal, str] | None:
    """The person signed in at this terminal (a live terminal session of this terminal)."""
    return layout.session_in(request, KIOSK_COOKIE, terminal.name)


def _go(request: Request, message: str = "", error: str = "") -> Response:
    return layout.redirect(request, PATH, message=message, error=error)


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name, value, max_age=age, httponly=True, samesite="strict", path=PATH,
        secure=request.url.scheme == "https",
    )  # fmt: skip


@router.get(PATH)
async def kiosk(request: Request) -> Response:
    """The kiosk: set up (``?terminal=TOKEN``), sign-in, or the signed-in person's jobs."""
    cloud = cloud_of(request)
    given = request.query_params.get("terminal", "")
    if given:
        return await run_in_threadpool(_set_up, request, cloud, given)
    found = await run_in_threadpool(_terminal, request)
    if found is None:
        return render(request, "kiosk_setup.html", status_code=401, body_class="kiosk")
    terminal, token = found
    session = await run_in_threadpool(_signed_in, request, terminal)
    if session is None:
        layout.set_csrf_anchor(request, token)
        users: list[str] = []
        if "username" in terminal.methods:
            users = [u.name for u in await run_in_threadpool(cloud.users.all) if not u.disabled]
        return render(
            request, "kiosk_signin.html", terminal=terminal, users=users, body_class="kiosk"
        )
    me, session_token = session
    layout.set_csrf_anchor(request, session_token)
    return await run_in_threadpool(_jobs_page, request, cloud, terminal, me, session_token)


def _set_up(request: Request, cloud: Cloud, token: str) -> Response:
    """Keep a valid terminal ``token`` in this browser's cookie and go to the kiosk."""
    if not token.startswith(TERMINAL_PREFIX) or cloud.terminals.resolve(token) is None:
        raise Unauthorized(401, "this terminal token is not valid: ask an admin for a new one")
    response = _go(request, message="This terminal is set up.")
    _set_cookie(request, response, TERMINAL_COOKIE, token, TERMINAL_COOKIE_SECONDS)
    return response


@router.post(f"{PATH}/setup")
async def kiosk_setup(request: Request) -> Response:
    """Set the terminal up from a form (the token then stays out of the address and history)."""
    form = await check_form(request)
    token = form.get("terminal")
    return await run_in_threadpool(
        _set_up, request, cloud_of(request), token.strip() if isinstance(token, str) else ""
    )


def _jobs_page(
    request: Request, cloud: Cloud, terminal: Terminal, me: Principal, token: str
) -> Response:
    held = waiting(cloud, me.user)
    printer = cloud.printers.get(terminal.printer)
    costs = {j.uuid: estimate(cloud, j, printer, {}) for j in held.jobs} if printer else {}
    left = max(0, int(cloud.sessions.expires_at(token) - time.time()))
    return render(
        request, "kiosk.html", terminal=terminal, me=me, held=held, costs=costs, facts=facts,
        seconds_left=left, color_labels=COLOR_LABELS, sides_labels=SIDES_LABELS,
        body_class="kiosk",
    )  # fmt: skip


@router.post(f"{PATH}/signin")
async def kiosk_signin(request: Request) -> Response:
    """Sign in at this terminal by card, by user and PIN, or by picking a name, each only where
    the terminal allows it; wrong cards and PINs count towards the lockout (as the API's
    ``POST /terminal/sign-in``)."""
    cloud = cloud_of(request)
    found = await run_in_threadpool(_terminal, request)
    if found is None:
        raise Unauthorized(401, "this terminal is not set up: open /kiosk?terminal=TOKEN once")
    terminal, token = found
    layout.set_csrf_anchor(request, token)
    form = await check_form(request)

    def field(key: str) -> str:
        value = form.get(key)
        return value.strip() if isinstance(value, str) else ""

    method = field("method")
    try:
        _user, session = await terminal_signin.sign_in(
            cloud, terminal, method, card=field("card"), user=field("user"), pin=field("pin")
        )
    except CloudRefused as exc:
        return _go(request, error=exc.message)
    response = _go(request)
    _set_cookie(request, response, KIOSK_COOKIE, session, int(cloud.sessions.terminal_ttl))
    return response


async def _session(request: Request) -> tuple[Cloud, Terminal, Principal]:
    """The terminal and the signed-in person of a kiosk POST (CSRF checked)."""
    found = await run_in_threadpool(_terminal, request)
    if found is None:
        raise Unauthorized(401, "this terminal is not set up: open /kiosk?terminal=TOKEN once")
    terminal, _token = found
    session = await run_in_threadpool(_signed_in, request, terminal)
    if session is None:
        raise Unauthorized(401, "signed out: sign in again")
    layout.set_csrf_anchor(request, session[1])
    return cloud_of(request), terminal, session[0]


Action = Callable[[Cloud, Terminal, Principal, FormData], Awaitable[str]]


async def _act(request: Request, action: Action) -> Response:
    """Run a signed-in kiosk action (CSRF checked) and go back to the kiosk with its message,
    or with the refusal (signed out meanwhile, not held...) as the error."""
    try:
        cloud, terminal, me = await _session(request)
        form = await check_form(request)
        message = await action(cloud, terminal, me, form)
    except CloudRefused as exc:
        return _go(request, error=exc.message)
    return _go(request, message=message)


@router.post(f"{PATH}/release")
async def kiosk_release(request: Request) -> Response:
    """Release one job to this terminal's printer, with the chosen changes."""

    async def release(cloud: Cloud, terminal: Terminal, me: Principal, form: FormData) -> str:
        raw = form.get("job")
        uuid = validate.job_uuid(raw if isinstance(raw, str) else "", "job")
        job = await run_in_threadpool(release_job, cloud, me, uuid, terminal.printer, form)
        return f"{job.title or 'The job'} is printing on {terminal.printer}."

    return await _act(request, release)


@router.post(f"{PATH}/release-all")
async def kiosk_release_all(request: Request) -> Response:
    """Release every held job of mine to this terminal's printer, each with its own options."""

    async def release_all(cloud: Cloud, terminal: Terminal, me: Principal, _f: FormData) -> str:
        done = await run_in_threadpool(
            cloud.jobs.authenticate, terminal.printer, me.user, None, True
        )
        return f"{len(done.released)} job(s) printing on {terminal.printer}."

    return await _act(request, release_all)


@router.post(f"{PATH}/signout")
async def kiosk_signout(request: Request) -> Response:
    """End the kiosk session (also what the countdown does at zero)."""
    found = await run_in_threadpool(_terminal, request)
    token = request.cookies.get(KIOSK_COOKIE, "")
    session = await run_in_threadpool(_signed_in, request, found[0]) if found else None
    if session is not None:  # a live session is ended only by its own page's form
        layout.set_csrf_anchor(request, session[1])
        await check_form(request)
    if token:
        await run_in_threadpool(cloud_of(request).sessions.close, token)
    response = _go(request, message="Signed out.")
    response.delete_cookie(KIOSK_COOKIE, path=PATH)
    return response


@router.get(f"{PATH}/thumb/{{uuid}}.png")
async def kiosk_thumb(uuid: str, request: Request) -> Response:
    """Page 1 of a job of the person signed in here."""
    found = await run_in_threadpool(_terminal, request)
    session = await run_in_threadpool(_signed_in, request, found[0]) if found else None
    if session is None:
        raise Unauthorized(401, "signed out")
    job = await run_in_threadpool(cloud_of(request).jobs.get, session[0], validate.job_uuid(uuid))
    try:
        data = await run_in_threadpool(thumbnails(request).png, job.uuid, job.sha256)
    except (FileNotFoundError, DocumentError) as exc:
        raise NotFound(404, "no preview") from exc
    return Response(data, media_type="image/png", headers={"Cache-Control": "private"})
