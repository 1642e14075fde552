"""Single sign-on with OpenID Connect: authorization code flow with PKCE (RFC 7636, S256).

:class:`OidcClient` (configured by ``[oidc]``, ``pullprint.config.OidcConfig``) reads the
provider's ``/.well-known/openid-configuration``, starts a login (:meth:`OidcClient.start_login`:
a random state, nonce and PKCE verifier kept server-side in a :class:`LoginStore` with an expiry on
the injected clock, and the provider's authorization URL), and finishes it
(:meth:`OidcClient.finish_login`: the state is taken once, the code is exchanged with Authlib's
``OAuth2Session``, and the ID token's RS256/ES256 signature is checked against the provider's JWKS
and its ``iss``, ``aud`` (and ``azp``), ``nonce``, ``exp`` and ``iat`` against what was sent, on the
injected clock). :func:`sign_in_user` maps the verified login to a pullprint user (created or
updated as source ``"oidc"``).

Every refusal is an :class:`OidcError` whose message says what was wrong; the client secret,
codes, tokens and PKCE verifiers are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from pullprint.config import OidcConfig
from pullprint.errors import NotFound, PullprintError

log = logging.getLogger(__name__)

SOURCE = "oidc"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")  # never HS*, none
MAX_PENDING = 10_000
MAX_NAME = 64


class OidcError(PullprintError):
    """A single sign-on step was refused or failed; the message says why (never a secret)."""


# -- the provider ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery says of the provider (the parts used here)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""


def discover(cfg: OidcConfig, session: requests.Session) -> ProviderMetadata:
    """GET ``{issuer}/.well-known/openid-configuration``; the ``issuer`` it names must be
    exactly ``cfg.issuer`` (OpenID Connect Discovery 1.0, section 4.3). Changes nothing."""
    url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = session.get(url, timeout=cfg.timeout_seconds)
        answer.raise_for_status()
        doc = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise OidcError(f"discovery at {url} failed: {exc}") from exc
    if not isinstance(doc, dict):
        raise OidcError(f"discovery at {url}: not a JSON object")
    if doc.get("issuer") != cfg.issuer:
        raise OidcError(
            f"discovery at {url} names issuer {doc.get('issuer')!r}, not {cfg.issuer!r}"
        )
    missing = [
        k
        for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(doc.get(k), str) or not doc[k]
    ]
    if missing:
        raise OidcError(f"discovery at {url} lacks {', '.join(missing)}")
    return ProviderMetadata(
        issuer=doc["issuer"],
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
    )


# -- logins in flight --------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingLogin:
    """A started login, kept server-side until its callback (or its expiry)."""

    state: str
    nonce: str
    code_verifier: str
    created_at: float
    expires_at: float
    binding: str = ""  # sha256 of the browser's binding cookie; empty: not bound


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LoginStore:
    """Started logins by state, in memory, each taken at most once; expired ones are refused
    and swept. Thread-safe. (One server process: a login must finish where it started.)"""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: dict[str, PendingLogin] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(state: str) -> str:
        return _digest(state)

    def put(self, login: PendingLogin) -> None:
        """Keep ``login`` until taken or expired (drops expired ones first; OidcError when
        ``MAX_PENDING`` logins are in flight)."""
        with self._lock:
            now = self._clock()
            for key in [k for k, p in self._pending.items() if p.expires_at <= now]:
                del self._pending[key]
            if len(self._pending) >= MAX_PENDING:
                raise OidcError("too many single sign-on logins in flight; try again later")
            self._pending[self._key(login.state)] = login

    def take(self, state: str) -> PendingLogin:
        """Remove and return the login started with ``state``; OidcError if there is none (a
        wrong, forged or already used state) or it has expired."""
        with self._lock:
            login = self._pending.pop(self._key(state), None)
            now = self._clock()
        if login is None:
            raise OidcError("unknown or already used state: start the login again")
        if now >= login.expires_at:
            raise OidcError(
                f"the login expired ({now - login.created_at:.0f} s after it started, "
                f"allowed {login.expires_at - login.created_at:.0f} s): start it again"
            )
        return login

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


# -- verified logins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginStart:
    url: str  # the provider's authorization URL to redirect the browser to
    state: str


@dataclass(frozen=True)
class VerifiedLogin:
    """The verified claims of an ID token, as pullprint uses them."""

    issuer: str
    subject: str
    username: str  # the pullprint user name (from ``username_claim``)
    display_name: str
    email: str
    groups: tuple[str, ...]
    expires_at: int


def _claim_text(claims: dict[str, Any], key: str) -> str:
    value = claims.get(key)
    return value.strip() if isinstance(value, str) else ""


class OidcClient:
    """The relying party: one per app. ``session`` is closed only if made here."""

    def __init__(
        self,
        cfg: OidcConfig,
        *,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        store: LoginStore | None = None,
    ) -> None:
        if not cfg.issuer:
            raise OidcError("single sign-on is off (oidc.issuer is empty)")
        self.cfg = cfg
        self._clock = clock
        self._own_session = session is None
        self._http = session or requests.Session()
        self.store = store or LoginStore(clock)
        self._metadata: ProviderMetadata | None = None
        self._jwks: Any = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_session:
            self._http.close()

    # -- provider data, cached --

    def metadata(self) -> ProviderMetadata:
        """The provider's metadata (discovered once, then cached)."""
        with self._lock:
            if self._metadata is None:
                self._metadata = discover(self.cfg, self._http)
            return self._metadata

    def _key_set(self, refresh: bool = False) -> Any:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        with self._lock:
            cached = self._jwks
        if cached is not None and not refresh:
            return cached
        url = self.metadata().jwks_uri
        try:
            answer = self._http.get(url, timeout=self.cfg.timeout_seconds)
            answer.raise_for_status()
            keys = KeySet.import_key_set(answer.json())
        except (requests.RequestException, ValueError, KeyError, TypeError, JoseError) as exc:
            raise OidcError(f"the provider's keys at {url} could not be read: {exc}") from exc
        with self._lock:
            self._jwks = keys
        return keys

    def _oauth(self, **kwargs: Any) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        oauth = OAuth2Session(
            client_id=self.cfg.client_id,
            client_secret=self.cfg.client_secret or None,
            scope=" ".join(self.cfg.scopes),
            redirect_uri=self.cfg.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=(
                "client_secret_basic" if self.cfg.client_secret else "none"
            ),
            **kwargs,
        )
        oauth.timeout = self.cfg.timeout_seconds
        return oauth

    # -- the flow --

    def start_login(self, binding: str = "") -> LoginStart:
        """Make a state, a nonce and a PKCE verifier, keep them (``login_seconds``), and
        return the provider's authorization URL carrying state, nonce and the S256 challenge.
        ``binding`` (a secret the browser keeps in a cookie) must come back to finish it."""
        from authlib.common.security import generate_token

        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = generate_token(64)  # RFC 7636: 43 to 128 unreserved characters
        now = self._clock()
        self.store.put(
            PendingLogin(
                state,
                nonce,
                verifier,
                now,
                now + self.cfg.login_seconds,
                _digest(binding) if binding else "",
            )
        )
        endpoint = self.metadata().authorization_endpoint
        with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                endpoint, state=state, code_verifier=verifier, nonce=nonce
            )
        log.info("single sign-on login started (expires in %d s)", self.cfg.login_seconds)
        return LoginStart(str(url), state)

    def finish_login(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None = None,
        binding: str = "",
    ) -> VerifiedLogin:
        """Take the login started with ``state`` (once), check the browser's ``binding``,
        exchange ``code`` for tokens with the PKCE verifier, and verify the ID token. OidcError
        for a wrong or used state, an expired login, another browser, a provider error, a
        refused code (e.g. replayed) or a token that fails a check."""
        if not state:
            raise OidcError("the callback has no state")
        pending = self.store.take(state)
        if pending.binding and not hmac.compare_digest(pending.binding, _digest(binding)):
            raise OidcError("this login was started in another browser (no matching cookie)")
        if error:
            raise OidcError(f"the provider refused the login: {error}")
        if not code:
            raise OidcError("the callback has no code")
        from authlib.integrations.base_client.errors import OAuthError

        try:
            with self._oauth() as oauth:
                token = oauth.fetch_token(
                    self.metadata().token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                )
        except OAuthError as exc:
            raise OidcError(
                f"the provider refused the code: {exc.error}"
                + (f" ({exc.description})" if exc.description else "")
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise OidcError(f"the code exchange failed: {exc}") from exc
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("the provider's token answer has no id_token")
        login = self.verify_id_token(id_token, nonce=pending.nonce)
        log.info("single sign-on login verified for %s", login.username)
        return login

    def verify_id_token(self, id_token: str, *, nonce: str) -> VerifiedLogin:
        """Check the ID token's signature against the provider's JWKS (fetched again once for
        an unknown key id) with an asymmetric algorithm, and its claims: ``iss`` is the issuer,
        ``aud`` holds the client id (``azp`` is it when there are several audiences), ``nonce``
        is the one sent, ``exp`` is not past and ``iat`` not in the future (``leeway_seconds``,
        injected clock). Changes nothing but the cached keys."""
        from joserfc import jwt
        from joserfc.errors import (
            BadSignatureError,
            ExpiredTokenError,
            InvalidClaimError,
            JoseError,
            MissingClaimError,
        )

        try:
            try:
                token = jwt.decode(id_token, self._key_set(), algorithms=SIGNING_ALGORITHMS)
            except BadSignatureError:
                raise
            except (JoseError, ValueError):
                # No key for it: the provider may have rotated its keys; fetch them once more.
                token = jwt.decode(
                    id_token, self._key_set(refresh=True), algorithms=SIGNING_ALGORITHMS
                )
        except BadSignatureError as exc:
            raise OidcError("the ID token's signature does not verify") from exc
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token cannot be read: {type(exc).__name__}: {exc}") from exc
        now = int(self._clock())
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=self.cfg.leeway_seconds,
            iss={"essential": True, "value": self.metadata().issuer},
            aud={"essential": True, "value": self.cfg.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        claims = dict(token.claims)
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise OidcError(f"the ID token expired at {claims.get('exp')} (now {now})") from exc
        except MissingClaimError as exc:
            raise OidcError(f"the ID token lacks a claim: {exc}") from exc
        except InvalidClaimError as exc:
            what = str(exc)
            if "aud" in what:
                what = f"audience {claims.get('aud')!r} is not this client"
            elif "iss" in what:
                what = f"issuer {claims.get('iss')!r} is not {self.metadata().issuer!r}"
            elif "nonce" in what:
                what = "nonce does not match the login's"
            raise OidcError(f"the ID token is refused: {what}") from exc
        except JoseError as exc:
            raise OidcError(f"the ID token is refused: {exc}") from exc
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > now + self.cfg.leeway_seconds:
            raise OidcError("the ID token is refused: issued in the future (iat)")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.cfg.client_id:
            raise OidcError("the ID token is refused: several audiences and azp is not ours")
        return self._login(claims)

    def _login(self, claims: dict[str, Any]) -> VerifiedLogin:
        username = _claim_text(claims, self.cfg.username_claim)
        if not (1 <= len(username) <= MAX_NAME and username.isprintable() and "/" not in username):
            raise OidcError(
                f"the ID token's {self.cfg.username_claim} claim is not a usable user name"
            )
        groups: tuple[str, ...] = ()
        if self.cfg.groups_claim:
            raw = claims.get(self.cfg.groups_claim, [])
            if isinstance(raw, str):
                raw = [raw]
            if isinstance(raw, list):
                groups = tuple(
                    sorted({g for g in raw if isinstance(g, str) and 1 <= len(g) <= MAX_NAME})
                )
        return VerifiedLogin(
            issuer=str(claims["iss"]),
            subject=str(claims["sub"]),
            username=username,
            display_name=_claim_text(claims, "name"),
            email=_claim_text(claims, "email"),
            groups=groups,
            expires_at=int(claims["exp"]),
        )


# -- into the cloud ----------------------------------------------------------------------------


class SsoUsers(Protocol):
    """What :func:`sign_in_user` needs of ``pullprint.cloud.users.UserDirectory``."""

    def upsert(
        self,
        name: str,
        *,
        display_name: str = "",
        email: str = "",
        source: str = "local",
        role: str | None = None,
        pin: str | None = None,
        password: str | None = None,
        disabled: bool = False,
    ) -> bool: ...

    def get(self, name: str) -> Any: ...


class SsoGroups(Protocol):
    def put(self, name: str, members: list[str]) -> list[str]: ...

    def members(self, name: str) -> list[str]: ...


def sign_in_user(
    users: SsoUsers,
    login: VerifiedLogin,
    *,
    link_sources: tuple[str, ...] = ("ldap",),
    groups: SsoGroups | None = None,
) -> str:
    """The pullprint user ``login`` signs in as. A new name is created as source ``"oidc"``; an
    ``"oidc"`` user gets the token's display name and email; a user of a source in
    ``link_sources`` (the directory) is signed in unchanged. A disabled user, or a user of any
    other source (a local account: single sign-on never takes one over), is refused with
    OidcError. With ``groups``, the user is added to each group the token lists (never removed
    from one: the directory sync owns memberships)."""
    name = login.username
    try:
        old = users.get(name)
    except NotFound:
        old = None
    if old is not None and old.disabled:
        raise OidcError(f"user {name} is disabled")
    if old is not None and old.source != SOURCE and old.source not in link_sources:
        raise OidcError(
            f"a {old.source} user named {name} exists; single sign-on does not sign in as it"
        )
    if old is None or old.source == SOURCE:
        created = users.upsert(
            name, display_name=login.display_name, email=login.email, source=SOURCE
        )
        log.info("single sign-on %s user %s", "created" if created else "updated", name)
    if groups is not None:
        for group in login.groups:
            try:
                members = groups.members(group)
            except NotFound:
                members = []
            if name not in members:
                groups.put(group, [*members, name])
    return name
