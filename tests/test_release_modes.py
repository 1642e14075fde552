"""Release against the real server on SQLite and PostgreSQL: the modes (hold, direct, fast,
automatic) per queue and printer, release changes checked strictly and kept with the job,
delegation to users and groups with the account charged, and Find-Me claims by several nodes."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from pullprint.cloudsync.client import AdminClient, CloudClient
from pullprint.errors import Conflict, Forbidden, InvalidRequest, NotFound
from pullprint.model import EventKind, JobState, Printer
from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import (
    DATABASES,
    PINS,
    PRICE,
    cursor_now,
    events_for,
    held_job,
    make_document,
    start_cloud,
    submission,
)

NODES = ("node1", "node2", "node3")


@pytest.fixture(scope="module", params=DATABASES)
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("release"), str(request.param), node_names=NODES)
    try:
        with server.admin_client() as admin:
            admin.add_printer(Printer("printer3", "ipp://127.0.0.1:3/ipp/print", "node3", PRICE))
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(cloud: CloudServer) -> Iterator[AdminClient]:
    with cloud.admin_client() as client:
        yield client


@pytest.fixture
def node1(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.node_client("node1") as client:
        yield client


def new_user(admin: AdminClient, pin: str = "2468") -> str:
    name = f"u{uuidlib.uuid4().hex[:10]}"
    admin.add_user(name, pin)
    return name


def test_hold_is_the_default_and_lists_jobs(
    admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    user = new_user(admin)
    job, _ = held_job(node1, tmp_path, owner=user, origin="node1")
    released, still = admin.authenticate("printer1", user, "2468")
    assert released == [] and [j.uuid for j in still] == [job.uuid]
    assert admin.get_job(job.uuid).state is JobState.HELD
    with pytest.raises(Forbidden, match="wrong PIN"):
        admin.authenticate("printer1", user, "0000")
    with pytest.raises(NotFound, match="no printer"):
        admin.authenticate("nowhere", user, "2468")


def test_direct_mode_prints_where_the_owner_authenticates_in_time(
    cloud: CloudServer, admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    admin.set_release_mode("printer", "printer3", "direct", direct_seconds=1)
    user = new_user(admin)
    old, _ = held_job(node1, tmp_path, owner=user, origin="node1")
    time.sleep(1.2)  # older than the printer's 1 s window
    new, _ = held_job(node1, tmp_path, owner=user, origin="node1")
    with cloud.node_client("node3") as node3:
        start = cursor_now(node3)
        released, still = admin.authenticate("printer3", user, "2468")
        assert [j.uuid for j in released] == [new.uuid]
        assert [j.uuid for j in still] == [old.uuid]
        assert released[0].printer == "printer3" and released[0].released_by == user
        found = events_for(node3, start, new.uuid)
        assert [e.kind for e in found] == [EventKind.RELEASED]
        assert node3.claim(new.uuid).state is JobState.CLAIMED


def test_fast_mode_releases_all_held_jobs_with_their_own_options(
    admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    policy = admin.set_release_mode("printer", "printer2", "fast")
    assert policy["mode"] == "fast" and policy["scope"] == "printer"
    user = new_user(admin)
    jobs = [held_job(node1, tmp_path, owner=user, origin="node1")[0] for _ in range(3)]
    released, still = admin.authenticate("printer2", user, "2468")
    assert sorted(j.uuid for j in released) == sorted(j.uuid for j in jobs) and still == []
    for job in released:
        assert job.state is JobState.RELEASED and job.printer == "printer2"
        assert job.release_options == {}  # their own options
        assert job.options == {"sides": "two-sided-long-edge"}
    # The terminal's "release all" does the same at a hold printer.
    other = new_user(admin)
    a, _ = held_job(node1, tmp_path, owner=other, origin="node1")
    b, _ = held_job(node1, tmp_path, owner=other, origin="node1")
    released, still = admin.authenticate("printer1", other, "2468", release_all=True)
    assert sorted(j.uuid for j in released) == sorted([a.uuid, b.uuid]) and still == []


def test_queue_modes_direct_fast(admin: AdminClient, node1: CloudClient, tmp_path: Path) -> None:
    admin.set_release_mode("queue", "FastQueue", "fast")
    user = new_user(admin)
    doc = make_document(tmp_path)
    sub = submission(doc, owner=user, origin="node1")
    from pullprint.model import JobSubmission

    sub = JobSubmission(**{**sub.to_json(), "queue": "FastQueue"})
    node1.register(sub)
    node1.upload_document(sub.uuid, doc)
    plain, _ = held_job(node1, tmp_path, owner=user, origin="node1")  # queue PullPrint: hold
    released, still = admin.authenticate("printer1", user, "2468")
    assert [j.uuid for j in released] == [sub.uuid]
    assert [j.uuid for j in still] == [plain.uuid]


def test_automatic_queue_never_holds(
    cloud: CloudServer, admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    admin.set_release_mode("queue", "Auto", "automatic", printer="printer1")
    doc = make_document(tmp_path)
    from pullprint.model import JobSubmission

    sub = JobSubmission(**{**submission(doc, origin="node1").to_json(), "queue": "Auto"})
    start = cursor_now(node1)
    assert node1.register(sub).state is JobState.HELD  # until its document is here
    node1.upload_document(sub.uuid, doc)
    job = admin.get_job(sub.uuid)
    assert job.state is JobState.RELEASED and job.printer == "printer1"
    assert "automatically" in job.state_reason
    assert [e.kind for e in events_for(node1, start, sub.uuid)] == [EventKind.RELEASED]


def test_release_mode_validation(cloud: CloudServer, admin: AdminClient) -> None:
    with pytest.raises(InvalidRequest, match="automatic is for queues"):
        admin.set_release_mode("printer", "printer1", "automatic", printer="printer1")
    with pytest.raises(InvalidRequest, match="needs printer"):
        admin.set_release_mode("queue", "Q", "automatic")
    with pytest.raises(InvalidRequest, match="mode must be one of hold, direct, fast, automatic"):
        admin.set_release_mode("queue", "Q", "sometimes")
    with pytest.raises(InvalidRequest, match="direct_seconds must be between 1 and 3600"):
        admin.set_release_mode("queue", "Q", "direct", direct_seconds=0)
    with pytest.raises(NotFound, match="no printer nowhere"):
        admin.set_release_mode("queue", "Q", "automatic", printer="nowhere")
    with pytest.raises(NotFound, match="no printer nowhere"):
        admin.set_release_mode("printer", "nowhere", "fast")
    answer = requests.get(
        f"{cloud.url}/api/v1/release-modes",
        headers={"Authorization": f"Bearer {cloud.admin_token}"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert {"queue", "printer"} <= {p["scope"] for p in answer.json()["policies"]}


def test_release_changes_are_checked_and_kept(
    admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    job, _ = held_job(node1, tmp_path, origin="node1")
    bad = {
        "copies": ("0", "copies must be a whole number from 1 to 999"),
        "sides": ("three-sided", "sides must be one of one-sided, two-sided-long-edge"),
        "print-color-mode": ("rainbow", "print-color-mode must be one of monochrome, color"),
        "number-up": ("3", "number-up must be one of 1, 2, 4, 6, 9, 16"),
        "media-source": ("drawer", "media-source must be one of auto, main"),
        "staple": ("yes", "staple cannot be changed at release; allowed: copies"),
    }
    for key, (value, message) in bad.items():
        with pytest.raises(InvalidRequest, match=message):
            admin.release(job.uuid, "alice", PINS["alice"], "printer1", {key: value})
    assert admin.get_job(job.uuid).state is JobState.HELD
    changes = {
        "print-color-mode": "monochrome",
        "sides": "two-sided-long-edge",
        "copies": "3",
        "number-up": "2",
        "media-source": "tray-2",
    }
    start = cursor_now(node1)
    released = admin.release(job.uuid, "alice", PINS["alice"], "printer1", changes)
    assert released.release_options == changes
    assert admin.get_job(job.uuid).release_options == changes
    assert events_for(node1, start, job.uuid)[0].options == changes


def test_delegation_to_users_and_groups(
    admin: AdminClient, node1: CloudClient, tmp_path: Path
) -> None:
    owner, friend, member = new_user(admin), new_user(admin, "1357"), new_user(admin, "9753")
    job, _ = held_job(node1, tmp_path, owner=owner, origin="node1")
    with pytest.raises(Forbidden, match=f"belongs to {owner}"):
        admin.release(job.uuid, friend, "1357", "printer1")
    admin.delegate(owner, "user", friend)  # charged to the owner's personal account
    with pytest.raises(Forbidden, match="wrong PIN"):
        admin.release(job.uuid, friend, "0000", "printer1")
    with pytest.raises(Forbidden, match="chose the account"):
        admin.release(job.uuid, friend, "1357", "printer1", account="elsewhere")
    released = admin.release(job.uuid, friend, "1357", "printer1")
    assert released.released_by == friend and released.account == ""
    assert released.transaction is not None and released.transaction.account == ""

    team = f"team{uuidlib.uuid4().hex[:6]}"
    admin._json(
        "PUT", "/accounting/accounts/shared/physics", json_body={"members": [f"group:{team}"]}
    )  # accounting: the account, charged by the team's members (the owner is one)
    assert admin.put_group(team, [member, "someone", owner]) == sorted([member, "someone", owner])
    admin.delegate(owner, "group", team, account="physics")
    job2, _ = held_job(node1, tmp_path, owner=owner, origin="node1")
    released = admin.release(job2.uuid, member, "9753", "printer1")
    assert released.released_by == member and released.account == "physics"
    assert released.transaction is not None and released.transaction.account == "physics"
    # Out of the group, out of the delegation.
    admin.put_group(team, ["someone", owner])
    job3, _ = held_job(node1, tmp_path, owner=owner, origin="node1")
    with pytest.raises(Forbidden, match=f"belongs to {owner}"):
        admin.release(job3.uuid, member, "9753", "printer1")
    # The owner may charge their own release to a shared account.
    mine = admin.release(job3.uuid, owner, "2468", "printer1", account="physics")
    assert mine.account == "physics" and mine.released_by == owner


def test_group_and_delegation_admin_api(cloud: CloudServer, admin: AdminClient) -> None:
    auth = {"Authorization": f"Bearer {cloud.admin_token}"}
    base = f"{cloud.url}/api/v1"
    assert requests.get(f"{base}/groups/none", headers=auth, timeout=5).status_code == 404
    admin.put_group("g1", ["a", "b"])
    got = requests.get(f"{base}/groups/g1", headers=auth, timeout=5).json()
    assert got == {"name": "g1", "members": ["a", "b"]}
    admin.delegate("alice", "group", "g1", account="shared1")
    listed = requests.get(f"{base}/users/alice/delegations", headers=auth, timeout=5).json()
    assert {"owner": "alice", "kind": "group", "delegate": "g1", "account": "shared1"} in listed[
        "delegations"
    ]
    gone = requests.delete(f"{base}/users/alice/delegations/group/g1", headers=auth, timeout=5)
    assert gone.status_code == 204
    assert requests.delete(f"{base}/groups/g1", headers=auth, timeout=5).status_code == 204
    bad = requests.put(f"{base}/groups/g2", json={"members": "a"}, headers=auth, timeout=5)
    assert bad.status_code == 422 and "list of names" in bad.json()["detail"]
    with cloud.node_client("node1") as node:
        with pytest.raises(Forbidden, match="admin token"):
            node._json("PUT", "/groups/g3", json_body={"members": []})


def test_find_me_several_nodes_claim_at_once(cloud: CloudServer, tmp_path: Path) -> None:
    """The job goes to the printer the user picks; of many concurrent claims from every node,
    exactly one (from the printer's node) wins."""
    with cloud.node_client("node1") as node, cloud.admin_client() as admin:
        for round_ in range(3):
            job, _ = held_job(node, tmp_path, origin="node1")
            printer = f"printer{round_ + 1}"  # on node1, node2, node3 in turn
            admin.release(job.uuid, "alice", PINS["alice"], printer)

            def claim(i: int, uuid: str = job.uuid) -> str:
                with cloud.node_client(NODES[i % len(NODES)]) as client:
                    try:
                        client.claim(uuid)
                    except Conflict:
                        return "conflict"
                return f"ok:{client_name(i)}"

            with ThreadPoolExecutor(9) as pool:
                results = sorted(pool.map(claim, range(18)))
            winners = [r for r in results if r.startswith("ok")]
            assert winners == [f"ok:node{round_ + 1}"], results
            assert admin.get_job(job.uuid).state is JobState.CLAIMED


def client_name(i: int) -> str:
    return NODES[i % len(NODES)]
