"""Who may do what: every endpoint of the app's OpenAPI document, called by every kind of caller,
against the real cloud server process. The expectations are one table (MATRIX); an endpoint in
``/openapi.json`` without a row fails the test, so a new endpoint needs its row.

Callers (columns):
  own    alice, signed in (the job's owner)      del    carol, signed in (alice delegated to her)
  oth    bob, signed in (another user)           op     olga, signed in operator
  adm    the admin token                         sadm   adam, signed-in admin
  tHere  the terminal of the job's printer       tElse  a terminal of another printer
  nOrig  node1 (sent the job; prints printer1)   nOth   node2 (another node)
  anon   no Authorization header

Answers: ``ok`` a 2xx; ``no`` 403; ``401``; or the status an allowed caller gets when the state
says no (``404``, ``409``, ``422``). Each call gets fresh state from its row's setup (a new held
job, a new terminal...), so calls do not depend on each other.
"""

from __future__ import annotations

import secrets
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pullprint.cloudsync.client import CloudClient
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from tests.test_cloud_api import make_document, start_cloud, submission

# ruff: noqa: E501  (the tables below read best as one line per endpoint)

WHO = ("own", "del", "oth", "op", "adm", "sadm", "tHere", "tElse", "nOrig", "nOth", "anon")
USERS = {"own": "alice", "del": "carol", "oth": "bob", "op": "olga", "sadm": "adam"}
ROLES = {"carol": "user", "olga": "operator", "adam": "admin", "dave": "user"}
PIN = "1234"  # alice's (tests.test_cloud_api.PINS)


def password(user: str) -> str:
    return f"{user}-secret-1"


@dataclass(frozen=True)
class Call:
    """What one caller sends: the path's parameters (or a whole path and query), a body, and
    a token that replaces the caller's own (a fresh session to sign out)."""

    params: dict[str, str]
    body: Any = None
    raw_path: str = ""
    token: str | None = None


class World:
    """The cloud under test with its callers' tokens and helpers that make fresh state."""

    def __init__(self, cloud: CloudServer, folder: Path) -> None:
        self.cloud = cloud
        self.folder = folder
        self.url = cloud.url
        admin = self.api(cloud.admin_token)
        admin("PUT", "/users/alice", {"password": password("alice")})
        admin("PUT", "/users/bob", {"password": password("bob")})
        for user, role in ROLES.items():
            admin("PUT", f"/users/{user}", {"role": role, "password": password(user)})
        self.tokens: dict[str, str] = {"adm": cloud.admin_token}
        for who, user in USERS.items():
            self.tokens[who] = self.sign_in(user)
        self.api(self.tokens["own"])(
            "PUT", "/users/alice/delegations", {"kind": "user", "delegate": "carol"}
        )
        for who, printer in (("tHere", "printer1"), ("tElse", "printer2")):
            self.tokens[who] = admin(
                "POST",
                "/terminals",
                {"name": f"kiosk-{who}", "printer": printer, "methods": ["pin", "username"]},
            )["token"]
        self.tokens["nOrig"] = cloud.node_tokens["node1"]
        self.tokens["nOth"] = cloud.node_tokens["node2"]
        admin("PUT", "/groups/g1", {"members": ["alice"]})
        self.node1 = CloudClient(cloud.url, cloud.node_tokens["node1"])

    def api(self, token: str) -> Callable[..., Any]:
        def call(method: str, path: str, body: Any = None) -> Any:
            answer = requests.request(
                method,
                f"{self.url}/api/v1{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
            return answer.json() if answer.content else None

        return call

    @property
    def admin(self) -> Callable[..., Any]:
        return self.api(self.cloud.admin_token)

    def sign_in(self, user: str) -> str:
        answer = requests.post(
            f"{self.url}/api/v1/sessions",
            json={"name": user, "password": password(user)},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    # -- fresh state ------------------------------------------------------------------------

    def registered(self, owner: str = "alice") -> tuple[str, Path]:
        doc = make_document(self.folder)
        sub = submission(doc, owner=owner, origin="node1")
        self.node1.register(sub)
        return sub.uuid, doc

    def held(self, owner: str = "alice") -> str:
        job_uuid, doc = self.registered(owner)
        self.node1.upload_document(job_uuid, doc)
        return job_uuid

    def released(self) -> str:
        job_uuid = self.held()
        self.admin(
            "POST",
            f"/jobs/{job_uuid}/release",
            {"user": "alice", "pin": PIN, "printer": "printer1"},
        )
        return job_uuid

    def claimed(self) -> tuple[str, str]:
        """A job claimed by node1, with a fresh signed download URL."""
        job_uuid = self.released()
        job = self.node1.claim(job_uuid)
        assert job.download_url
        return job_uuid, job.download_url

    def pdf(self) -> bytes:
        return make_pdf(self.folder / f"{uuidlib.uuid4().hex}.pdf", 1).read_bytes()

    def card(self, user: str) -> str:
        number = secrets.token_hex(4)
        return str(self.admin("POST", f"/users/{user}/cards", {"card": number})["key"])


def new_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


# Setups: (world, caller) -> what the caller sends.
Setup = Callable[[World, str], Call]


def static(body: Any = None, **params: str) -> Setup:
    return lambda _w, _who: Call(dict(params), body)


def held_job(body: Any = None) -> Setup:
    return lambda w, _who: Call({"uuid": w.held()}, body)


def released_job(body: Any = None) -> Setup:
    return lambda w, _who: Call({"uuid": w.released()}, body)


def claimed_job(body: Any = None) -> Setup:
    return lambda w, _who: Call({"uuid": w.claimed()[0]}, body)


def download(w: World, _who: str) -> Call:
    return Call({}, raw_path=w.claimed()[1])


def new_submission(w: World, _who: str) -> Call:
    doc = make_document(w.folder)
    return Call({}, submission(doc, owner="alice", origin="node1").to_json())


def upload(w: World, _who: str) -> Call:
    job_uuid, doc = w.registered()
    return Call({"uuid": job_uuid}, doc.read_bytes())


def fresh_user(w: World, _who: str) -> Call:
    return Call({}, {"name": new_name("u"), "pin": "4321"})


def fresh_session(w: World, who: str) -> Call:
    """Sign out: a new session of the same user, so the caller's own session stays."""
    return Call({}, token=w.sign_in(USERS[who]) if who in USERS else None)


def my_password(w: World, who: str) -> Call:
    user = USERS.get(who, "alice")
    return Call({}, {"current": password(user), "new": password(user)})


def my_card_to_delete(w: World, who: str) -> Call:
    return Call({"key": w.card(USERS.get(who, "alice"))})


def pending_card(w: World, _who: str) -> Call:
    return Call({"key": w.card("dave")})


def delegation_to_delete(w: World, _who: str) -> Call:
    w.admin("PUT", "/users/alice/delegations", {"kind": "user", "delegate": "dave"})
    return Call({"owner": "alice", "kind": "user", "delegate": "dave"})


def group_to_delete(w: World, _who: str) -> Call:
    name = new_name("g")
    w.admin("PUT", f"/groups/{name}", {"members": ["bob"]})
    return Call({"name": name})


def terminal_to_delete(w: World, _who: str) -> Call:
    name = new_name("t")
    w.admin("POST", "/terminals", {"name": name, "printer": "printer1", "methods": ["pin"]})
    return Call({"name": name})


def new_terminal(w: World, _who: str) -> Call:
    return Call({}, {"name": new_name("t"), "printer": "printer1", "methods": ["card"]})


def new_group(w: World, _who: str) -> Call:
    return Call({"name": new_name("g")}, {"members": ["alice"]})


PRINTER1 = {"name": "printer1", "uri": "ipp://127.0.0.1:1/ipp/print", "node": "node1",
            "price_per_page": "0.05"}  # fmt: skip
PRICES = {"prices": [{"color": "mono", "sides": "one-sided", "price": "0.05"}]}

# fmt: off
MATRIX: dict[tuple[str, str], str] = {
    #                                                    own del oth op  adm sad tHe tEl nOr nOt ano
    ("GET",    "/health"):                              "ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    # sign-in sessions and my account: a signed-in user of any role
    ("POST",   "/sessions"):                            "ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    ("DELETE", "/sessions/current"):                    "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("GET",    "/me"):                                  "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("PUT",    "/me/pin"):                              "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("PUT",    "/me/password"):                         "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("POST",   "/me/cards"):                            "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("DELETE", "/me/cards/{key}"):                      "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    # users: the admin manages them; staff see everyone, a user only themself
    ("GET",    "/users"):                               "ok  ok  ok  ok  ok  ok  no  no  no  no  401",
    ("POST",   "/users"):                               "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/users/{name}"):                        "ok  no  no  ok  ok  ok  no  no  no  no  401",
    ("PUT",    "/users/{name}"):                        "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/users/{name}/cards"):                  "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/cards/{key}/approve"):                 "no  no  no  no  ok  ok  no  no  no  no  401",
    # delegation: the owner (alice) or the admin
    ("PUT",    "/users/{owner}/delegations"):           "ok  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/users/{owner}/delegations"):           "ok  no  no  no  ok  ok  no  no  no  no  401",
    ("DELETE", "/users/{owner}/delegations/{kind}/{delegate}"):
                                                        "ok  no  no  no  ok  ok  no  no  no  no  401",
    ("PUT",    "/groups/{name}"):                       "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/groups/{name}"):                       "no  no  no  no  ok  ok  no  no  no  no  401",
    ("DELETE", "/groups/{name}"):                       "no  no  no  no  ok  ok  no  no  no  no  401",
    # terminals: the admin registers them; a terminal signs users in
    ("GET",    "/terminals"):                           "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/terminals"):                           "no  no  no  no  ok  ok  no  no  no  no  401",
    ("DELETE", "/terminals/{name}"):                    "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/terminal/sign-in"):                    "no  no  no  no  no  no  ok  ok  no  no  401",
    ("GET",    "/terminal/users"):                      "no  no  no  no  no  no  ok  ok  no  no  401",
    # printers and release modes; authenticating a user at printer1
    ("GET",    "/printers"):                            "ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  401",
    ("POST",   "/printers"):                            "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/printers/discovered"):                 "no  no  no  no  ok  ok  no  no  no  no  401",
    ("PUT",    "/node/discovered"):                     "no  no  no  no  no  no  no  no  ok  ok  401",
    ("PUT",    "/queues/{name}/release-mode"):          "no  no  no  no  ok  ok  no  no  no  no  401",
    ("PUT",    "/printers/{name}/release-mode"):        "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/release-modes"):                       "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/printers/{name}/authenticate"):        "no  no  no  no  ok  ok  ok  no  no  no  401",
    ("POST",   "/printers/{name}/release-all"):         "no  no  no  no  ok  ok  ok  no  no  no  401",
    # one held job of alice, sent by node1 (each call gets its own)
    ("POST",   "/jobs"):                                "no  no  no  no  no  no  no  no  ok  no  401",
    ("PUT",    "/jobs/{uuid}/document"):                "no  no  no  no  no  no  no  no  ok  no  401",
    ("POST",   "/jobs/upload"):                         "ok  ok  ok  ok  no  ok  no  no  no  no  401",
    ("GET",    "/jobs"):                                "ok  ok  ok  ok  ok  ok  no  no  no  no  401",
    ("GET",    "/jobs/{uuid}"):                         "ok  ok  no  ok  ok  ok  no  no  ok  no  401",
    ("POST",   "/jobs/{uuid}/release"):                 "ok  ok  no  ok  ok  ok  no  no  no  no  401",
    ("POST",   "/jobs/{uuid}/operator-release"):        "no  no  no  no  ok  ok  no  no  ok  no  401",
    ("POST",   "/jobs/{uuid}/assign"):                  "no  no  no  ok  ok  ok  no  no  no  no  401",
    ("POST",   "/jobs/{uuid}/cancel"):                  "ok  no  no  ok  ok  ok  no  no  ok  no  401",
    # the node's side: a job released to printer1 (node1), then claimed by node1
    ("GET",    "/node/events"):                         "no  no  no  no  no  no  no  no  ok  ok  401",
    ("POST",   "/jobs/{uuid}/claim"):                   "no  no  no  no  no  no  no  no  ok  409 401",
    ("POST",   "/jobs/{uuid}/download-url"):            "no  no  no  no  no  no  no  no  ok  no  401",
    ("GET",    "/jobs/{uuid}/document"):                "no  no  no  no  no  no  no  no  ok  no  401",
    ("PUT",    "/jobs/{uuid}/finishing"):               "no  no  no  no  no  no  no  no  ok  no  401",
    ("POST",   "/jobs/{uuid}/progress"):                "no  no  no  no  no  no  no  no  ok  no  401",
    ("POST",   "/admin/retention/run"):                 "no  no  no  no  ok  ok  no  no  no  no  401",
    # accounting (docs/accounting.md); PaperCut is not configured here
    ("PUT",    "/accounting/printers/{printer}/prices"):
                                                        "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/accounting/printers/{printer}/prices"):
                                                        "no  no  no  no  ok  ok  no  no  ok  ok  401",
    ("PUT",    "/accounting/accounts/{kind}/{name}"):   "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/accounting/accounts/{kind}/{name}"):   "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/accounting/accounts/{kind}/{name}/adjust"):
                                                        "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/accounting/printouts/{uuid}"):         "no  no  no  no  ok  ok  no  no  no  no  401",
    ("POST",   "/accounting/jobs/{uuid}/counters"):     "no  no  no  no  no  no  no  no  ok  no  401",
    ("GET",    "/accounting/transactions"):             "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/accounting/reports"):                  "no  no  no  no  ok  ok  no  no  no  no  401",
    ("GET",    "/accounting/papercut"):                 "no  no  no  no  404 404 no  no  no  no  401",
    ("PUT",    "/accounting/papercut"):                 "no  no  no  no  422 422 no  no  no  no  401",
    ("POST",   "/accounting/papercut/sync"):            "no  no  no  no  ok  ok  no  no  no  no  401",
    # directory sync and single sign-on: not configured here, so 404 for whoever may call
    ("POST",   "/directory/sync"):                      "no  no  no  no  404 404 no  no  no  no  401",
    ("GET",    "/directory/sync"):                      "no  no  no  no  404 404 no  no  no  no  401",
    ("GET",    "/sso/login"):                           "404 404 404 404 404 404 404 404 404 404 404",
    ("GET",    "/sso/callback"):                        "404 404 404 404 404 404 404 404 404 404 404",
}

# What each call sends (fresh state where a call changes it); a row not here sends nothing.
SETUPS: dict[tuple[str, str], Setup] = {
    ("POST",   "/sessions"):                      static({"name": "dave", "password": password("dave")}),
    ("DELETE", "/sessions/current"):              fresh_session,
    ("PUT",    "/me/pin"):                        static({"pin": PIN}),
    ("PUT",    "/me/password"):                   my_password,
    ("POST",   "/me/cards"):                      lambda _w, _who: Call({}, {"card": secrets.token_hex(4)}),
    ("DELETE", "/me/cards/{key}"):                my_card_to_delete,
    ("POST",   "/users"):                         fresh_user,
    ("GET",    "/users/{name}"):                  static(name="alice"),
    ("PUT",    "/users/{name}"):                  static({"display_name": "Alice"}, name="alice"),
    ("POST",   "/users/{name}/cards"):            lambda _w, _who: Call({"name": "dave"}, {"card": secrets.token_hex(4)}),
    ("POST",   "/cards/{key}/approve"):           pending_card,
    ("PUT",    "/users/{owner}/delegations"):     static({"kind": "user", "delegate": "dave"}, owner="alice"),
    ("GET",    "/users/{owner}/delegations"):     static(owner="alice"),
    ("DELETE", "/users/{owner}/delegations/{kind}/{delegate}"): delegation_to_delete,
    ("PUT",    "/groups/{name}"):                 new_group,
    ("GET",    "/groups/{name}"):                 static(name="g1"),
    ("DELETE", "/groups/{name}"):                 group_to_delete,
    ("POST",   "/terminals"):                     new_terminal,
    ("DELETE", "/terminals/{name}"):              terminal_to_delete,
    ("POST",   "/terminal/sign-in"):              static({"user": "alice", "pin": PIN}),
    ("POST",   "/printers"):                      static(PRINTER1),
    ("GET",    "/printers/discovered"):           static(),
    ("PUT",    "/node/discovered"):               static({"printers": [{"name": "Lobby", "uri": "ipp://127.0.0.1:1/ipp/print"}]}),
    ("PUT",    "/queues/{name}/release-mode"):    static({"mode": "hold"}, name="PullPrint"),
    ("PUT",    "/printers/{name}/release-mode"):  static({"mode": "hold"}, name="printer2"),
    ("POST",   "/printers/{name}/authenticate"):  static({"user": "alice", "pin": PIN}, name="printer1"),
    ("POST",   "/printers/{name}/release-all"):   static({"user": "alice", "pin": PIN}, name="printer1"),
    ("POST",   "/jobs"):                          new_submission,
    ("PUT",    "/jobs/{uuid}/document"):          upload,
    ("POST",   "/jobs/upload"):                   lambda w, _who: Call({}, w.pdf()),
    ("GET",    "/jobs/{uuid}"):                   held_job(),
    ("POST",   "/jobs/{uuid}/release"):           held_job({"printer": "printer1", "user": "alice", "pin": PIN}),
    ("POST",   "/jobs/{uuid}/operator-release"):  held_job({"printer": "printer1", "operator": "olga"}),
    ("POST",   "/jobs/{uuid}/assign"):            held_job({"owner": "bob"}),
    ("POST",   "/jobs/{uuid}/cancel"):            held_job({}),
    ("GET",    "/node/events"):                   lambda _w, _who: Call({}, raw_path=f"{PREFIX}/node/events?timeout=0"),
    ("POST",   "/jobs/{uuid}/claim"):             released_job({}),
    ("POST",   "/jobs/{uuid}/download-url"):      claimed_job({}),
    ("GET",    "/jobs/{uuid}/document"):          download,
    ("PUT",    "/jobs/{uuid}/finishing"):         claimed_job({"steps": [{"option": "sides", "value": "one-sided", "where": "printer", "how": "sides"}]}),
    ("POST",   "/jobs/{uuid}/progress"):          claimed_job({"state": "printing"}),
    ("POST",   "/admin/retention/run"):           static({}),
    ("PUT",    "/accounting/printers/{printer}/prices"): static(PRICES, printer="printer2"),
    ("GET",    "/accounting/printers/{printer}/prices"): static(printer="printer1"),
    ("PUT",    "/accounting/accounts/{kind}/{name}"):    static({"enforced": False}, kind="personal", name="alice"),
    ("GET",    "/accounting/accounts/{kind}/{name}"):    static(kind="personal", name="alice"),
    ("POST",   "/accounting/accounts/{kind}/{name}/adjust"): static({"amount": "1.00"}, kind="personal", name="alice"),
    ("GET",    "/accounting/printouts/{uuid}"):   released_job(),
    ("POST",   "/accounting/jobs/{uuid}/counters"): claimed_job({"snmp_delta": 1}),
    ("PUT",    "/accounting/papercut"):           static({}),
    ("POST",   "/accounting/papercut/sync"):      static({}),
    ("POST",   "/directory/sync"):                static({}),
}
# fmt: on

PREFIX = "/api/v1"


def expected(row: str) -> dict[str, str]:
    cells = row.split()
    assert len(cells) == len(WHO), row
    return dict(zip(WHO, cells, strict=True))


def matches(cell: str, status: int) -> bool:
    if cell == "ok":
        return 200 <= status < 300
    if cell == "no":
        return status == 403
    return status == int(cell)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("matrix")
    server = start_cloud(folder, "sqlite", long_poll_seconds=1.0)
    try:
        yield World(server, folder)
    finally:
        server.stop()


def documented(world: World) -> set[tuple[str, str]]:
    """Every (method, path) of the server's OpenAPI document, paths without the prefix."""
    doc = requests.get(f"{world.url}/openapi.json", timeout=10).json()
    return {
        (method.upper(), path.removeprefix(PREFIX))
        for path, methods in doc["paths"].items()
        for method in methods
    }


def test_every_endpoint_has_a_row(world: World) -> None:
    missing = documented(world) - set(MATRIX)
    assert missing == set(), f"endpoints without a row in MATRIX: {sorted(missing)}"
    assert set(SETUPS) <= set(MATRIX)


def test_who_may_do_what(world: World) -> None:
    wrong: list[str] = []
    served = documented(world)
    for (method, path), row in MATRIX.items():
        if (method, path) not in served:
            continue  # a row kept for a router not included in this app
        setup = SETUPS.get((method, path), static())
        for who, cell in expected(row).items():
            call = setup(world, who)
            target = call.raw_path or PREFIX + path.format(**call.params)
            token = call.token if call.token is not None else world.tokens.get(who, "")
            headers = {"Authorization": f"Bearer {token}"} if who != "anon" else {}
            kwargs: dict[str, Any] = {}
            if isinstance(call.body, bytes):
                kwargs["data"] = call.body
                headers["Content-Type"] = "application/octet-stream"
            elif call.body is not None:
                kwargs["json"] = call.body
            answer = requests.request(
                method, world.url + target, headers=headers, timeout=15, **kwargs
            )
            if not matches(cell, answer.status_code):
                wrong.append(
                    f"{method} {path} as {who}: expected {cell}, got {answer.status_code} "
                    f"{answer.text[:160]}"
                )
    assert not wrong, "\n".join(wrong)
    log = world.cloud.log_path.read_text(errors="replace")
    assert "Traceback" not in log


def test_the_anonymous_are_told_to_authenticate(world: World) -> None:
    answer = requests.get(f"{world.url}{PREFIX}/jobs", timeout=10)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_user_at_a_terminal_acts_only_there(world: World) -> None:
    """The session a terminal opens is bound to its printer and cannot change the account."""
    session = requests.post(
        f"{world.url}{PREFIX}/terminal/sign-in",
        json={"user": "alice", "pin": PIN},
        headers={"Authorization": f"Bearer {world.tokens['tHere']}"},
        timeout=10,
    ).json()["token"]
    headers = {"Authorization": f"Bearer {session}"}
    job_uuid = world.held()
    elsewhere = requests.post(
        f"{world.url}{PREFIX}/jobs/{job_uuid}/release",
        json={"printer": "printer2"},
        headers=headers,
        timeout=10,
    )
    assert elsewhere.status_code == 403
    for method, path, body in (
        ("PUT", "/me/pin", {"pin": "5555"}),
        ("PUT", "/me/password", {"current": password("alice"), "new": "x" * 12}),
        ("POST", "/me/cards", {"card": secrets.token_hex(4)}),
        ("PUT", "/users/alice/delegations", {"kind": "user", "delegate": "bob"}),
    ):
        answer = requests.request(
            method, f"{world.url}{PREFIX}{path}", json=body, headers=headers, timeout=10
        )
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    world.admin("PUT", "/users/olga", {"role": "operator", "pin": "2468"})
    operator_there = requests.post(
        f"{world.url}{PREFIX}/terminal/sign-in",
        json={"user": "olga", "pin": "2468"},
        headers={"Authorization": f"Bearer {world.tokens['tHere']}"},
        timeout=10,
    ).json()["token"]
    assign = requests.post(
        f"{world.url}{PREFIX}/jobs/{job_uuid}/assign",
        json={"owner": "bob"},
        headers={"Authorization": f"Bearer {operator_there}"},
        timeout=10,
    )
    assert assign.status_code == 403, assign.text  # an admin's action, not a kiosk's
    here = requests.post(
        f"{world.url}{PREFIX}/jobs/{job_uuid}/release",
        json={"printer": "printer1"},
        headers=headers,
        timeout=10,
    )
    assert here.status_code == 200, here.text
    assert uuidlib.UUID(here.json()["uuid"])
