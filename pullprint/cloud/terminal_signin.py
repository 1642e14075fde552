"""Signing a person in at a terminal: by card, by user and PIN, or by picking a name, each only
where the terminal allows it. Shared by the API (``POST /terminal/sign-in``) and the kiosk page.

Wrong cards and PINs count towards the user's lockout; a terminal that sends many failures has
its answers slowed down (``identity.lockout``). Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from pullprint.cloud import validate
from pullprint.cloud.context import Cloud
from pullprint.cloud.sessions import Terminal
from pullprint.errors import Forbidden, NotFound, WrongSecret
from pullprint.identity.lockout import check_lockout, counted

log = logging.getLogger(__name__)


async def sign_in(
    cloud: Cloud,
    terminal: Terminal,
    method: str,
    *,
    card: object = None,
    user: object = None,
    pin: object = None,
) -> tuple[str, str]:
    """Check the person at ``terminal`` by ``method`` (card, pin or username) and open a short
    session bound to the terminal's printer: returns (user name, session token). Raises
    Forbidden (method not allowed), WrongSecret (wrong card or PIN), NotFound (no such user),
    CloudRefused 423 (locked) or InvalidRequest (a malformed value)."""
    if method not in terminal.methods:
        raise Forbidden(403, f"terminal {terminal.name} does not allow sign-in by {method or '?'}")
    await asyncio.sleep(check_lockout(cloud.lockout, None, terminal.name))
    if method == "card":
        key = validate.card(card)
        name = await run_in_threadpool(cloud.users.by_card, key)
        if name is None:
            cloud.lockout.failure(f"card:{key}", terminal.name)
            log.warning("unknown or unapproved card at terminal %s", terminal.name)
            raise WrongSecret(403, "this card is not registered (or not yet approved)")
        check_lockout(cloud.lockout, name)
        cloud.lockout.success(name, terminal.name)
    else:
        name = validate.name(user)
        check_lockout(cloud.lockout, name)
        if method == "pin":
            given = validate.pin(pin)
            with counted(cloud.lockout, name, terminal.name):
                if not await run_in_threadpool(cloud.users.verify, name, given):
                    raise WrongSecret(403, "wrong user name or PIN")
        elif not await run_in_threadpool(cloud.users.exists, name):
            raise NotFound(404, f"no user {name}")
    token = await run_in_threadpool(cloud.sessions.open, name, "terminal", terminal.name)
    log.info("%s signed in at terminal %s by %s", name, terminal.name, method)
    return name, token
