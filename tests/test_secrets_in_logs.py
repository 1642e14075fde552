"""Secrets never reach logs, and tokens and sessions expire.

The first test runs the whole stack (cupsd with the backend, the cloud and the node as processes):
password sign-ins (right and wrong), PIN releases (right and wrong), terminal sign-ins by PIN,
card and name, a terminal-session release, node traffic (register, upload, claim, signed
download, progress) and an admin password reset; then it reads every log (cloud, node, cupsd)
for every PIN, password, card and token used: none is there.

The second drives the API of an app built in this process on an injected clock (served by
uvicorn on loopback) and moves the clock instead of sleeping: sessions and terminal sessions end
on time, a lockout ends on time, a disabled user or a password reset ends the sessions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from pullprint.cloud.app import create_app
from pullprint.cloud.context import Cloud
from pullprint.config import CloudConfig
from pullprint.cups.jobs import CupsJobState
from pullprint.identity.cards import card_key
from pullprint.model import JobState, Printer
from pullprint.peers.documents import make_pdf
from pullprint.peers.ports import free_port, wait_listening
from pullprint.peers.stack import Stack

PINS = {"alice": "57319468", "bob": "64028135"}
PASSWORDS = {"alice": "Alice-Pass-7Qz!x", "olga": "Olga-Pass-3Wv#k"}
WRONG = {"pin": "90817263", "password": "Wrong-Pass-5Ty$u"}
CARD = "5A6B7C8D"  # as the reader types it
STRANGER = "0F1E2D3C"  # a card no one has


class Api:
    def __init__(self, url: str, token: str = "") -> None:
        self.url = f"{url}/api/v1"
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.request(method, self.url + path, json=body, headers=headers, timeout=15)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None


def print_held(stack: Stack, folder: Path, name: str) -> tuple[int, str]:
    assert stack.cups is not None
    cups_job = stack.cups.lp(make_pdf(folder / f"{name}.pdf", 1), user="alice", title=name)
    stack.cups.wait_job(cups_job, {CupsJobState.HELD})
    return cups_job, stack.wait_cloud_job("alice", cups_job).uuid


def test_no_secret_in_any_log(world_dir: Path) -> None:
    with Stack(world_dir / "stack", users=dict(PINS)) as stack:
        assert stack.cups is not None
        admin = Api(stack.cloud.url, stack.cloud.admin_token)
        admin.ok("PUT", "/users/alice", {"password": PASSWORDS["alice"]})
        admin.ok("PUT", "/users/olga", {"role": "operator", "password": PASSWORDS["olga"]})
        secrets_used = [
            *PINS.values(),
            *PASSWORDS.values(),
            *WRONG.values(),
            CARD,
            card_key(CARD),
            STRANGER,
            card_key(STRANGER),
            stack.cloud.admin_token,
            *stack.cloud.node_tokens.values(),
        ]

        # password sign-ins, right and wrong
        anonymous = Api(stack.cloud.url)
        wrong = anonymous.call(
            "POST", "/sessions", {"name": "alice", "password": WRONG["password"]}
        )
        assert wrong.status_code == 403
        session = anonymous.ok(
            "POST", "/sessions", {"name": "alice", "password": PASSWORDS["alice"]}
        )["token"]
        olga = anonymous.ok("POST", "/sessions", {"name": "olga", "password": PASSWORDS["olga"]})
        secrets_used += [session, olga["token"]]
        alice = Api(stack.cloud.url, session)
        alice.ok("GET", "/me")
        alice.ok("POST", "/me/cards", {"card": CARD})

        # a PIN release from the command line (wrong, then right): node traffic to the end
        _, first = print_held(stack, world_dir, "first")
        bad = stack.cli("release", first, "--printer", "printer1", "--user", "alice",
                        "--pin", WRONG["pin"])  # fmt: skip
        assert bad.returncode == 3
        good = stack.cli("release", first, "--printer", "printer1", "--user", "alice",
                         "--pin", PINS["alice"])  # fmt: skip
        assert good.returncode == 0, good.stderr
        assert stack.wait_state(first, {JobState.COMPLETED, JobState.FAILED}).state is (
            JobState.COMPLETED
        )

        # a terminal: sign-in by PIN, by card (pending, then approved), by name; release there
        terminal = admin.ok(
            "POST",
            "/terminals",
            {"name": "kiosk-1", "printer": "printer1", "methods": ["card", "pin", "username"]},
        )["token"]
        secrets_used.append(terminal)
        kiosk = Api(stack.cloud.url, terminal)
        assert kiosk.call("POST", "/terminal/sign-in", {"card": CARD}).status_code == 403
        for _ in range(5):  # the fifth locks the unknown card's count, and says so in the log
            assert kiosk.call("POST", "/terminal/sign-in", {"card": STRANGER}).status_code == 403
        admin.ok("POST", f"/cards/{card_key(CARD)}/approve")
        by_card = kiosk.ok("POST", "/terminal/sign-in", {"card": CARD})["token"]
        by_name = kiosk.ok("POST", "/terminal/sign-in", {"user": "bob"})["token"]
        assert kiosk.call(
            "POST", "/terminal/sign-in", {"user": "alice", "pin": WRONG["pin"]}
        ).status_code == 403  # fmt: skip
        by_pin = kiosk.ok("POST", "/terminal/sign-in", {"user": "alice", "pin": PINS["alice"]})
        secrets_used += [by_card, by_name, by_pin["token"]]
        _, second = print_held(stack, world_dir, "second")
        Api(stack.cloud.url, by_pin["token"]).ok(
            "POST", f"/jobs/{second}/release", {"printer": "printer1"}
        )
        assert stack.wait_state(second, {JobState.COMPLETED, JobState.FAILED}).state is (
            JobState.COMPLETED
        )
        # a PIN at the printer (admin token), a PIN change, an admin's password reset
        _, third = print_held(stack, world_dir, "third")
        kiosk.ok("POST", "/printers/printer1/release-all", {"user": "alice", "pin": PINS["alice"]})
        stack.wait_state(third, {JobState.COMPLETED})
        alice.ok("PUT", "/me/pin", {"pin": PINS["alice"]})
        admin.ok("PUT", "/users/alice", {"password": PASSWORDS["alice"]})
        assert alice.call("GET", "/me").status_code == 401  # the reset ended the session

    logs = {
        "cloud": stack.cloud.log_path,
        "node": stack.root / "node.log",
        "cupsd": stack.cups.error_log,
    }
    for where, path in logs.items():
        text = path.read_text(errors="replace")
        assert text, f"the {where} log is empty"
        found = [s for s in secrets_used if s in text]
        assert found == [], f"secrets in the {where} log {path}: {found}"
        assert not re.search(r"[?&]sig=", text), f"a signed download URL in the {where} log"
    cloud_log = logs["cloud"].read_text()
    assert "signed in at terminal kiosk-1" in cloud_log  # the events are logged, not the secrets
    assert "released job" in cloud_log
    assert "lockout: user card:" in cloud_log  # the unknown card's lock, by a digest


# -- expiry on an injected clock ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class InProcess:
    """The app of ``create_app`` on ``clock``, served by uvicorn in a thread on loopback."""

    def __init__(self, folder: Path, clock: Clock) -> None:
        config = CloudConfig(
            database_url=f"sqlite:///{folder / 'cloud.db'}",
            storage_dir=folder / "documents",
            pin_key_file=folder / "pin.key",
            admin_token="admin-token-on-the-clock",
            node_tokens={"node1": "node1-token-on-the-clock"},
            session_seconds=3600,
            terminal_session_seconds=120,
            lockout_failures=3,
            lockout_seconds=600,
        )
        self.app = create_app(config, clock=clock)
        cloud = self.app.state.cloud
        assert isinstance(cloud, Cloud)
        self.cloud = cloud
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InProcess:
        self.thread.start()
        wait_listening(self.port, timeout=15)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.cloud.engine.dispose()


@pytest.fixture
def on_the_clock(tmp_path: Path) -> Iterator[tuple[InProcess, Clock]]:
    clock = Clock()
    with InProcess(tmp_path, clock) as served:
        served.cloud.printers.upsert(
            Printer("printer1", "ipp://127.0.0.1:1/ipp/print", "node1", Decimal("0.05"))
        )
        admin = Api(served.url, "admin-token-on-the-clock")
        admin.ok("PUT", "/users/alice", {"password": PASSWORDS["alice"], "pin": PINS["alice"]})
        yield served, clock


def sign_in(served: InProcess) -> Api:
    answer = Api(served.url).ok(
        "POST", "/sessions", {"name": "alice", "password": PASSWORDS["alice"]}
    )
    return Api(served.url, answer["token"])


def test_sessions_and_terminal_sessions_end_on_the_clock(
    on_the_clock: tuple[InProcess, Clock],
) -> None:
    served, clock = on_the_clock
    admin = Api(served.url, "admin-token-on-the-clock")
    started = clock.now
    answer = Api(served.url).ok(
        "POST", "/sessions", {"name": "alice", "password": PASSWORDS["alice"]}
    )
    assert answer["expires_at"] == pytest.approx(started + 3600)
    web = Api(served.url, answer["token"])
    terminal = admin.ok(
        "POST", "/terminals", {"name": "kiosk-1", "printer": "printer1", "methods": ["pin"]}
    )["token"]
    kiosk = Api(served.url, terminal)
    at_kiosk = Api(
        served.url,
        kiosk.ok("POST", "/terminal/sign-in", {"user": "alice", "pin": PINS["alice"]})["token"],
    )
    clock.now = started + 119
    assert at_kiosk.call("GET", "/me").status_code == 200
    clock.now = started + 121  # the kiosk's automatic sign-out
    gone = at_kiosk.call("GET", "/me")
    assert gone.status_code == 401 and "sign in" in gone.json()["detail"]
    assert web.call("GET", "/me").status_code == 200
    assert kiosk.call("GET", "/terminal/users").status_code == 403  # the terminal itself stays
    clock.now = started + 3599
    assert web.call("GET", "/me").status_code == 200
    clock.now = started + 3601
    assert web.call("GET", "/me").status_code == 401
    assert served.cloud.sessions.sweep() == 2  # both rows are gone, not only refused
    # the admin token and node tokens do not expire: they are configuration, replaced there
    assert admin.call("GET", "/users").status_code == 200


def test_a_lockout_ends_on_the_clock(on_the_clock: tuple[InProcess, Clock]) -> None:
    served, clock = on_the_clock
    anonymous = Api(served.url)
    for _ in range(3):
        wrong = anonymous.call(
            "POST", "/sessions", {"name": "alice", "password": WRONG["password"]}
        )
        assert wrong.status_code == 403
    right = {"name": "alice", "password": PASSWORDS["alice"]}
    locked = anonymous.call("POST", "/sessions", right)
    assert locked.status_code == 423 and "600 more seconds" in locked.json()["detail"]
    clock.now += 599
    assert anonymous.call("POST", "/sessions", right).status_code == 423
    clock.now += 2
    assert anonymous.call("POST", "/sessions", right).status_code == 201


def test_disabling_or_resetting_ends_the_sessions(on_the_clock: tuple[InProcess, Clock]) -> None:
    served, _ = on_the_clock
    admin = Api(served.url, "admin-token-on-the-clock")
    first = sign_in(served)
    admin.ok("PUT", "/users/alice", {"password": PASSWORDS["alice"]})  # an admin's reset
    assert first.call("GET", "/me").status_code == 401
    second = sign_in(served)
    admin.ok("PUT", "/users/alice", {"display_name": "Alice"})  # other changes keep it
    assert second.call("GET", "/me").status_code == 200
    admin.ok("PUT", "/users/alice", {"disabled": True})
    assert second.call("GET", "/me").status_code == 401
