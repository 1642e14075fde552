"""What every handler of the release service shares: the :class:`Cloud` of an app and the
request dependencies that say who is calling (``Depends(admin)``, ``Depends(person)``...).

Routers (``app``, ``users_api``, ``accounting.api``...) import these; only ``app.create_app``
builds a Cloud.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from pullprint.cloud.auth import Principal, Role, TokenAuth, require
from pullprint.cloud.documents import Documents
from pullprint.cloud.groups import Delegations, Groups
from pullprint.cloud.jobs import JobBook
from pullprint.cloud.lockout import Lockout
from pullprint.cloud.notify import Notifier
from pullprint.cloud.policies import ReleasePolicies
from pullprint.cloud.printers import PrinterRegistry
from pullprint.cloud.sessions import SessionBook, TerminalBook
from pullprint.cloud.signing import UrlSigner
from pullprint.cloud.users import UserDirectory
from pullprint.config import CloudConfig
from pullprint.errors import Forbidden, InvalidRequest


@dataclass(frozen=True)
class Cloud:
    """Everything the handlers use, built once per app."""

    config: CloudConfig
    engine: Engine
    auth: TokenAuth
    users: UserDirectory
    printers: PrinterRegistry
    jobs: JobBook
    documents: Documents
    notifier: Notifier
    policies: ReleasePolicies
    groups: Groups
    delegations: Delegations
    signer: UrlSigner
    sessions: SessionBook
    terminals: TerminalBook
    lockout: Lockout


def cloud_of(request: Request) -> Cloud:
    cloud = request.app.state.cloud
    assert isinstance(cloud, Cloud)
    return cloud


async def principal(request: Request) -> Principal:
    """Who calls. A configured token (admin, node) is checked on the event loop; a session or
    terminal token, which is looked up in the database, in a worker thread. (The role checks
    below are async too: FastAPI runs a sync dependency in a worker thread, a hop per
    dependency and request.)"""
    auth = cloud_of(request).auth
    header = request.headers.get("authorization")
    if auth.looks_up(header):
        return await run_in_threadpool(auth.authenticate, header)
    return auth.authenticate(header)


async def admin(principal: Principal = Depends(principal)) -> Principal:
    return require(principal, Role.ADMIN)


async def node(principal: Principal = Depends(principal)) -> Principal:
    return require(principal, Role.NODE)


async def admin_or_node(principal: Principal = Depends(principal)) -> Principal:
    return require(principal, Role.ADMIN, Role.NODE)


async def person(principal: Principal = Depends(principal)) -> Principal:
    """The admin token or a signed-in user of any role."""
    return require(principal, Role.ADMIN, Role.OPERATOR, Role.USER)


async def anyone(principal: Principal = Depends(principal)) -> Principal:
    """Any authenticated caller (each handler or JobBook checks what it may see)."""
    return principal


def self_or_admin(principal: Principal, owner: str) -> None:
    """A signed-in user acts on their own settings only; the admin on anyone's."""
    if principal.role is Role.ADMIN or (principal.user and principal.user == owner):
        return
    raise Forbidden(403, f"{principal.describe()} may not change the settings of {owner}")


def json_answer(content: dict[str, Any], status: int = 200) -> Response:
    """A JSON answer of ``content`` that is JSON already (a model's ``to_json``): sent as it is,
    encoded by orjson. (A handler that returns a dict has FastAPI walk it with
    ``jsonable_encoder`` first, which took as long as building the 100 jobs of a listing; the
    standard library's encoder then took 1.8 ms of a 14 ms listing of 100 jobs, orjson 0.2.)"""
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(400, f"the request body is not valid JSON: {exc}") from exc


async def admin_or_terminal(principal: Principal = Depends(principal)) -> Principal:
    return require(principal, Role.ADMIN, Role.TERMINAL)
