"""The shared base of the web pages: rendering templates, who is signed in, CSRF protection.

User pages (``web.user``), the kiosk (``web.kiosk``) and the admin pages (``web.admin``) render
through :func:`render`, which fills in the signed-in principal, the CSRF token of the browser
and whether single sign-on is configured. A browser is signed in by the HttpOnly cookie
``pullprint_session`` holding an ordinary session token (``pps_...``), resolved by the same
``TokenAuth`` as the API, so a disabled user or an expired session is refused the same way.

CSRF: every POST form carries ``csrf_token`` in a hidden field. The token is an HMAC (key: the
cloud's signing key) of the browser's anchor secret: the session token when signed in, the
kiosk's session or terminal token at the kiosk, else a random HttpOnly cookie
``pullprint_csrf`` (sign-in forms). A cross-site page can neither read the anchor nor compute
the token, so a forged form is refused (403) by :func:`check_form`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from pullprint.cloud import signing
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.context import cloud_of
from pullprint.cloud.sessions import SESSION_PREFIX
from pullprint.errors import CloudRefused, Forbidden, Unauthorized

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SESSION_COOKIE = "pullprint_session"
CSRF_COOKIE = "pullprint_csrf"
CSRF_FIELD = "csrf_token"
FLASH_COOKIE = "pullprint_flash"
_CSRF_CONTEXT = b"pullprint-web-csrf-v1"

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(seconds: float) -> str:
    """A short human duration: 45 s, 12 min, 3 h, 2 d."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


ENV.filters["duration"] = _ago
ENV.globals["time"] = time.time


def session_in(request: Request, cookie: str, terminal: str = "") -> tuple[Principal, str] | None:
    """(person, token) of the session whose token is in ``cookie``, opened at ``terminal``
    ("" for the web pages: a terminal session is not accepted there); None when there is none
    or it expired or the user is disabled. Changes nothing."""
    token = request.cookies.get(cookie, "")
    if not token.startswith(SESSION_PREFIX):
        return None
    try:
        found = cloud_of(request).auth.authenticate("Bearer " + token)
    except Unauthorized:
        return None
    if not found.user or found.terminal != terminal:
        return None
    return found, token


def current(request: Request) -> Principal | None:
    """The person signed in by the ``pullprint_session`` cookie, or None (no cookie, expired
    session, disabled user). Terminal sessions do not sign in the web pages. Changes nothing."""
    found = session_in(request, SESSION_COOKIE)
    return found[0] if found else None


def require_person(request: Request) -> Principal:
    """The signed-in person; otherwise a 303 redirect to ``/signin?next=<this page>``. Usable
    as ``Depends(require_person)``."""
    found = current(request)
    if found is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise HTTPException(303, "sign in first", headers={"Location": signin_url(target)})
    return found


def require_admin(request: Request) -> Principal:
    """A signed-in admin (else a redirect to sign in, or 403 for other roles)."""
    found = require_person(request)
    if found.role is not Role.ADMIN:
        raise Forbidden(403, f"this page needs an admin; {found.describe()} may not see it")
    return found


def signin_url(next_path: str = "/") -> str:
    return "/signin?next=" + quote(safe_next(next_path), safe="/")


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/`` (no open redirects)."""
    if not value or not value.startswith("/") or "\\" in value:
        return "/"
    if any(ord(c) < 33 or ord(c) == 127 for c in value) or value.startswith("//"):
        return "/"  # browsers drop tabs and newlines: "/\t/evil" would become "//evil"
    return value


def _key(request: Request) -> bytes:
    state = request.app.state
    key = getattr(state, "web_csrf_key", None)
    if not isinstance(key, bytes):
        cloud = cloud_of(request)
        base = signing.load_key(cloud.engine, cloud.config.download_signing_key)
        key = hmac.new(base, _CSRF_CONTEXT, hashlib.sha256).digest()
        state.web_csrf_key = key
    return key


def set_csrf_anchor(request: Request, anchor: str) -> None:
    """Bind this request's CSRF token to ``anchor`` (a secret the browser holds in an HttpOnly
    cookie, e.g. the kiosk's token). Changes only the request's state."""
    request.state.csrf_anchor = anchor


def _anchor(request: Request) -> str:
    anchor = getattr(request.state, "csrf_anchor", "")
    if anchor:
        return str(anchor)
    session = request.cookies.get(SESSION_COOKIE, "")
    if session.startswith(SESSION_PREFIX):
        return session
    anon = request.cookies.get(CSRF_COOKIE, "") or getattr(request.state, "new_csrf_cookie", "")
    if not anon:
        anon = secrets.token_urlsafe(24)
        request.state.new_csrf_cookie = anon  # set on the response by render()
    return str(anon)


def csrf_token(request: Request) -> str:
    """The CSRF token for this browser's forms (idempotent within a session)."""
    return hmac.new(_key(request), _anchor(request).encode(), hashlib.sha256).hexdigest()


async def check_form(request: Request) -> FormData:
    """The POSTed form, once its ``csrf_token`` matches this browser's; else Forbidden (403).
    Reads (and for uploads spools) the request body."""
    form = await request.form()
    given = form.get(CSRF_FIELD)
    expected = csrf_token(request)
    if not isinstance(given, str) or not hmac.compare_digest(given, expected):
        log.warning("refused a form post to %s without a valid CSRF token", request.url.path)
        raise Forbidden(403, "the form has expired or did not come from this site: reload the page")
    return form


def sso_enabled(request: Request) -> bool:
    """Whether single sign-on (``[oidc]``) is configured on this app."""
    identity = getattr(request.app.state, "identity", None)
    return getattr(identity, "oidc", None) is not None


def finish(request: Request, response: Response) -> Response:
    """Set the anonymous CSRF cookie on ``response`` when this request made one."""
    new = getattr(request.state, "new_csrf_cookie", "")
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="lax",
            path="/",
            secure=request.url.scheme == "https",
        )
    return response


def _flash(request: Request) -> tuple[str, str]:
    raw = request.cookies.get(FLASH_COOKIE, "")
    if not raw:
        return "", ""
    try:
        data = json.loads(unquote(raw))
        return str(data.get("m", ""))[:500], str(data.get("e", ""))[:500]
    except (ValueError, AttributeError):
        return "", ""


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render ``template`` (under ``web/templates``) with ``context`` plus ``request``,
    ``me`` (the signed-in principal or None), ``csrf`` (the form token), ``sso``,
    ``currency`` and the ``message``/``error`` of the last redirect (the flash cookie, then
    cleared). Sets the anonymous CSRF cookie if this request made one."""
    context.setdefault("me", current(request))
    message, error = _flash(request)
    context.setdefault("message", message)
    context.setdefault("error", error)
    context.setdefault("nav", "")
    page = ENV.get_template(template).render(
        request=request,
        csrf=csrf_token(request),
        csrf_field=CSRF_FIELD,
        sso=sso_enabled(request),
        currency=cloud_of(request).config.currency,
        **context,
    )
    response = HTMLResponse(page, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "same-origin"
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return finish(request, response)


def csv_download(text: str, name: str) -> Response:
    """``text`` as a CSV file the browser saves as ``name``.csv."""
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def redirect(request: Request, path: str, message: str = "", error: str = "") -> Response:
    """A 303 See Other to ``path`` (after a POST); ``message``/``error`` are shown once on
    the next page rendered (a short-lived flash cookie)."""
    response = Response(status_code=303, headers={"Location": safe_next(path)})
    if message or error:
        value = quote(json.dumps({"m": message, "e": error}), safe="")
        response.set_cookie(
            FLASH_COOKIE, value, max_age=60, httponly=True, samesite="lax", path="/"
        )
    return finish(request, response)


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    """Sign the browser in: the session token as the HttpOnly ``pullprint_session`` cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        path="/",
        secure=request.url.scheme == "https",
    )


class WebRoute(APIRoute):
    """A route of the web pages: a refusal (``pullprint.errors.CloudRefused``) becomes an HTML
    page (``error.html``) with its status and message instead of the API's JSON. Use it with
    ``APIRouter(route_class=WebRoute)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except CloudRefused as exc:
                return render(request, "error.html", status_code=exc.status, error=exc.message)

        return handle
