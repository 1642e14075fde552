"""Single sign-on against a real OpenID Connect provider (django-oidc-provider, an independent
implementation, run here on loopback): a full login with PKCE through real HTTP redirects and the
provider's login form, and each refusal: wrong state, replayed code, wrong audience, expired
token, wrong nonce, bad signature, expired login, another browser, a local account."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey

from pullprint import config as configmod
from pullprint.cloud import identity_api
from pullprint.cloud.app import PREFIX
from pullprint.config import OidcConfig
from pullprint.identity.oidc import LoginStore, OidcClient, OidcError, PendingLogin
from pullprint.peers.oidc_provider import OidcProvider, ProviderClient, ProviderUser
from pullprint.peers.ports import free_port
from tests.test_directory_sync import Clock, Env, Served, make_env

APP_PORT = free_port()
CALLBACK = f"http://127.0.0.1:{APP_PORT}{PREFIX}/sso/callback"
CLIENT = ProviderClient("pullprint", "pullprint-client-secret-for-tests", (CALLBACK,))
OTHER = ProviderClient("other-app", "other-client-secret-for-tests", (CALLBACK,))
ALICE = ProviderUser(
    "alice", "Alice-pass-1", "alice@pullprint.test", "Alice", "Archer", ("staff", "finance")
)
BOB = ProviderUser("bob", "Bob-pass-1", "bob@pullprint.test", "Bob", "Baker")
ID_TOKEN_SECONDS = 300


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider([CLIENT, OTHER], [ALICE, BOB], id_token_seconds=ID_TOKEN_SECONDS) as p:
        yield p


def oidc_config(provider: OidcProvider, client: ProviderClient = CLIENT) -> OidcConfig:
    return configmod.check_oidc(
        OidcConfig(
            issuer=provider.issuer,
            client_id=client.client_id,
            client_secret=client.client_secret,
            redirect_uri=CALLBACK,
            groups_claim="groups",
            login_seconds=120,
        )
    )


@pytest.fixture
def env(tmp_path: Path, provider: OidcProvider) -> Iterator[Env]:
    made = make_env(tmp_path, oidc=oidc_config(provider))
    yield made
    made.cloud.engine.dispose()


@pytest.fixture
def served(env: Env) -> Iterator[Served]:
    with Served(env.app, APP_PORT) as running:
        yield running


def sign_in_at_provider(
    browser: requests.Session, response: requests.Response, user: ProviderUser
) -> requests.Response:
    """Fill in and post the provider's login form (``response`` shows it); answers the
    provider's redirect back (not followed)."""
    assert "<form" in response.text, response.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
    nxt = re.search(r'name="next" value="([^"]*)"', response.text)
    assert csrf and nxt
    posted = browser.post(
        response.url,
        data={
            "csrfmiddlewaretoken": csrf.group(1),
            "username": user.username,
            "password": user.password,
            "next": html.unescape(nxt.group(1)),
        },
        allow_redirects=False,
        timeout=10,
    )
    assert posted.status_code == 302, posted.text[:500]
    return posted


def follow_to_callback(browser: requests.Session, answer: requests.Response) -> str:
    """Follow the provider's redirects until one points at our callback; return that URL."""
    for _ in range(10):
        location = urljoin(answer.url, answer.headers["location"])
        if location.startswith(CALLBACK):
            return location
        answer = browser.get(location, allow_redirects=False, timeout=10)
        assert answer.status_code in (301, 302, 303), answer.text[:500]
    raise AssertionError("no redirect to the callback")


def provider_login(browser: requests.Session, url: str, user: ProviderUser) -> str:
    """Open ``url`` (an authorization URL) in ``browser``, sign in, and return the callback
    URL the provider redirects to (with code and state)."""
    form = browser.get(url, timeout=10)
    assert form.status_code == 200 and "/accounts/login/" in form.url
    return follow_to_callback(browser, sign_in_at_provider(browser, form, user))


def callback_params(url: str) -> tuple[str, str]:
    query = parse_qs(urlparse(url).query)
    return query["state"][0], query["code"][0]


def raw_id_token(
    provider: OidcProvider, client: ProviderClient, user: ProviderUser
) -> tuple[str, str]:
    """A real ID token the provider issues to ``client`` for ``user`` (and the nonce sent),
    exchanged by hand so the test can present it to the wrong verifier."""
    rp = OidcClient(oidc_config(provider, client))
    try:
        start = rp.start_login()
        state, code = callback_params(provider_login(requests.Session(), start.url, user))
        pending = rp.store.take(state)
        token = requests.post(
            rp.metadata().token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": pending.code_verifier,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
            timeout=10,
        )
        assert token.status_code == 200, token.text
        return str(token.json()["id_token"]), pending.nonce
    finally:
        rp.close()


# -- the whole login through the API ---------------------------------------------------------


def test_full_login_with_pkce_through_real_redirects(env: Env, served: Served) -> None:
    browser = requests.Session()
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)  # follows redirects
    ours, at_provider = form.history[0], form.history[1]
    assert ours.status_code == 303 and "pullprint_sso" in browser.cookies
    authorize = parse_qs(urlparse(ours.headers["location"]).query)
    assert authorize["code_challenge_method"] == ["S256"]
    assert len(authorize["code_challenge"][0]) == 43  # base64url of a SHA-256
    assert authorize["response_type"] == ["code"] and "nonce" in authorize
    assert at_provider.status_code == 302 and "/accounts/login/" in form.url

    done = browser.get(
        follow_to_callback(browser, sign_in_at_provider(browser, form, ALICE)), timeout=10
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["user"] == "alice" and body["kind"] == "sso"
    assert body["token"].startswith("pps_")
    assert browser.cookies.get("pullprint_session") == body["token"]
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie

    session = env.cloud.sessions.resolve(body["token"])
    assert session is not None and (session.user, session.kind) == ("alice", "sso")
    alice = env.cloud.users.get("alice")
    assert (alice.source, alice.display_name, alice.email) == (
        "oidc",
        "Alice Archer",
        "alice@pullprint.test",
    )
    assert env.cloud.groups.members("staff") == ["alice"]
    assert env.cloud.groups.members("finance") == ["alice"]

    # The session is a bearer token for the API.
    mine = requests.get(
        f"{served.base}{PREFIX}/jobs",
        params={"user": "alice"},
        headers={"Authorization": f"Bearer {body['token']}"},
        timeout=10,
    )
    assert mine.status_code == 200, mine.text

    # Replaying the same callback URL: the state was used.
    again = browser.get(done.url, timeout=10)
    assert again.status_code == 401
    assert "unknown or already used state" in again.json()["detail"]


def test_a_browser_is_sent_on_to_the_web_pages(env: Env, served: Served) -> None:
    browser = requests.Session()
    browser.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)
    callback = follow_to_callback(browser, sign_in_at_provider(browser, form, ALICE))
    done = browser.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["location"] == identity_api.WEB_HOME
    token = browser.cookies.get(identity_api.SESSION_COOKIE)
    session = env.cloud.sessions.resolve(token or "")
    assert session is not None and session.user == "alice"


def test_wrong_state_is_refused(served: Served) -> None:
    answer = requests.get(
        f"{served.base}{PREFIX}/sso/callback",
        params={"state": "forged-state", "code": "whatever"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert answer.json()["detail"] == (
        "single sign-on refused: unknown or already used state: start the login again"
    )
    missing = requests.get(f"{served.base}{PREFIX}/sso/callback", timeout=10)
    assert missing.status_code == 401 and "no state" in missing.json()["detail"]


def test_login_after_the_state_expired_is_refused(env: Env, served: Served) -> None:
    browser = requests.Session()
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)
    callback = follow_to_callback(browser, sign_in_at_provider(browser, form, ALICE))
    env.clock.advance(121)  # login_seconds = 120
    answer = browser.get(callback, timeout=10)
    assert answer.status_code == 401
    assert "the login expired" in answer.json()["detail"]
    assert "alice" not in env.cloud.users.names()


def test_callback_in_another_browser_is_refused(served: Served) -> None:
    browser = requests.Session()
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)
    callback = follow_to_callback(browser, sign_in_at_provider(browser, form, ALICE))
    victim = requests.get(callback, timeout=10)  # no pullprint_sso cookie: login CSRF
    assert victim.status_code == 401
    assert "started in another browser" in victim.json()["detail"]


def test_provider_error_is_refused(served: Served) -> None:
    browser = requests.Session()
    first = browser.get(f"{served.base}{PREFIX}/sso/login", allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(first.headers["location"]).query)["state"][0]
    answer = browser.get(
        f"{served.base}{PREFIX}/sso/callback",
        params={"state": state, "error": "access_denied"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert "the provider refused the login: access_denied" in answer.json()["detail"]


def test_a_local_account_is_not_taken_over(env: Env, served: Served) -> None:
    env.cloud.users.add("bob", "2468")
    browser = requests.Session()
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)
    done = browser.get(
        follow_to_callback(browser, sign_in_at_provider(browser, form, BOB)), timeout=10
    )
    assert done.status_code == 401
    assert "a local user named bob exists" in done.json()["detail"]
    assert env.cloud.users.get("bob").source == "local"


def test_sso_not_configured_answers_404(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with Served(env.app) as running:
        answer = requests.get(f"{running.base}{PREFIX}/sso/login", timeout=10)
    assert answer.status_code == 404 and "not configured" in answer.json()["detail"]
    env.cloud.engine.dispose()


# -- the relying party's checks, one by one ---------------------------------------------------


def test_replayed_code_is_refused_by_the_provider(provider: OidcProvider) -> None:
    rp = OidcClient(oidc_config(provider))
    start = rp.start_login()
    state, code = callback_params(provider_login(requests.Session(), start.url, ALICE))
    kept = dataclasses.replace(rp.store.take(state))
    rp.store.put(kept)
    assert rp.finish_login(state=state, code=code).username == "alice"
    # Even with our state check bypassed (the pending login put back), the code works once.
    rp.store.put(kept)
    with pytest.raises(OidcError, match="the provider refused the code: invalid_grant"):
        rp.finish_login(state=state, code=code)
    rp.close()


def test_pkce_verifier_is_checked(provider: OidcProvider) -> None:
    rp = OidcClient(oidc_config(provider))
    start = rp.start_login()
    state, code = callback_params(provider_login(requests.Session(), start.url, ALICE))
    pending = rp.store.take(state)
    rp.store.put(dataclasses.replace(pending, code_verifier="x" * 64))
    with pytest.raises(OidcError, match="the provider refused the code"):
        rp.finish_login(state=state, code=code)
    rp.close()


def test_wrong_audience_is_refused(provider: OidcProvider) -> None:
    token, nonce = raw_id_token(provider, OTHER, ALICE)  # issued to another client
    rp = OidcClient(oidc_config(provider))
    with pytest.raises(OidcError, match="audience 'other-app' is not this client"):
        rp.verify_id_token(token, nonce=nonce)
    rp.close()


def test_expired_token_is_refused(provider: OidcProvider) -> None:
    clock = Clock()
    rp = OidcClient(oidc_config(provider), clock=clock)
    token, nonce = raw_id_token(provider, CLIENT, ALICE)
    assert rp.verify_id_token(token, nonce=nonce).username == "alice"
    clock.advance(ID_TOKEN_SECONDS + 61)  # past exp and the 60 s leeway
    with pytest.raises(OidcError, match="the ID token expired"):
        rp.verify_id_token(token, nonce=nonce)
    clock.advance(-2 * (ID_TOKEN_SECONDS + 61) - 3600)  # issued "in the future"
    with pytest.raises(OidcError, match="refused"):
        rp.verify_id_token(token, nonce=nonce)
    rp.close()


def test_wrong_nonce_is_refused(provider: OidcProvider) -> None:
    token, _nonce = raw_id_token(provider, CLIENT, ALICE)
    rp = OidcClient(oidc_config(provider))
    with pytest.raises(OidcError, match="nonce does not match"):
        rp.verify_id_token(token, nonce="another-login-s-nonce")
    rp.close()


def test_wrong_nonce_through_the_whole_flow_is_refused(provider: OidcProvider) -> None:
    rp = OidcClient(oidc_config(provider))
    start = rp.start_login()
    state, code = callback_params(provider_login(requests.Session(), start.url, ALICE))
    rp.store.put(dataclasses.replace(rp.store.take(state), nonce="not-the-nonce-sent"))
    with pytest.raises(OidcError, match="nonce does not match"):
        rp.finish_login(state=state, code=code)
    rp.close()


def test_bad_signature_and_symmetric_tokens_are_refused(provider: OidcProvider) -> None:
    token, nonce = raw_id_token(provider, CLIENT, ALICE)
    rp = OidcClient(oidc_config(provider))
    head, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(OidcError, match="signature does not verify"):
        rp.verify_id_token(f"{head}.{payload}.{flipped}", nonce=nonce)
    # A token "signed" with the client secret (HS256): never accepted.
    claims = {
        "iss": provider.issuer,
        "aud": CLIENT.client_id,
        "sub": "1",
        "exp": int(Clock()()) + 300,
        "iat": int(Clock()()),
        "nonce": nonce,
        "preferred_username": "admin",
    }
    forged = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT.client_secret))
    with pytest.raises(OidcError, match=r"cannot be read|refused|signature"):
        rp.verify_id_token(forged, nonce=nonce)
    rp.close()


def test_login_store_expiry_on_the_injected_clock() -> None:
    clock = Clock()
    store = LoginStore(clock)
    now = clock()
    store.put(PendingLogin("s1", "n", "v" * 43, now, now + 10))
    clock.advance(10)
    with pytest.raises(OidcError, match="the login expired"):
        store.take("s1")
    with pytest.raises(OidcError, match="unknown or already used"):
        store.take("s1")
    store.put(PendingLogin("s2", "n", "v" * 43, clock(), clock() + 10))
    clock.advance(11)
    store.put(PendingLogin("s3", "n", "v" * 43, clock(), clock() + 10))
    assert len(store) == 1  # the expired one was swept


def test_discovery_must_name_the_configured_issuer(provider: OidcProvider) -> None:
    rp = OidcClient(dataclasses.replace(oidc_config(provider), issuer=provider.issuer + "/"))
    with pytest.raises(OidcError, match="names issuer"):
        rp.start_login()
    rp.close()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"issuer": "http://idp.example/x", "client_id": "a"}, "oidc.issuer"),
        ({"issuer": "https://idp.example", "redirect_uri": "https://a/cb"}, "oidc.client_id"),
        (
            {"issuer": "https://i", "client_id": "a", "redirect_uri": "http://pp.example/cb"},
            "oidc.redirect_uri",
        ),
        (
            {"issuer": "https://i", "client_id": "a", "redirect_uri": "https://a", "scopes": ["x"]},
            "oidc.scopes",
        ),
        ({"client_secret": 5}, "oidc.client_secret"),
        ({"isuer": "https://i"}, "oidc.isuer"),
    ],
)
def test_oidc_config_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(configmod.ConfigError) as err:
        configmod.parse({"oidc": section})
    assert str(err.value).startswith(key)
    assert configmod.parse({}).oidc.issuer == ""  # empty issuer: single sign-on off


def test_secrets_are_never_logged(
    env: Env, served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    browser = requests.Session()
    form = browser.get(f"{served.base}{PREFIX}/sso/login", timeout=10)
    binding = browser.cookies.get(identity_api.BINDING_COOKIE)
    done = browser.get(
        follow_to_callback(browser, sign_in_at_provider(browser, form, ALICE)), timeout=10
    )
    assert done.status_code == 200
    assert identity_api.BINDING_COOKIE not in browser.cookies  # used up
    assert CLIENT.client_secret not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pullprint"))
    assert "single sign-on login verified for alice" in ours
    _state, code = callback_params(done.url)
    for secret in (done.json()["token"], code, binding):
        assert secret and secret not in ours
