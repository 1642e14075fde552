"""Who is who, over HTTP: sign-in sessions, my account (PIN, password, cards), the admin's users
and cards, terminals and signing in at a terminal. Included by ``cloud.app.create_app``.

Handlers are thin: they check the caller, validate, and run the database work in a worker thread.
Wrong passwords, PINs and cards count towards the user's lockout (``cloud.lockout``); a
terminal that sends many failures has its answers slowed down.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pullprint.cloud import schemas, terminal_signin, validate
from pullprint.cloud.auth import Principal, Role, require
from pullprint.cloud.context import admin, cloud_of, person, principal, read_json
from pullprint.cloud.lockout import guarded
from pullprint.cloud.sessions import TERMINAL_METHODS
from pullprint.cloud.users import UserRole
from pullprint.errors import Forbidden, InvalidRequest, NotFound

log = logging.getLogger(__name__)

router = APIRouter()

ROLES = tuple(r.value for r in UserRole)


def _signed_in(caller: Principal = Depends(principal)) -> Principal:
    """A signed-in user (a session token), of any role."""
    if not caller.user:
        raise Forbidden(403, "this endpoint needs a signed-in user (POST /api/v1/sessions)")
    return caller


def _token(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def _session_answer(request: Request, token: str, user: str, status: int = 201) -> Response:
    cloud = cloud_of(request)
    expires = cloud.sessions.expires_at(token)
    role = cloud.users.role_of(user)
    return JSONResponse(
        {
            "token": token,
            "user": user,
            "role": role.value if role else "",
            "expires_at": expires,
        },
        status_code=status,
    )


# -- sessions -----------------------------------------------------------------------------------


@router.post(
    "/sessions",
    status_code=201,
    openapi_extra=schemas.request_body(schemas.SignInIn),
    responses=schemas.answers(schemas.SessionOut, 201),
)
async def sign_in(request: Request) -> Response:
    """Sign in with name and password; the answer's ``token`` is the bearer token of the
    session (``cloud.session_seconds``)."""
    obj = validate.body_object(await read_json(request))
    name = validate.name(obj.get("name"), "name")
    password = validate.text(obj, "password", max_len=validate.MAX_PASSWORD)
    cloud = cloud_of(request)
    await guarded(cloud.lockout, name, lambda: cloud.users.check_password(name, password))
    token = await run_in_threadpool(cloud.sessions.open, name, "password")
    return _session_answer(request, token, name)


@router.delete("/sessions/current", status_code=204)
async def sign_out(request: Request, _caller: Principal = Depends(_signed_in)) -> Response:
    await run_in_threadpool(cloud_of(request).sessions.close, _token(request))
    return Response(status_code=204)


# -- my account -----------------------------------------------------------------------------------


@router.get("/me")
async def me(request: Request, caller: Principal = Depends(_signed_in)) -> dict[str, Any]:
    user = await run_in_threadpool(cloud_of(request).users.get, caller.user)
    return {**user.to_json(), "terminal": caller.terminal, "printer": caller.printer}


def _not_at_terminal(caller: Principal) -> None:
    if caller.terminal:
        raise Forbidden(403, "account settings cannot be changed at a terminal: sign in on the web")


@router.put("/me/pin", status_code=204, openapi_extra=schemas.request_body(schemas.PinIn))
async def set_my_pin(request: Request, caller: Principal = Depends(_signed_in)) -> Response:
    """Set or reset my PIN (4 to 8 digits)."""
    _not_at_terminal(caller)
    obj = validate.body_object(await read_json(request))
    pin = validate.pin(obj.get("pin"))
    await run_in_threadpool(cloud_of(request).users.set_pin, caller.user, pin)
    return Response(status_code=204)


@router.put(
    "/me/password", status_code=204, openapi_extra=schemas.request_body(schemas.PasswordChangeIn)
)
async def set_my_password(request: Request, caller: Principal = Depends(_signed_in)) -> Response:
    """Change my password: ``current`` must be right (it counts towards the lockout)."""
    _not_at_terminal(caller)
    obj = validate.body_object(await read_json(request))
    current = validate.text(obj, "current", max_len=validate.MAX_PASSWORD)
    new = validate.password(obj.get("new"), "new")
    cloud = cloud_of(request)
    user = caller.user
    check = cloud.users.check_password
    await guarded(cloud.lockout, user, lambda: check(user, current, "current password"))
    await run_in_threadpool(cloud.users.set_password, caller.user, new)
    await run_in_threadpool(cloud.sessions.close_all, caller.user, _token(request))  # others end
    return Response(status_code=204)


@router.post("/me/cards", status_code=201, openapi_extra=schemas.request_body(schemas.CardIn))
async def register_my_card(request: Request, caller: Principal = Depends(_signed_in)) -> Any:
    """Register a card: approved at once or pending an admin, as ``cloud.card_registration``
    says ("off": refused)."""
    _not_at_terminal(caller)
    cloud = cloud_of(request)
    mode = cloud.config.card_registration
    if mode == "off":
        raise Forbidden(403, "cards are registered by an admin here (card_registration = off)")
    key = validate.card(validate.body_object(await read_json(request)).get("card"))
    card = await run_in_threadpool(
        lambda: cloud.users.add_card(caller.user, key, source="self", approved=mode == "auto")
    )
    return card.to_json()


@router.delete("/me/cards/{key}", status_code=204)
async def remove_my_card(
    key: str, request: Request, caller: Principal = Depends(_signed_in)
) -> Response:
    _not_at_terminal(caller)
    if not await run_in_threadpool(cloud_of(request).users.remove_card, caller.user, key):
        raise NotFound(404, "you have no such card")
    return Response(status_code=204)


# -- the admin's users and cards ------------------------------------------------------------------


@router.get("/users")
async def list_users(request: Request, caller: Principal = Depends(person)) -> dict[str, Any]:
    """Every user (admins and operators); a user sees only themself."""
    cloud = cloud_of(request)
    if caller.is_staff:
        found = await run_in_threadpool(cloud.users.all)
    else:
        found = [await run_in_threadpool(cloud.users.get, caller.user)]
    return {"users": [u.to_json() for u in found]}


@router.get("/users/{name}")
async def get_user(name: str, request: Request, caller: Principal = Depends(person)) -> Any:
    name = validate.name(name, "name")
    if not caller.is_staff and caller.user != name:
        raise Forbidden(403, f"{caller.describe()} may not see user {name}")
    found = await run_in_threadpool(cloud_of(request).users.get, name)
    return found.to_json()


@router.put("/users/{name}", openapi_extra=schemas.request_body(schemas.UserPutIn))
async def put_user(name: str, request: Request, _p: Principal = Depends(admin)) -> Any:
    """Create or change a user: role, display_name, email, pin, password, disabled (each
    optional; what is left out stays). Disabling the user or setting their password (a reset)
    ends the user's sessions."""
    name = validate.name(name, "name")
    obj = validate.body_object(await read_json(request))
    role = obj.get("role")
    fields: dict[str, Any] = {
        "display_name": validate.text(obj, "display_name", max_len=255, min_len=0, default=""),
        "email": validate.text(obj, "email", max_len=255, min_len=0, default=""),
        "role": None if role is None else validate.choice(role, "role", ROLES),
        "pin": None if obj.get("pin") is None else validate.pin(obj.get("pin")),
        "password": None if obj.get("password") is None else validate.password(obj["password"]),
        "disabled": obj.get("disabled", False),
    }
    if not isinstance(fields["disabled"], bool):
        raise InvalidRequest(422, "disabled must be true or false")
    cloud = cloud_of(request)
    created = await run_in_threadpool(lambda: cloud.users.upsert(name, source="local", **fields))
    if fields["disabled"] or (fields["password"] is not None and not created):
        await run_in_threadpool(cloud.sessions.close_all, name)
    found = await run_in_threadpool(cloud.users.get, name)
    return JSONResponse(found.to_json(), status_code=201 if created else 200)


@router.post(
    "/users/{name}/cards", status_code=201, openapi_extra=schemas.request_body(schemas.CardIn)
)
async def add_card(name: str, request: Request, _p: Principal = Depends(admin)) -> Any:
    name = validate.name(name, "name")
    key = validate.card(validate.body_object(await read_json(request)).get("card"))
    card = await run_in_threadpool(
        lambda: cloud_of(request).users.add_card(name, key, source="local", approved=True)
    )
    return card.to_json()


@router.post(
    "/cards/{key}/approve", openapi_extra=schemas.request_body(schemas.EmptyIn, required=False)
)
async def approve_card(key: str, request: Request, _p: Principal = Depends(admin)) -> Any:
    user = await run_in_threadpool(cloud_of(request).users.approve_card, key)
    return {"key": key, "user": user, "approved": True}


# -- terminals ---------------------------------------------------------------------------------


def _methods(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(v in TERMINAL_METHODS for v in value):
        raise InvalidRequest(
            422, f"methods must be a non-empty list of {', '.join(TERMINAL_METHODS)}"
        )
    return tuple(dict.fromkeys(value))


@router.post("/terminals", status_code=201, openapi_extra=schemas.request_body(schemas.TerminalIn))
async def add_terminal(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    """Register a terminal bound to one printer; the answer's ``token`` (its secret) is shown
    only here. ``methods``: how users sign in there (card, pin, username)."""
    obj = validate.body_object(await read_json(request))
    name = validate.name(obj.get("name"), "name")
    printer = validate.name(obj.get("printer"), "printer")
    methods = _methods(obj.get("methods", ["card", "pin"]))
    cloud = cloud_of(request)
    if await run_in_threadpool(cloud.printers.get, printer) is None:
        raise NotFound(404, f"no printer {printer}")
    token = await run_in_threadpool(cloud.terminals.add, name, printer, methods)
    return {"name": name, "printer": printer, "methods": list(methods), "token": token}


@router.get("/terminals")
async def list_terminals(request: Request, _p: Principal = Depends(admin)) -> dict[str, Any]:
    found = await run_in_threadpool(cloud_of(request).terminals.all)
    return {"terminals": [t.to_json() for t in found]}


@router.delete("/terminals/{name}", status_code=204)
async def delete_terminal(name: str, request: Request, _p: Principal = Depends(admin)) -> Response:
    if not await run_in_threadpool(cloud_of(request).terminals.delete, validate.name(name, "name")):
        raise NotFound(404, f"no terminal {name}")
    return Response(status_code=204)


def _terminal(caller: Principal = Depends(principal)) -> Principal:
    return require(caller, Role.TERMINAL)


@router.post(
    "/terminal/sign-in",
    status_code=201,
    openapi_extra=schemas.request_body(schemas.TerminalSignInIn),
    responses=schemas.answers(schemas.SessionOut, 201),
)
async def terminal_sign_in(request: Request, caller: Principal = Depends(_terminal)) -> Response:
    """A user signs in at this terminal with ``card``, with ``user`` and ``pin``, or with
    ``user`` alone (username selection), each only where the terminal allows it. The answer is a
    short session (``cloud.terminal_session_seconds``) bound to the terminal's printer."""
    obj = validate.body_object(await read_json(request))
    cloud = cloud_of(request)
    terminal = await run_in_threadpool(cloud.terminals.get, caller.terminal)
    if obj.get("card") is not None:
        method = "card"
    elif obj.get("pin") is not None:
        method = "pin"
    else:
        method = "username"
    user, token = await terminal_signin.sign_in(
        cloud, terminal, method, card=obj.get("card"), user=obj.get("user"), pin=obj.get("pin")
    )
    return _session_answer(request, token, user)


@router.get("/terminal/users")
async def terminal_users(request: Request, caller: Principal = Depends(_terminal)) -> Any:
    """The names to pick from, where this terminal allows username selection."""
    cloud = cloud_of(request)
    terminal = await run_in_threadpool(cloud.terminals.get, caller.terminal)
    if "username" not in terminal.methods:
        raise Forbidden(403, f"terminal {terminal.name} does not allow username selection")
    users = await run_in_threadpool(cloud.users.all)
    return {"users": [u.name for u in users if not u.disabled]}
