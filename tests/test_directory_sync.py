"""Directory sync against a real slapd (Debian's) started here: users, groups, cards, PINs;
changes, removals (disabled, not deleted), card forms, the schedule on an injected clock, the
on-demand endpoint and CLI. A missing slapd fails these tests; nothing is skipped."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from pullprint import cli
from pullprint import config as configmod
from pullprint.cloud import identity_api
from pullprint.cloud.app import PREFIX, create_app
from pullprint.cloud.auth import Principal, Role
from pullprint.cloud.context import Cloud
from pullprint.cloud.db import jobs, transactions
from pullprint.config import CloudConfig, DirectoryConfig, NodeConfig, OidcConfig
from pullprint.identity.cards import card_key
from pullprint.identity.directory import (
    DirectoryError,
    DirectorySync,
    SyncResult,
    apply_snapshot,
    read_directory,
)
from pullprint.model import JobSubmission
from pullprint.peers import slapd as ldap
from pullprint.peers.ports import free_port

ADMIN_TOKEN = "admin-token-for-directory-tests"
NODE_TOKEN = "node1-token-for-directory-tests"
CARD_HEX = "04:A3:B2:C1"
CARD_DEC = str(int("04a3b2c1", 16))  # the same card typed by a decimal reader
CARD_REVERSED = "C1B2A304"  # the same card, other byte order


def people() -> str:
    """Five people (more than the sync account's size limit of 3: only paging reads them
    all), a groupOfNames and a posixGroup."""
    return "\n".join(
        [
            ldap.person_ldif("alice", "Alice Archer", "alice@pullprint.test", CARD_HEX, "1234"),
            ldap.person_ldif("bob", "Bob Baker", "bob@pullprint.test", "77640305"),
            ldap.person_ldif("carol", "Carol Cole", "carol@pullprint.test", pin="12"),  # bad PIN
            ldap.person_ldif("dave", "Dave Dunn", "dave@pullprint.test", "0x0badcafe", "987654"),
            ldap.person_ldif("erin", "Erin Ekker", ""),
            ldap.group_of_names_ldif("staff", ["alice", "bob", "dave"]),
            ldap.posix_group_ldif("printroom", 5000, ["carol", "erin", "nobody"]),
        ]
    )


class Clock:
    """Real time plus an offset the test moves by hand (no sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def directory() -> Iterator[ldap.Slapd]:
    server = ldap.Slapd()
    try:
        server.start(people())
        yield server
    finally:
        server.stop()


def dir_config(server: ldap.Slapd, **overrides: object) -> DirectoryConfig:
    cfg = DirectoryConfig(
        url=server.url,
        bind_dn=server.sync_dn,
        bind_password=server.sync_password,
        base_dn=server.suffix,
        group_base=ldap.GROUPS,
        card_attribute="employeeNumber",
        pin_attribute="departmentNumber",
        page_size=2,
        sync_seconds=600,
    )
    return dataclasses.replace(cfg, **overrides)  # type: ignore[arg-type]


@dataclass
class Env:
    app: FastAPI
    cloud: Cloud
    clock: Clock
    folder: Path


def make_env(
    folder: Path,
    directory: DirectoryConfig = DirectoryConfig(),
    oidc: OidcConfig = OidcConfig(),
    clock: Clock | None = None,
) -> Env:
    """The cloud app (SQLite) with the identity router included and configured, as app.py
    will once it includes it."""
    clock = clock or Clock()
    config = CloudConfig(
        database_url=f"sqlite:///{folder / 'cloud.db'}",
        storage_dir=folder / "documents",
        pin_key_file=folder / "pin.key",
        admin_token=ADMIN_TOKEN,
        node_tokens={"node1": NODE_TOKEN},
    )
    app = create_app(config, clock=clock)
    if not any(getattr(r, "path", "") == f"{PREFIX}/directory/sync" for r in app.routes):
        app.include_router(identity_api.router, prefix=PREFIX)
    identity_api.configure(app, directory, oidc, clock=clock)
    cloud = app.state.cloud
    assert isinstance(cloud, Cloud)
    return Env(app, cloud, clock, folder)


@pytest.fixture
def env(tmp_path: Path, directory: ldap.Slapd) -> Iterator[Env]:
    made = make_env(tmp_path, dir_config(directory))
    yield made
    made.cloud.engine.dispose()


class Served:
    """Serve an app with uvicorn in a thread on a free loopback port (its lifespan runs)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                access_log=False,  # as the server runs it (request lines are not kept)
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the cloud app did not start serving")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the cloud app did not stop"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``check`` (bounded) for what a background task does."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sync(env: Env, server: ldap.Slapd, **overrides: object) -> SyncResult:
    snapshot = read_directory(dir_config(server, **overrides))
    return apply_snapshot(env.cloud.users, env.cloud.groups, snapshot)


def register_job(cloud: Cloud, owner: str) -> str:
    job_uuid = str(uuidlib.uuid4())
    sub = JobSubmission(
        uuid=job_uuid,
        owner=owner,
        title="report.pdf",
        copies=1,
        options={},
        pages=2,
        size=4,
        sha256="0" * 64,
        queue="PullPrint",
        origin="node1",
        cups_job_id=7,
        cups_job_uuid=f"urn:uuid:{uuidlib.uuid4()}",
    )
    cloud.jobs.register(Principal(Role.NODE, "node1"), sub)
    return job_uuid


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"url": "http://127.0.0.1:389", "base_dn": "dc=x"}, "directory.url"),
        ({"url": "ldap://127.0.0.1:389"}, "directory.base_dn"),
        ({"url": "ldap://h", "base_dn": "dc=x", "user_filter": "uid=*"}, "directory.user_filter"),
        ({"url": "ldap://h", "base_dn": "dc=x", "page_size": 0}, "directory.page_size"),
        ({"sync_seconds": "hourly"}, "directory.sync_seconds"),
        ({"bind_pasword": "x"}, "directory.bind_pasword"),
    ],
)
def test_directory_config_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(configmod.ConfigError) as err:
        configmod.parse({"directory": section})
    assert str(err.value).startswith(key)


def test_directory_config_empty_url_is_off(tmp_path: Path) -> None:
    cfg = configmod.parse({"directory": {"sync_seconds": 60}})
    assert cfg.directory.url == "" and cfg.directory.sync_seconds == 60
    env = make_env(tmp_path, cfg.directory)
    with Served(env.app) as served:
        answer = requests.post(
            f"{served.base}{PREFIX}/directory/sync",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
    assert answer.status_code == 404
    assert "not configured" in answer.json()["detail"]


# -- reading and applying ----------------------------------------------------------------------


def test_first_sync_adds_users_groups_and_cards(env: Env, directory: ldap.Slapd) -> None:
    snapshot = read_directory(dir_config(directory))
    # Paged: the sync account gets at most 3 entries from one plain search, and there are 5.
    assert [u.name for u in snapshot.users] == ["alice", "bob", "carol", "dave", "erin"]
    assert len(snapshot.users) > ldap.SOFT_SIZE_LIMIT
    alice = snapshot.user("alice")
    assert (alice.display_name, alice.email, alice.pin) == (
        "Alice Archer",
        "alice@pullprint.test",
        "1234",
    )
    assert alice.cards == (card_key(CARD_HEX),)
    assert alice.groups == ("staff",)
    assert snapshot.user("carol").pin is None  # "12" is no PIN
    assert any("PIN left out" in why and "12" not in why.split(":")[-1] for why in snapshot.skipped)
    assert {g.name: g.members for g in snapshot.groups} == {
        "printroom": ("carol", "erin"),  # posixGroup memberUid; "nobody" is not a user
        "staff": ("alice", "bob", "dave"),  # groupOfNames member DNs
    }

    result = apply_snapshot(env.cloud.users, env.cloud.groups, snapshot)
    assert result.added == ("alice", "bob", "carol", "dave", "erin")
    assert result.updated == () and result.disabled == ()
    assert result.groups == ("printroom", "staff")
    users = env.cloud.users
    stored = users.get("alice")
    assert (stored.source, stored.display_name, stored.email) == (
        "ldap",
        "Alice Archer",
        "alice@pullprint.test",
    )
    assert users.verify("alice", "1234")
    assert not users.get("carol").has_pin
    assert users.by_card(card_key(CARD_HEX)) == "alice"
    assert users.by_card(card_key("77640305")) == "bob"
    assert users.by_card(card_key("0BADCAFE")) == "dave"
    assert env.cloud.groups.members("staff") == ["alice", "bob", "dave"]
    assert env.cloud.groups.members("printroom") == ["carol", "erin"]
    assert users.names(source="ldap") == ["alice", "bob", "carol", "dave", "erin"]

    again = apply_snapshot(env.cloud.users, env.cloud.groups, read_directory(dir_config(directory)))
    assert (again.added, again.updated, again.disabled) == ((), (), ())
    assert again.unchanged == 5


def test_changed_attributes_update(env: Env, directory: ldap.Slapd) -> None:
    sync(env, directory)
    directory.modify(
        f"""dn: uid=bob,{ldap.PEOPLE}
changetype: modify
replace: mail
mail: robert@pullprint.test
-
replace: cn
cn: Robert Baker
-
replace: departmentNumber
departmentNumber: 24680

dn: cn=staff,{ldap.GROUPS}
changetype: modify
delete: member
member: uid=dave,{ldap.PEOPLE}
"""
    )
    result = sync(env, directory)
    assert result.updated == ("bob",)
    assert result.added == () and result.disabled == ()
    bob = env.cloud.users.get("bob")
    assert (bob.display_name, bob.email) == ("Robert Baker", "robert@pullprint.test")
    assert env.cloud.users.verify("bob", "24680")
    assert env.cloud.groups.members("staff") == ["alice", "bob"]


def test_removed_user_is_disabled_not_deleted(env: Env, directory: ldap.Slapd) -> None:
    sync(env, directory)
    job = register_job(env.cloud, "dave")
    directory.modify(f"dn: uid=dave,{ldap.PEOPLE}\nchangetype: delete\n")
    result = sync(env, directory)
    assert result.disabled == ("dave",)
    dave = env.cloud.users.get("dave")
    assert dave.disabled and dave.source == "ldap"
    assert env.cloud.users.role_of("dave") is None  # cannot sign in or release
    assert env.cloud.users.by_card(card_key("0BADCAFE")) is None
    assert not env.cloud.users.verify("dave", "987654")
    with env.cloud.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.uuid).where(jobs.c.owner == "dave")).all() != []
        assert conn.execute(sa.select(transactions).where(transactions.c.job_uuid == job)).all(), (
            "the job's transaction must stay"
        )
    assert sync(env, directory).disabled == ()  # already disabled: nothing to do

    entry = ldap.person_ldif("dave", "Dave Dunn", "dave@pullprint.test", "0x0badcafe")
    directory.modify(entry.replace("\n", "\nchangetype: add\n", 1))
    back = sync(env, directory)
    assert back.updated == ("dave",)
    assert env.cloud.users.role_of("dave") is not None
    assert env.cloud.users.by_card(card_key("0BADCAFE")) == "dave"


def test_card_in_hex_or_decimal_is_one_key(env: Env, directory: ldap.Slapd) -> None:
    assert card_key(CARD_HEX) == card_key(CARD_DEC) == card_key(CARD_REVERSED)
    sync(env, directory)
    for typed in (CARD_DEC, CARD_REVERSED):
        directory.modify(
            f"dn: uid=alice,{ldap.PEOPLE}\nchangetype: modify\n"
            f"replace: employeeNumber\nemployeeNumber: {typed}\n"
        )
        result = sync(env, directory)
        assert result.updated == (), f"{typed} is the card alice already has"
        assert env.cloud.users.by_card(card_key(CARD_HEX)) == "alice"
    cards = env.cloud.users.get("alice").cards
    assert [(c.key, c.source) for c in cards] == [(card_key(CARD_HEX), "ldap")]


def test_local_user_of_the_same_name_is_not_taken_over(env: Env, directory: ldap.Slapd) -> None:
    env.cloud.users.add("erin", "4321")
    result = sync(env, directory)
    assert "erin" not in result.added + result.updated
    assert any(s.startswith("erin: a local user") for s in result.skipped)
    erin = env.cloud.users.get("erin")
    assert erin.source == "local" and env.cloud.users.verify("erin", "4321")


def test_empty_answer_disables_nobody(env: Env, directory: ldap.Slapd) -> None:
    sync(env, directory)
    with pytest.raises(DirectoryError, match="refusing to disable the 5 users"):
        sync(env, directory, user_filter="(uid=no-such-user)")
    assert all(not env.cloud.users.get(n).disabled for n in env.cloud.users.names("ldap"))


def test_wrong_password_is_a_clear_error_and_never_logged(
    env: Env, directory: ldap.Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Pass-" + directory.sync_password
    with pytest.raises(DirectoryError, match="cannot bind as cn=sync") as err:
        read_directory(dir_config(directory, bind_password=wrong))
    assert wrong not in str(err.value)
    sync(env, directory)
    assert directory.sync_password not in caplog.text
    assert wrong not in caplog.text
    assert "1234" not in caplog.text and "987654" not in caplog.text  # PINs neither


def test_unreachable_directory_is_a_clear_error(directory: ldap.Slapd) -> None:
    cfg = dir_config(directory, url=f"ldap://127.0.0.1:{free_port()}", timeout_seconds=2.0)
    with pytest.raises(DirectoryError, match="cannot bind"):
        read_directory(cfg)


# -- schedule, endpoint, CLI -------------------------------------------------------------------


def test_scheduled_sync_runs_on_the_injected_clock(env: Env, directory: ldap.Slapd) -> None:
    clock = Clock()
    scheduler = DirectorySync(dir_config(directory), env.cloud.users, env.cloud.groups, clock)
    first = scheduler.tick()  # due at once
    assert first is not None and len(first.added) == 5
    assert scheduler.tick() is None
    clock.advance(599)
    assert not scheduler.due() and scheduler.tick() is None
    directory.modify(
        f"dn: uid=erin,{ldap.PEOPLE}\nchangetype: modify\nreplace: mail\nmail: erin@new.test\n"
    )
    clock.advance(1)
    second = scheduler.tick()
    assert second is not None and second.updated == ("erin",)
    assert scheduler.status.runs == 2
    assert scheduler.status.next_due == pytest.approx(clock() + 600, abs=1)

    # The directory goes away: the scheduled run fails, is logged, and is retried sooner.
    directory.stop()
    clock.advance(600)
    assert scheduler.tick() is None
    assert "cannot bind" in scheduler.status.last_error
    assert scheduler.status.next_due == pytest.approx(clock() + 60, abs=1)
    assert scheduler.status.last_result == second

    off_cfg = dir_config(directory, sync_seconds=0)
    off = DirectorySync(off_cfg, env.cloud.users, env.cloud.groups, clock)
    assert not off.due() and off.tick() is None  # on demand only


def test_served_app_runs_the_schedule(
    tmp_path: Path, directory: ldap.Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity_api, "TICK_SECONDS", 0.05)
    env = make_env(tmp_path, dir_config(directory, sync_seconds=3600))
    sync_state = env.app.state.identity.directory
    assert isinstance(sync_state, DirectorySync)
    with Served(env.app):
        wait_for(lambda: sync_state.status.runs == 1, "the first scheduled sync")
        assert env.cloud.users.names("ldap") == ["alice", "bob", "carol", "dave", "erin"]
        directory.modify(f"dn: uid=carol,{ldap.PEOPLE}\nchangetype: delete\n")
        assert not sync_state.due()  # not due yet on the injected clock
        assert sync_state.status.runs == 1
        env.clock.advance(3600)
        wait_for(lambda: sync_state.status.runs == 2, "the next scheduled sync")
    assert sync_state.status.last_result is not None
    assert sync_state.status.last_result.disabled == ("carol",), sync_state.status
    env.cloud.engine.dispose()


def test_sync_endpoint_is_admin_only_and_cli_runs_it(
    tmp_path: Path, directory: ldap.Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    env = make_env(tmp_path, dir_config(directory, sync_seconds=0))
    with Served(env.app) as served:
        url = f"{served.base}{PREFIX}/directory/sync"
        assert requests.post(url, timeout=10).status_code == 401
        env.cloud.users.add("viewer", "1111")
        user_token = env.cloud.sessions.open("viewer")
        refused = requests.post(url, headers={"Authorization": f"Bearer {user_token}"}, timeout=10)
        assert refused.status_code == 403
        node = requests.post(url, headers={"Authorization": f"Bearer {NODE_TOKEN}"}, timeout=10)
        assert node.status_code == 403

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = requests.post(url, headers=admin, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["added"] == ["alice", "bob", "carol", "dave", "erin"]
        status = requests.get(url, headers=admin, timeout=10).json()
        assert status["runs"] == 1 and status["last_error"] == ""

        directory.modify(f"dn: uid=bob,{ldap.PEOPLE}\nchangetype: delete\n")
        cfg_path = tmp_path / "pullprint.toml"
        cfg_path.write_text(
            configmod.dump(
                configmod.Config(
                    cloud=CloudConfig(admin_token=ADMIN_TOKEN),
                    node=NodeConfig(cloud_url=served.base),
                )
            )
        )
        code = cli.main(["--config", str(cfg_path), "admin", "directory-sync", "--json"])
        out = capsys.readouterr().out
        assert code == cli.EXIT_OK, out
        assert json.loads(out)["disabled"] == ["bob"]
        assert cli.main(["--config", str(cfg_path), "admin", "directory-sync"]) == cli.EXIT_OK
        assert "0 added, 0 updated, 0 disabled, 4 unchanged" in capsys.readouterr().out

        directory.stop()
        failed = requests.post(url, headers=admin, timeout=30)
        assert failed.status_code == 502 and "cannot bind" in failed.json()["detail"]
        assert directory.sync_password not in failed.text
    env.cloud.engine.dispose()


# -- TLS ---------------------------------------------------------------------------------------


def test_ldaps_and_starttls_check_the_certificate() -> None:
    with ldap.Slapd(tls=True) as server:
        server.start(people())
        cfg = dir_config(server, url=server.ldaps_url, tls_ca_file=str(server.ca_file))
        assert len(read_directory(cfg).users) == 5
        starttls = dataclasses.replace(cfg, url=server.url, start_tls=True)
        assert len(read_directory(starttls).users) == 5
        # Without the private CA (system CAs only), neither is trusted.
        for untrusted in (
            dataclasses.replace(cfg, tls_ca_file=""),
            dataclasses.replace(starttls, tls_ca_file=""),
        ):
            with pytest.raises(DirectoryError, match="certificate verify failed"):
                read_directory(untrusted)
    with ldap.Slapd(tls=True, cert_host="127.0.0.2") as other:
        other.start(people())
        cfg = dir_config(other, url=other.ldaps_url, tls_ca_file=str(other.ca_file))
        with pytest.raises(DirectoryError, match="doesn't match any name"):
            read_directory(cfg)  # a certificate for another host


def test_a_cleartext_bind_is_warned_about(
    env: Env, directory: ldap.Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    remote = dir_config(directory, url="ldap://ldap.example.org")
    DirectorySync(remote, env.cloud.users, env.cloud.groups)
    assert "sends the bind password unencrypted" in caplog.text
    assert directory.sync_password not in caplog.text
    caplog.clear()
    for fine in (
        dir_config(directory),  # loopback
        dataclasses.replace(remote, start_tls=True),
        dataclasses.replace(remote, url="ldaps://ldap.example.org"),
    ):
        DirectorySync(fine, env.cloud.users, env.cloud.groups)
    assert "unencrypted" not in caplog.text


def test_a_directory_attribute_names_the_cups_user(env: Env, directory: ldap.Slapd) -> None:
    """Issue 3: a CUPS job's user name is mapped through a directory attribute: alice's entry
    also has uid AArcher (her login on the Windows desktops); a job printed as that name is
    alice's. Aliases follow the directory on the next sync."""
    directory.modify(f"dn: uid=alice,{ldap.PEOPLE}\nchangetype: modify\nadd: uid\nuid: AArcher\n")
    sync(env, directory, alias_attribute="uid")
    assert env.cloud.users.resolve("aarcher") == "alice"
    assert env.cloud.users.resolve("AArcher") == "alice"
    assert env.cloud.users.resolve("bob") == "bob"  # a user's own name wins
    job_uuid = register_job(env.cloud, "AArcher")
    with env.cloud.engine.connect() as conn:
        owner = conn.execute(sa.select(jobs.c.owner).where(jobs.c.uuid == job_uuid)).scalar()
        tx_user = conn.execute(
            sa.select(transactions.c.user).where(transactions.c.job_uuid == job_uuid)
        ).scalar()
    assert (owner, tx_user) == ("alice", "alice")
    directory.modify(
        f"dn: uid=alice,{ldap.PEOPLE}\nchangetype: modify\ndelete: uid\nuid: AArcher\n"
    )
    sync(env, directory, alias_attribute="uid")
    assert env.cloud.users.resolve("aarcher") is None
