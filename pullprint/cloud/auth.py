"""Bearer-token authentication: the admin token or a node's token, compared in constant time.

Tokens are never logged; a failed attempt logs only that it failed.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pullprint.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    ADMIN = "admin"
    NODE = "node"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or the node named ``node``."""

    role: Role
    node: str = ""

    def describe(self) -> str:
        return "the admin" if self.role is Role.ADMIN else f"node {self.node}"


class TokenAuth:
    """Maps bearer tokens to principals. Empty tokens in the configuration are ignored."""

    def __init__(self, admin_token: str, node_tokens: Mapping[str, str]) -> None:
        self._admin = admin_token.encode()
        self._nodes = [(name, token.encode()) for name, token in node_tokens.items() if token]

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` header value; raises Unauthorized (401)."""
        if not authorization:
            raise Unauthorized(401, "this request needs an Authorization: Bearer TOKEN header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(401, "the Authorization header must read: Bearer TOKEN")
        given = token.encode()
        found: Principal | None = None
        # Compare with every token, without stopping early, so timing says nothing.
        if self._admin and hmac.compare_digest(given, self._admin):
            found = Principal(Role.ADMIN)
        for name, expected in self._nodes:
            if hmac.compare_digest(given, expected) and found is None:
                found = Principal(Role.NODE, name)
        if found is None:
            log.warning("rejected a request with an unknown bearer token")
            raise Unauthorized(401, "the bearer token is not valid for this cloud")
        return found


def require(principal: Principal, *roles: Role) -> Principal:
    """``principal`` if its role is one of ``roles``, else Forbidden (403) naming who may call."""
    if principal.role in roles:
        return principal
    allowed = " or ".join(f"the {r.value} token" for r in roles)
    raise Forbidden(403, f"this endpoint needs {allowed}; {principal.describe()} may not use it")
