"""Bearer-token authentication: the admin token, a node's token, a user's session or a
terminal's secret.

Configured tokens are compared in constant time; session and terminal tokens are looked up by
their SHA-256 (``sessions``). A session's role is the user's role read at each request, so a role
change or a disabled user takes effect at once. Tokens are never logged; a failed attempt logs only
that it failed.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pullprint.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    ADMIN = "admin"  # the admin token, or a signed-in user whose role is admin
    NODE = "node"
    OPERATOR = "operator"  # a signed-in operator: any held job
    USER = "user"  # a signed-in user: their own and delegated jobs
    TERMINAL = "terminal"  # a release terminal, bound to one printer


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, the node named ``node``, the signed-in ``user`` (with the
    role they have; at a terminal, ``terminal`` and its ``printer`` are set too), or the
    terminal ``terminal`` itself."""

    role: Role
    node: str = ""
    user: str = ""
    terminal: str = ""
    printer: str = ""

    def describe(self) -> str:
        if self.user:
            at = f" at terminal {self.terminal}" if self.terminal else ""
            return f"{self.role.value} {self.user}{at}"
        if self.role is Role.ADMIN:
            return "the admin"
        if self.role is Role.TERMINAL:
            return f"terminal {self.terminal}"
        return f"node {self.node}"

    @property
    def is_staff(self) -> bool:
        """Admin or operator: may act on any held job."""
        return self.role in (Role.ADMIN, Role.OPERATOR)


# A resolver maps a token with its prefix to a principal, or None when it is not valid.
Resolver = Callable[[str], "Principal | None"]


class TokenAuth:
    """Maps bearer tokens to principals. Empty tokens in the configuration are ignored."""

    def __init__(
        self,
        admin_token: str,
        node_tokens: Mapping[str, str],
        resolvers: Mapping[str, Resolver] | None = None,
    ) -> None:
        self._admin = admin_token.encode()
        self._nodes = [(name, token.encode()) for name, token in node_tokens.items() if token]
        self._resolvers = dict(resolvers or {})  # token prefix -> resolver

    def looks_up(self, authorization: str | None) -> bool:
        """True if the header's token is one a resolver looks up (a session or a terminal),
        False for a configured token or a malformed header (checked in memory). Changes
        nothing."""
        _, _, token = (authorization or "").partition(" ")
        token = token.strip()
        return any(token.startswith(prefix) for prefix in self._resolvers)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` header value; raises Unauthorized (401)."""
        if not authorization:
            raise Unauthorized(401, "this request needs an Authorization: Bearer TOKEN header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(401, "the Authorization header must read: Bearer TOKEN")
        for prefix, resolve in self._resolvers.items():
            if token.startswith(prefix):
                resolved = resolve(token)
                if resolved is None:
                    log.warning("rejected a request with an unknown or expired %s token", prefix)
                    raise Unauthorized(401, "the session has expired or is not valid: sign in")
                return resolved
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
    allowed = " or ".join(_NEEDS[r] for r in roles)
    raise Forbidden(403, f"this endpoint needs {allowed}; {principal.describe()} may not use it")


_NEEDS = {
    Role.ADMIN: "the admin token or an admin",
    Role.NODE: "a node token",
    Role.OPERATOR: "an operator",
    Role.USER: "a signed-in user",
    Role.TERMINAL: "a terminal",
}
