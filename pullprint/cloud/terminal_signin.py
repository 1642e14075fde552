"""Signing a person in at a terminal: by card, by user and PIN, or by picking a name, each only
where the terminal allows it. Shared by the API (``POST /terminal/sign-in``) and the kiosk page.

Wrong cards and PINs count towards the user's lockout; a terminal that sends many failures has
its answers slowed down (``cloud.lockout``). Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from starlette.concurrency import run_in_threadpool

from pullprint.cloud import validate
from pullprint.cloud.context import Cloud
from pullprint.cloud.sessions import Terminal
from pullprint.errors import Forbidden, NotFound, WrongSecret

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
    await asyncio.sleep(await run_in_threadpool(cloud.lockout.terminal_delay, terminal.name))
    key = validate.card(card) if method == "card" else ""
    name = validate.name(user) if method != "card" else ""
    given = validate.pin(pin) if method == "pin" else ""

    def check() -> str:  # in a worker thread: the lockout's counts are in the database
        lockout = cloud.lockout
        if method == "card":
            owner = cloud.users.by_card(key)
            if owner is None:
                lockout.failure(_unknown_card(key), terminal.name)
                log.warning("unknown or unapproved card at terminal %s", terminal.name)
                raise WrongSecret(403, "this card is not registered (or not yet approved)")
            return lockout.guard(owner, lambda: owner, terminal.name)  # a locked user stays out
        if method == "pin":
            return lockout.guard(name, lambda: _pin_checked(cloud, name, given), terminal.name)
        lockout.check(name)
        if not cloud.users.exists(name):
            raise NotFound(404, f"no user {name}")
        return name

    name = await run_in_threadpool(check)
    token = await run_in_threadpool(cloud.sessions.open, name, "terminal", terminal.name)
    log.info("%s signed in at terminal %s by %s", name, terminal.name, method)
    return name, token


def _unknown_card(key: str) -> str:
    """The lockout's name for a card no one has: a digest, so that neither its count in the
    database nor the lockout's log line holds the card number."""
    return "card:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _pin_checked(cloud: Cloud, name: str, pin: str) -> str:
    """``name``, or WrongSecret 403 if ``pin`` is not the PIN of that enabled user."""
    if not cloud.users.verify(name, pin):
        raise WrongSecret(403, "wrong user name or PIN")
    return name
