"""A real OpenID Connect provider for tests: django-oidc-provider, run as a subprocess on loopback.

``OidcProvider(clients, users)`` starts ``python -m pullprint.peers.oidc_provider`` in a fresh temp
folder: a minimal Django site (SQLite, sessions, CSRF, ``django.contrib.auth``'s login form at
``/accounts/login/``) with django-oidc-provider at ``/openid/`` (discovery, authorize, token,
userinfo, JWKS), a fresh 2048-bit RSA key (RS256 ID tokens), the given confidential clients and
users (password login; ``groups`` become Django groups and a ``groups`` claim). It listens on
``http://127.0.0.1:PORT`` only; the issuer is ``http://127.0.0.1:PORT/openid``. ``stop()`` ends
it and removes the folder. The provider is an independent implementation (not Authlib, which
the client side uses). Anything that goes wrong raises RuntimeError with its log: tests fail,
never skip. Client secrets and passwords are passed in a 0600 file, never on the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from pullprint.peers.ports import free_port, stop_process

log = logging.getLogger(__name__)

LOGIN_TEMPLATE = """<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in</h1>
{% if form.errors %}<p class="error">Wrong user name or password.</p>{% endif %}
<form method="post" action="{{ request.path }}">
{% csrf_token %}
<label>User name <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password"></label>
<input type="hidden" name="next" value="{{ next }}">
<input type="submit" value="Sign in">
</form></body></html>
"""


@dataclass(frozen=True)
class ProviderClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class ProviderUser:
    username: str
    password: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: tuple[str, ...] = field(default=())


class OidcProvider:
    """One django-oidc-provider site on http://127.0.0.1:``port``."""

    def __init__(
        self,
        clients: Sequence[ProviderClient],
        users: Sequence[ProviderUser],
        id_token_seconds: int = 600,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/openid"
        self.folder = Path(tempfile.mkdtemp(prefix="pullprint-oidc-"))
        self.log_path = self.folder / "provider.log"
        self._spec = {
            "clients": [asdict(c) for c in clients],
            "users": [asdict(u) for u in users],
            "id_token_seconds": id_token_seconds,
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OidcProvider:
        """Write the spec, start the provider and wait until discovery answers."""
        self.folder.chmod(0o700)
        spec = self.folder / "spec.json"
        spec.write_text(json.dumps(self._spec), encoding="utf-8")
        spec.chmod(0o600)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pullprint.peers.oidc_provider",
                    "--dir",
                    str(self.folder),
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        url = f"{self.issuer}/.well-known/openid-configuration"
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the OIDC provider exited ({self._proc.returncode}):\n{self.log_tail()}"
                )
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the OIDC provider did not answer {url}:\n{self.log_tail()}")
            time.sleep(0.1)
        log.info("OIDC provider up, issuer %s", self.issuer)
        return self

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after 10 s) and remove its folder."""
        proc, self._proc = self._proc, None
        stop_process(proc, "the OIDC provider", 10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OidcProvider:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- inside the provider process ---------------------------------------------------------------


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    """OIDC_USERINFO: the standard claims of a Django user."""
    claims["preferred_username"] = user.username
    claims["name"] = f"{user.first_name} {user.last_name}".strip()
    claims["given_name"] = user.first_name
    claims["family_name"] = user.last_name
    claims["email"] = user.email
    claims["email_verified"] = bool(user.email)
    return claims


def idtoken_hook(id_token: dict[str, Any], user: Any, **_kwargs: Any) -> dict[str, Any]:
    """OIDC_IDTOKEN_PROCESSING_HOOK: the user's Django groups as a ``groups`` claim."""
    id_token["groups"] = sorted(g.name for g in user.groups.all())
    id_token.setdefault("preferred_username", user.username)
    return id_token


def __getattr__(name: str) -> Any:
    """ROOT_URLCONF is this module: ``urlpatterns`` is built on first use, inside Django."""
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.contrib.auth import views as auth_views
    from django.urls import include, path

    return [
        path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
        path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
    ]


def _configure(folder: Path, port: int, id_token_seconds: int) -> None:
    import django
    from django.conf import settings

    templates = folder / "templates"
    (templates / "registration").mkdir(parents=True, exist_ok=True)
    (templates / "registration" / "login.html").write_text(LOGIN_TEMPLATE, encoding="utf-8")
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oidc_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(templates)],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                    ]
                },
            }
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(folder / "provider.sqlite3"),
            }
        },
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
        LOGIN_URL="/accounts/login/",
        SITE_URL=f"http://127.0.0.1:{port}",
        OIDC_USERINFO=f"{__name__}.userinfo",
        OIDC_IDTOKEN_PROCESSING_HOOK=f"{__name__}.idtoken_hook",
        OIDC_IDTOKEN_INCLUDE_CLAIMS=True,
        OIDC_IDTOKEN_EXPIRE=id_token_seconds,
        LOGGING={
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "root": {"handlers": ["console"], "level": "WARNING"},
        },
    )
    django.setup()


def _load(spec: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType, RSAKey

    call_command("migrate", verbosity=0, interactive=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    RSAKey.objects.create(key=pem)
    code, _ = ResponseType.objects.get_or_create(value="code", defaults={"description": "code"})
    for c in spec["clients"]:
        client = Client.objects.create(
            name=c["client_id"],
            client_type="confidential",
            client_id=c["client_id"],
            client_secret=c["client_secret"],
            jwt_alg="RS256",
            require_consent=False,
            reuse_consent=True,
            _redirect_uris="\n".join(c["redirect_uris"]),
        )
        client.response_types.add(code)
    for u in spec["users"]:
        user = User.objects.create_user(
            u["username"],
            email=u["email"],
            password=u["password"],
            first_name=u["first_name"],
            last_name=u["last_name"],
        )
        for name in u["groups"]:
            user.groups.add(Group.objects.get_or_create(name=name)[0])


def serve(argv: Sequence[str] | None = None) -> int:
    """The provider process: configure Django, load the spec, serve until SIGTERM."""
    import signal
    import socketserver
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    parser = argparse.ArgumentParser(prog="pullprint.peers.oidc_provider")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    spec = json.loads((args.dir / "spec.json").read_text(encoding="utf-8"))
    (args.dir / "spec.json").unlink()
    _configure(args.dir, args.port, int(spec["id_token_seconds"]))
    _load(spec)

    from django.core.wsgi import get_wsgi_application

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write("provider: " + (format % args) + "\n")

    httpd = make_server(
        "127.0.0.1",
        args.port,
        get_wsgi_application(),
        server_class=Server,
        handler_class=Quiet,
    )
    # shutdown() waits for serve_forever to stop, so it runs in another thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
