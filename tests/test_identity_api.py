"""Who is who, through the real cloud server process: password sign-in and sessions, roles (user,
operator, admin), my PIN and cards, terminals bound to a printer with card / PIN / username
sign-in, lockout after wrong secrets. Sessions' expiry is tested on an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from pullprint.cloud import db
from pullprint.cloud.sessions import SessionBook, TerminalBook
from pullprint.cloud.users import UserDirectory, UserRole
from pullprint.cloudsync.client import CloudClient
from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import held_job, start_cloud

CARD_HEX = "04:A3:B2:C1"
CARD_DECIMAL = str(int("04a3b2c1", 16))  # the same card as a keyboard-wedge reader types it
CARD_REVERSED = "C1B2A304"  # the same UID in the other byte order


class Api:
    """Plain HTTP calls to the cloud with one bearer token (or none)."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = f"{url}/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, self.url + path, json=body, headers=self.headers, timeout=10
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        assert answer.status_code < 300, (answer.status_code, answer.text)
        return answer.json() if answer.content else None


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("identity"), "sqlite", lockout_failures=5)
    try:
        admin = Api(server.url, server.admin_token)
        for name, role in (("carol", "user"), ("olga", "operator"), ("adam", "admin")):
            admin.ok("PUT", f"/users/{name}", {"role": role, "password": f"{name}-secret-1"})
        admin.ok("PUT", "/users/alice", {"password": "alice-secret-1", "pin": "1234"})
        yield server
    finally:
        server.stop()


def sign_in(cloud: CloudServer, name: str) -> Api:
    answer = Api(cloud.url).ok("POST", "/sessions", {"name": name, "password": f"{name}-secret-1"})
    assert answer["user"] == name and answer["token"].startswith("pps_")
    return Api(cloud.url, answer["token"])


@pytest.fixture
def node2(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.node_client("node2") as client:
        yield client


def test_password_sign_in_me_and_sign_out(cloud: CloudServer) -> None:
    alice = sign_in(cloud, "alice")
    me = alice.ok("GET", "/me")
    assert me["name"] == "alice" and me["role"] == "user" and me["has_pin"]
    assert "hash" not in str(me)
    wrong = Api(cloud.url).call("POST", "/sessions", {"name": "alice", "password": "nope-nope"})
    assert wrong.status_code == 403 and "wrong user name or password" in wrong.json()["detail"]
    unknown = Api(cloud.url).call("POST", "/sessions", {"name": "zed", "password": "whatever1"})
    assert unknown.status_code == 403  # the same answer as a wrong password
    assert alice.call("DELETE", "/sessions/current").status_code == 204
    gone = alice.call("GET", "/me")
    assert gone.status_code == 401 and "sign in" in gone.json()["detail"]


def test_users_see_and_act_on_their_own_and_delegated_jobs(
    cloud: CloudServer, node2: CloudClient, tmp_path: Path
) -> None:
    alice, carol, olga = sign_in(cloud, "alice"), sign_in(cloud, "carol"), sign_in(cloud, "olga")
    job, _ = held_job(node2, tmp_path, owner="alice")
    bob_job, _ = held_job(node2, tmp_path, owner="bob")
    mine = {j["uuid"] for j in alice.ok("GET", "/jobs")["jobs"]}
    assert job.uuid in mine and bob_job.uuid not in mine
    assert alice.call("GET", "/jobs?user=bob").status_code == 403
    assert alice.call("GET", f"/jobs/{bob_job.uuid}").status_code == 403
    assert carol.call("GET", f"/jobs/{job.uuid}").status_code == 403
    # alice lets carol release her jobs: carol sees it and may release it, not cancel it
    alice.ok("PUT", "/users/alice/delegations", {"kind": "user", "delegate": "carol"})
    assert (
        carol.call(
            "PUT", "/users/bob/delegations", {"kind": "user", "delegate": "carol"}
        ).status_code
        == 403
    )
    assert job.uuid in {j["uuid"] for j in carol.ok("GET", "/jobs")["jobs"]}
    assert carol.call("POST", f"/jobs/{job.uuid}/cancel", {}).status_code == 403
    released = carol.ok("POST", f"/jobs/{job.uuid}/release", {"printer": "printer1"})
    assert released["state"] == "released" and released["released_by"] == "carol"
    # an operator sees every job and releases any without a PIN
    assert bob_job.uuid in {j["uuid"] for j in olga.ok("GET", "/jobs")["jobs"]}
    done = olga.ok("POST", f"/jobs/{bob_job.uuid}/release", {"printer": "printer1"})
    assert done["state"] == "released" and done["released_by"] == "operator olga"
    # the owner cancels their own job; a session cannot act as someone else
    own, _ = held_job(node2, tmp_path, owner="alice")
    spoof = alice.ok("POST", f"/jobs/{own.uuid}/release", {"printer": "printer1", "user": "bob"})
    assert spoof["released_by"] == "alice"
    other, _ = held_job(node2, tmp_path, owner="alice")
    assert alice.ok("POST", f"/jobs/{other.uuid}/cancel", {})["state"] == "canceled"
    alice.ok("DELETE", "/users/alice/delegations/user/carol")


def test_roles_change_at_once_and_disabled_users_are_out(cloud: CloudServer) -> None:
    admin = Api(cloud.url, cloud.admin_token)
    admin.ok("PUT", "/users/dora", {"password": "dora-secret-1"})
    dora = sign_in(cloud, "dora")
    assert dora.call("GET", "/users").json()["users"][0]["name"] == "dora"
    assert dora.call("PUT", "/users/dora", {"role": "admin"}).status_code == 403
    admin.ok("PUT", "/users/dora", {"role": "operator"})
    assert len(dora.ok("GET", "/users")["users"]) > 1  # operators see every user
    admin.ok("PUT", "/users/dora", {"disabled": True})
    assert dora.call("GET", "/me").status_code == 401
    again = Api(cloud.url).call("POST", "/sessions", {"name": "dora", "password": "dora-secret-1"})
    assert again.status_code == 403


def test_my_pin_password_and_card_with_admin_approval(cloud: CloudServer) -> None:
    admin = Api(cloud.url, cloud.admin_token)
    carol = sign_in(cloud, "carol")
    assert (
        carol.call("PUT", "/me/pin", {"pin": "12"}).json()["detail"] == "pin must be 4 to 8 digits"
    )
    assert carol.call("PUT", "/me/pin", {"pin": "4321"}).status_code == 204
    assert admin.ok("GET", "/users/carol")["has_pin"]
    bad = carol.call("PUT", "/me/password", {"current": "not-it-at-all", "new": "x" * 12})
    assert bad.status_code == 403
    other_device = sign_in(cloud, "carol")
    changed = carol.call(
        "PUT", "/me/password", {"current": "carol-secret-1", "new": "carol-secret-2"}
    )
    assert changed.status_code == 204
    assert other_device.call("GET", "/me").status_code == 401  # other sessions end
    assert carol.call("GET", "/me").status_code == 200  # this one stays
    admin.ok("PUT", "/users/carol", {"password": "carol-secret-1"})
    carol = sign_in(cloud, "carol")  # an admin's reset ended every session
    card = carol.ok("POST", "/me/cards", {"card": CARD_HEX})
    assert card == {"key": card["key"], "source": "self", "approved": False}
    terminal = admin.ok(
        "POST", "/terminals", {"name": "kiosk-carol", "printer": "printer1", "methods": ["card"]}
    )
    at_kiosk = Api(cloud.url, terminal["token"])
    pending = at_kiosk.call("POST", "/terminal/sign-in", {"card": CARD_DECIMAL})
    assert pending.status_code == 403 and "not yet approved" in pending.json()["detail"]
    admin.ok("POST", f"/cards/{card['key']}/approve")
    for form in (CARD_HEX, CARD_DECIMAL, CARD_REVERSED):
        session = at_kiosk.ok("POST", "/terminal/sign-in", {"card": form})
        assert session["user"] == "carol"
    # another user cannot take carol's card
    alice = sign_in(cloud, "alice")
    assert alice.call("POST", "/me/cards", {"card": CARD_DECIMAL}).status_code == 409
    assert carol.call("DELETE", f"/me/cards/{card['key']}").status_code == 204


def test_terminals_are_bound_to_their_printer_and_their_methods(
    cloud: CloudServer, node2: CloudClient, tmp_path: Path
) -> None:
    admin = Api(cloud.url, cloud.admin_token)
    pin_kiosk = Api(
        cloud.url,
        admin.ok(
            "POST",
            "/terminals",
            {"name": "kiosk-1", "printer": "printer1", "methods": ["pin", "username"]},
        )["token"],
    )
    assert (
        admin.call(
            "POST", "/terminals", {"name": "kiosk-x", "printer": "nope", "methods": ["pin"]}
        ).status_code
        == 404
    )
    assert "alice" in pin_kiosk.ok("GET", "/terminal/users")["users"]
    by_card = pin_kiosk.call("POST", "/terminal/sign-in", {"card": CARD_HEX})
    assert (
        by_card.status_code == 403 and "does not allow sign-in by card" in by_card.json()["detail"]
    )
    session = pin_kiosk.ok("POST", "/terminal/sign-in", {"user": "alice", "pin": "1234"})
    at_printer = Api(cloud.url, session["token"])
    me = at_printer.ok("GET", "/me")
    assert me["terminal"] == "kiosk-1" and me["printer"] == "printer1"
    job, _ = held_job(node2, tmp_path, owner="alice")
    elsewhere = at_printer.call("POST", f"/jobs/{job.uuid}/release", {"printer": "printer2"})
    assert elsewhere.status_code == 403 and "only to printer printer1" in elsewhere.json()["detail"]
    assert at_printer.call("PUT", "/me/pin", {"pin": "9999"}).status_code == 403
    assert (
        at_printer.ok("POST", f"/jobs/{job.uuid}/release", {"printer": "printer1"})["state"]
        == "released"
    )
    # a terminal authenticates users only at its own printer, and is no admin
    assert (
        pin_kiosk.call(
            "POST", "/printers/printer2/authenticate", {"user": "alice", "pin": "1234"}
        ).status_code
        == 403
    )
    assert pin_kiosk.call("GET", "/jobs").status_code == 403
    assert (
        pin_kiosk.call("POST", "/terminals", {"name": "t", "printer": "printer1"}).status_code
        == 403
    )
    listed = admin.ok("GET", "/terminals")["terminals"]
    assert {"name": "kiosk-1", "printer": "printer1", "methods": ["pin", "username"]} in listed
    assert "token" not in str(listed)
    assert admin.call("DELETE", "/terminals/kiosk-1").status_code == 204
    assert pin_kiosk.call("GET", "/terminal/users").status_code == 401
    assert at_printer.call("GET", "/me").status_code == 401  # its sessions end with it


def test_five_wrong_pins_lock_the_user_and_are_logged(cloud: CloudServer) -> None:
    admin = Api(cloud.url, cloud.admin_token)
    admin.ok("PUT", "/users/erin", {"pin": "2468", "password": "erin-secret-1"})
    kiosk = Api(
        cloud.url,
        admin.ok(
            "POST", "/terminals", {"name": "kiosk-lock", "printer": "printer1", "methods": ["pin"]}
        )["token"],
    )
    for _ in range(5):
        wrong = kiosk.call("POST", "/terminal/sign-in", {"user": "erin", "pin": "0000"})
        assert wrong.status_code == 403
    locked = kiosk.call("POST", "/terminal/sign-in", {"user": "erin", "pin": "2468"})
    assert locked.status_code == 423 and "locked for 900 more seconds" in locked.json()["detail"]
    password = Api(cloud.url).call(
        "POST", "/sessions", {"name": "erin", "password": "erin-secret-1"}
    )
    assert password.status_code == 423
    log = cloud.log_path.read_text(errors="replace")
    assert "lockout: user erin locked" in log
    assert "2468" not in log and "erin-secret-1" not in log


def test_sessions_expire_on_the_clock(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.upgrade(engine)
    now = [1000.0]
    sessions = SessionBook(engine, 3600, 120, clock=lambda: now[0])
    token = sessions.open("alice")
    at_kiosk = sessions.open("alice", "terminal", "kiosk-1")
    assert sessions.resolve(token) is not None and sessions.resolve(at_kiosk) is not None
    now[0] += 121
    assert sessions.resolve(at_kiosk) is None  # the kiosk's auto sign-out
    assert sessions.resolve(token) is not None
    now[0] += 3600
    assert sessions.resolve(token) is None
    assert sessions.sweep() == 2
    with engine.connect() as conn:
        stored = conn.execute(sa.select(db.user_sessions.c.token_hash)).scalars().all()
    assert stored == [] and token not in str(stored)
    terminals = TerminalBook(engine)
    secret = terminals.add("t1", "printer1", ("card",))
    assert terminals.resolve(secret) is not None
    assert terminals.resolve(secret[:-2] + "xx") is None
    users = UserDirectory(engine)
    users.add("op", None, password="op-secret-1", role=UserRole.OPERATOR)
    assert users.verify_password("op", "op-secret-1") and not users.verify("op", "1234")
    assert users.upsert("op", source="ldap") is False and users.get("op").role is UserRole.OPERATOR
