"""The cloud release service against its real server subprocess (CloudServer) and the real
client: registration, documents, release with PIN, long-poll events, claim, download, ledger,
cancel, authorization, and a restart that keeps the data. Every test runs twice: on SQLite and
on PostgreSQL (a private server started from Debian's binaries; the run fails if it cannot start).

The helpers here (``make_document``, ``submission``, ``held_job``, ``start_cloud``...) are shared
by the other ``test_cloud_*``, ``test_release_*`` and ``test_documents_*`` modules."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from pullprint.cloud import db
from pullprint.cloudsync.client import AdminClient, CloudClient
from pullprint.errors import (
    CloudUnavailable,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from pullprint.model import (
    EventKind,
    Job,
    JobState,
    JobSubmission,
    NodeEvent,
    Printer,
    TransactionStatus,
)
from pullprint.peers import postgres
from pullprint.peers.cloud import CloudServer

log = logging.getLogger(__name__)

PRICE = Decimal("0.05")
PINS = {"alice": "1234", "bob": "56789"}


DATABASES = ("sqlite", "postgresql")


def database_url(kind: str, folder: Path) -> str:
    """A fresh database of ``kind``: a SQLite file in ``folder``, or a new database on the
    shared private PostgreSQL server (started on first use; failing to start fails the test)."""
    if kind == "postgresql":
        return postgres.shared().create_database()
    return f"sqlite:///{folder / 'cloud.db'}"


def start_cloud(
    folder: Path, kind: str, node_names: tuple[str, ...] = ("node1", "node2"), **overrides: Any
) -> CloudServer:
    """A started CloudServer on a fresh database of ``kind`` with alice, bob, printer1 (node1)
    and printer2 (node2). The caller stops it."""
    overrides.setdefault("long_poll_seconds", 10.0)
    server = CloudServer(
        folder, node_names=node_names, database_url=database_url(kind, folder), **overrides
    )
    server.start()
    try:
        with server.admin_client() as admin:
            for name, pin in PINS.items():
                admin.add_user(name, pin)
            admin.add_printer(Printer("printer1", "ipp://127.0.0.1:1/ipp/print", "node1", PRICE))
            admin.add_printer(Printer("printer2", "ipp://127.0.0.1:2/ipp/print", "node2", PRICE))
    except BaseException:
        server.stop()
        raise
    return server


def stored_files(cloud: CloudServer, uuid: str) -> list[Path]:
    """Every file of job ``uuid`` left in the cloud's storage folder (finished or partial)."""
    return sorted(p for p in cloud.storage_dir.rglob("*") if uuid in p.name)


@pytest.fixture(scope="module", params=DATABASES)
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"), str(request.param))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.admin_client() as client:
        yield client


@pytest.fixture
def node1(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.node_client("node1") as client:
        yield client


@pytest.fixture
def node2(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.node_client("node2") as client:
        yield client


def make_document(folder: Path, size: int = 20_000) -> Path:
    path = folder / f"doc-{uuidlib.uuid4().hex}.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(size))
    return path


def submission(
    doc: Path, owner: str = "alice", origin: str = "node2", pages: int = 3, copies: int = 2
) -> JobSubmission:
    data = doc.read_bytes()
    return JobSubmission(
        uuid=str(uuidlib.uuid4()),
        owner=owner,
        title="report.pdf",
        copies=copies,
        options={"sides": "two-sided-long-edge"},
        pages=pages,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        queue="PullPrint",
        origin=origin,
        cups_job_id=42,
        cups_job_uuid=f"urn:uuid:{uuidlib.uuid4()}",
    )


def held_job(node: CloudClient, folder: Path, **kwargs: object) -> tuple[Job, Path]:
    doc = make_document(folder)
    sub = submission(doc, **kwargs)  # type: ignore[arg-type]
    job = node.register(sub)
    node.upload_document(sub.uuid, doc)
    return job, doc


def cursor_now(node: CloudClient) -> int:
    cursor = 0
    while True:
        found, cursor = node.events(cursor, 0)
        if not found:
            return cursor


def events_for(node: CloudClient, after: int, uuid: str) -> list[NodeEvent]:
    found, _ = node.events(after, 2.0)
    return [e for e in found if e.job_uuid == uuid]


class Poll(threading.Thread):
    """One long-poll in a thread, noting when it returned."""

    def __init__(self, node: CloudClient, after: int) -> None:
        super().__init__()
        self.node, self.after = node, after
        self.events: list[NodeEvent] = []
        self.cursor = -1
        self.returned_at = float("inf")

    def run(self) -> None:
        self.events, self.cursor = self.node.events(self.after, 8.0)
        self.returned_at = time.monotonic()


def test_health_and_roles(cloud: CloudServer, admin: CloudClient, node1: CloudClient) -> None:
    assert admin.health()
    assert requests.get(f"{cloud.url}/api/v1/health", timeout=5).json() == {"status": "ok"}
    with pytest.raises(Forbidden, match="admin token"):
        node1.add_user("mallory", "1234")
    with pytest.raises(Forbidden):
        node1.list_jobs()
    with pytest.raises(Forbidden):
        admin.events(0, 0)
    with CloudClient(cloud.url, "not-a-token") as stranger:
        with pytest.raises(Unauthorized):
            stranger.list_printers()
    answer = requests.get(f"{cloud.url}/api/v1/printers", timeout=5)
    assert answer.status_code == 401 and "Bearer" in answer.json()["detail"]
    names = {p.name: p for p in node1.list_printers()}
    assert names["printer1"].price_per_page == PRICE and names["printer1"].node == "node1"


def test_input_validation(
    cloud: CloudServer, admin: CloudClient, node1: CloudClient, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="4 to 8 digits"):
        admin.add_user("carol", "12")
    with pytest.raises(InvalidRequest, match="without '/'"):
        admin.add_user("a/b", "1234")
    with pytest.raises(Conflict, match="already exists"):
        admin.add_user("alice", "9999")
    sub = submission(make_document(tmp_path), origin="node1")
    with pytest.raises(InvalidRequest, match="UUID"):
        node1.register(JobSubmission(**{**sub.to_json(), "uuid": "not-a-uuid"}))
    many = {f"k{i}": "v" for i in range(101)}
    with pytest.raises(InvalidRequest, match="at most 100 options"):
        node1.register(JobSubmission(**{**sub.to_json(), "options": many}))
    with pytest.raises(Forbidden, match="origin node node2"):
        node1.register(JobSubmission(**{**sub.to_json(), "origin": "node2"}))
    with pytest.raises(InvalidRequest, match="larger than the limit"):
        node1.register(JobSubmission(**{**sub.to_json(), "title": "x" * 300_000}))
    printer = {"name": "p", "uri": "ipp://h/", "node": "n", "price_per_page": 0.1}
    answer = admin.session.post(
        f"{admin.base_url}/api/v1/printers",
        json=printer,
        headers={"Authorization": f"Bearer {cloud.admin_token}"},
        timeout=5,
    )
    assert answer.status_code == 422 and "never a float" in answer.json()["detail"]
    answer = admin.session.post(
        f"{admin.base_url}/api/v1/users",
        data=b"{not json",
        headers={"Authorization": f"Bearer {cloud.admin_token}"},
        timeout=5,
    )
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"]


def test_register_upload_idempotent(cloud: CloudServer, node2: CloudClient, tmp_path: Path) -> None:
    doc = make_document(tmp_path)
    sub = submission(doc)
    first = node2.register(sub)
    assert first.state is JobState.HELD
    assert first.transaction is not None
    assert first.transaction.status is TransactionStatus.PENDING
    assert first.transaction.amount == 0 and first.transaction.kind == "printer-usage"
    again = node2.register(sub)
    assert again == first
    node2.upload_document(sub.uuid, doc)
    node2.upload_document(sub.uuid, doc)  # again after success: 204
    stored = stored_files(cloud, sub.uuid)
    assert len(stored) == 1  # one file, encrypted: no run of the plaintext is in it
    assert doc.read_bytes()[100:164] not in stored[0].read_bytes()
    with pytest.raises(Conflict, match="different content"):
        node2.register(JobSubmission(**{**sub.to_json(), "pages": 99}))
    with pytest.raises(NotFound):
        node2.upload_document(str(uuidlib.uuid4()), doc)


def test_registered_again_with_another_document_before_its_upload(
    cloud: CloudServer, node2: CloudClient, tmp_path: Path
) -> None:
    """cupsd runs a job again when the node crashed after registering it but before holding it,
    and the filter writes other bytes (a PDF's /ID changes): the same uuid comes again with
    another size, hash and page count. Before the upload the job takes them; after it, or with
    anything else changed, it is a Conflict."""
    sub = submission(make_document(tmp_path))
    node2.register(sub)
    doc = make_document(tmp_path, size=30_000)
    again = submission(doc)
    rerun = JobSubmission(
        **{**sub.to_json(), "size": again.size, "sha256": again.sha256, "pages": 4}
    )
    job = node2.register(rerun)
    assert (job.size, job.sha256, job.pages, job.state) == (
        again.size,
        again.sha256,
        4,
        JobState.HELD,
    )
    with pytest.raises(Conflict, match="different content"):
        node2.register(JobSubmission(**{**rerun.to_json(), "title": "other.pdf"}))
    node2.upload_document(sub.uuid, doc)  # the document of the second registration is taken
    assert node2.register(rerun) == node2.get_job(sub.uuid)
    with pytest.raises(Conflict, match="different content"):
        node2.register(sub)  # the first document, after the upload


def test_bad_document_rejected_nothing_kept(
    cloud: CloudServer, node2: CloudClient, tmp_path: Path
) -> None:
    doc = make_document(tmp_path)
    sub = submission(doc)
    node2.register(JobSubmission(**{**sub.to_json(), "sha256": "0" * 64}))
    with pytest.raises(InvalidRequest, match="sha256"):
        node2.upload_document(sub.uuid, doc)
    short = submission(doc)
    node2.register(JobSubmission(**{**short.to_json(), "size": 100}))
    with pytest.raises(InvalidRequest, match="larger than the registered size of 100 bytes"):
        node2.upload_document(short.uuid, doc)
    leftovers = [p.name for p in cloud.storage_dir.iterdir() if sub.uuid in p.name]
    leftovers += [p.name for p in cloud.storage_dir.iterdir() if short.uuid in p.name]
    assert leftovers == []
    assert not list(cloud.storage_dir.glob(".*.part"))


def test_list_jobs(admin: CloudClient, node2: CloudClient, tmp_path: Path) -> None:
    a, _ = held_job(node2, tmp_path, owner="bob")
    b, _ = held_job(node2, tmp_path, owner="bob")
    bobs = admin.list_jobs(user="bob")
    uuids = [j.uuid for j in bobs]
    assert uuids.index(b.uuid) < uuids.index(a.uuid)  # newest first
    assert all(j.owner == "bob" for j in bobs)
    held = admin.list_jobs(state=JobState.HELD)
    assert {a.uuid, b.uuid} <= {j.uuid for j in held}
    assert all(j.state is JobState.HELD for j in held)
    assert admin.list_jobs(user="bob", state=JobState.COMPLETED) == []


def _page(cloud: CloudServer, token: str, **params: str) -> requests.Response:
    return requests.get(
        f"{cloud.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
        params=params,
        timeout=10,
    )


def test_listings_come_in_pages_each_job_once(
    cloud: CloudServer, admin: CloudClient, node2: CloudClient, tmp_path: Path
) -> None:
    """``limit`` jobs to a page, newest first, ``next`` until the last: every job once, also
    when jobs were registered in the same instant (two servers, one database) and when a job
    is registered between two pages; for admins and for a signed-in user alike."""
    name = f"p{uuidlib.uuid4().hex[:10]}"
    with cloud.admin_client() as boss:
        boss.put_user(name, password="pages-of-jobs", pin="2468")
    made = [held_job(node2, tmp_path, owner=name)[0] for _ in range(7)]
    tied = sorted(j.uuid for j in made[2:5])
    engine = sa.create_engine(cloud.config.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(db.jobs)
                .where(db.jobs.c.uuid.in_(tied))
                .values(created_at=made[4].created_at)
            )
    finally:
        engine.dispose()
    expected = [j.uuid for j in admin.list_jobs(user=name)]
    assert sorted(expected) == sorted(j.uuid for j in made)
    assert expected.index(made[6].uuid) == 0 and expected[2:5] == tied  # ties: in uuid order

    with AdminClient(cloud.url, "") as anon:  # signing in needs no token
        token = anon.sign_in(name, "pages-of-jobs")["token"]
    for who, params in ((cloud.admin_token, {"user": name}), (token, {})):
        seen, after, pages, late = [], "", 0, None
        while True:
            answer = _page(cloud, who, limit="2", after=after, **params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert len(body["jobs"]) <= 2
            seen += [j["uuid"] for j in body["jobs"]]
            pages += 1
            if late is None:  # newer than every page: not in this listing, not a duplicate
                late = held_job(node2, tmp_path, owner=name)[0]
            if body["next"] is None:
                break
            after = body["next"]
        assert seen == expected and pages == 4
        expected = [late.uuid, *expected]
    assert [j.uuid for j in admin.list_jobs(name, page=2)] == expected  # 5 pages
    assert [j.uuid for j in admin.list_jobs(name, most=3, page=2)] == expected[:3]
    whole, following = admin.list_jobs_page(name, JobState.HELD, limit=len(expected))
    assert [j.uuid for j in whole] == expected and following is None
    one, rest = admin.list_jobs_page(name, limit=1)
    assert [j.uuid for j in one] == expected[:1] and rest is not None
    again, _ = admin.list_jobs_page(name, limit=1, after=rest)
    assert [j.uuid for j in again] == expected[1:2]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "-1"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "2.5"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "\u00b2"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "9" * 400}, "limit must be an integer from 1 to 1000"),
        ({"after": "not-a-cursor"}, "after must be the next of an earlier page"),
        ({"after": "x" * 129}, "after must be the next of an earlier page"),
        ({"after": "bmFuIDEyM2U0NTY3LWU4OWItMTJkMy1hNDU2LTQyNjYxNDE3NDAwMA"}, "after must be"),
        ({"after": "MSAnOyBkcm9wIHRhYmxlIGpvYnM7LS0"}, "after must be the next"),
    ],
)
def test_hostile_page_parameters_are_refused(
    cloud: CloudServer, params: dict[str, str], message: str
) -> None:
    answer = _page(cloud, cloud.admin_token, **params)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text


def test_release_refusals(admin: CloudClient, node2: CloudClient, tmp_path: Path) -> None:
    job, _ = held_job(node2, tmp_path)
    with pytest.raises(Forbidden, match="wrong PIN for user alice"):
        admin.release(job.uuid, "alice", "0000", "printer1")
    with pytest.raises(Forbidden, match=f"job {job.uuid} belongs to alice"):
        admin.release(job.uuid, "bob", PINS["bob"], "printer1")
    with pytest.raises(NotFound, match="printer"):
        admin.release(job.uuid, "alice", PINS["alice"], "nowhere")
    with pytest.raises(NotFound, match="job"):
        admin.release(str(uuidlib.uuid4()), "alice", PINS["alice"], "printer1")
    assert admin.get_job(job.uuid).state is JobState.HELD
    admin.release(job.uuid, "alice", PINS["alice"], "printer1")
    with pytest.raises(Conflict, match="job is released, not held"):
        admin.release(job.uuid, "alice", PINS["alice"], "printer1")


def test_release_claim_download_complete(
    cloud: CloudServer,
    admin: CloudClient,
    node1: CloudClient,
    node2: CloudClient,
    tmp_path: Path,
) -> None:
    """Origin node2 (CUPS), printer1 on node1: the release wakes node1's long-poll at once."""
    job, doc = held_job(node2, tmp_path, pages=3, copies=2)
    start1, start2 = cursor_now(node1), cursor_now(node2)
    poll = Poll(node1, start1)
    poll.start()
    time.sleep(0.3)  # the poll is waiting in the server now
    before = time.monotonic()
    released = admin.release(job.uuid, "alice", PINS["alice"], "printer1", {"media": "a4"})
    after = time.monotonic()
    poll.join(10)
    assert released.state is JobState.RELEASED and released.printer == "printer1"
    log.warning(
        "long-poll woke %.1f ms after the release answered (release took %.1f ms)",
        (poll.returned_at - after) * 1000,
        (after - before) * 1000,
    )
    assert poll.returned_at - before < 1.0
    found = [e for e in poll.events if e.job_uuid == job.uuid]
    assert len(found) == 1
    event = found[0]
    assert event.kind is EventKind.RELEASED and event.options == {"media": "a4"}
    assert event.printer is not None and event.printer.name == "printer1"
    assert event.printer.price_per_page == PRICE
    assert poll.cursor == event.id

    with pytest.raises(Conflict):
        node2.claim(job.uuid)  # printer1 is not node2's
    with pytest.raises(Forbidden):
        node1.download(job.uuid, tmp_path / "early.pdf")  # not claimed yet
    claimed = node1.claim(job.uuid)
    assert claimed.state is JobState.CLAIMED
    with pytest.raises(Conflict):
        node1.claim(job.uuid)
    dest = tmp_path / "got.pdf"
    assert node1.download(job.uuid, dest) == doc.stat().st_size
    assert dest.read_bytes() == doc.read_bytes()
    with pytest.raises(Forbidden):
        node2.download(job.uuid, tmp_path / "other.pdf")
    assert node1.progress(job.uuid, JobState.PRINTING).state is JobState.PRINTING
    done = node1.progress(job.uuid, JobState.COMPLETED, impressions=None, sheets=3)
    assert done.state is JobState.COMPLETED
    tx = done.transaction
    assert tx is not None and tx.status is TransactionStatus.COMPLETED
    assert tx.pages == 3 * 2
    assert tx.amount == Decimal(3 * 2) * PRICE == Decimal("0.30")
    assert tx.summary() == "Printer Usage: 6 pages, 0.30 EUR (completed)"
    # Repeating the end state is harmless; the document is gone (retention "at once").
    assert node1.progress(job.uuid, JobState.COMPLETED).state is JobState.COMPLETED
    assert stored_files(cloud, job.uuid) == []
    finished = events_for(node2, start2, job.uuid)
    assert [(e.kind, e.state, e.cups_job_id) for e in finished] == [
        (EventKind.FINISHED, JobState.COMPLETED, 42)
    ]
    assert finished[0].cups_job_uuid == job.cups_job_uuid
    with pytest.raises(Conflict):
        admin.cancel(job.uuid, reason="too late")


def test_impressions_priced_and_failed_is_free(
    admin: CloudClient, node1: CloudClient, tmp_path: Path
) -> None:
    job, _ = held_job(node1, tmp_path, origin="node1", pages=4, copies=1)
    admin.release(job.uuid, "alice", PINS["alice"], "printer1")
    node1.claim(job.uuid)
    done = node1.progress(job.uuid, JobState.COMPLETED, impressions=5)
    assert done.impressions == 5 and done.transaction is not None
    assert done.transaction.amount == Decimal("0.25") and done.transaction.pages == 5

    job2, _ = held_job(node1, tmp_path, origin="node1")
    admin.release(job2.uuid, "alice", PINS["alice"], "printer1")
    node1.claim(job2.uuid)
    failed = node1.progress(job2.uuid, JobState.FAILED, reason="paper jam")
    assert failed.state_reason == "paper jam" and failed.transaction is not None
    # Nothing printed: the transaction stays pending at 0 and the owner may release it elsewhere.
    assert failed.transaction.status is TransactionStatus.PENDING
    assert failed.transaction.amount == 0
    again = admin.release(job2.uuid, "alice", PINS["alice"], "printer1")
    assert again.state is JobState.RELEASED
    node1.claim(job2.uuid)
    node1.progress(job2.uuid, JobState.FAILED, reason="still jammed")
    canceled = admin.cancel(job2.uuid, user="alice")
    assert canceled.transaction is not None
    assert canceled.transaction.status is TransactionStatus.CANCELED
    assert canceled.transaction.amount == 0


def test_waiting_reason_is_reported(admin: CloudClient, node1: CloudClient, tmp_path: Path) -> None:
    job, _ = held_job(node1, tmp_path, origin="node1")
    admin.release(job.uuid, "alice", PINS["alice"], "printer1")
    node1.claim(job.uuid)
    node1.progress(job.uuid, JobState.PRINTING)
    waiting = node1.progress(job.uuid, JobState.PRINTING, reason="waiting: media-empty")
    assert waiting.state_reason == "waiting: media-empty"
    assert admin.get_job(job.uuid).state_reason == "waiting: media-empty"


def test_operator_release_from_the_origin_node(
    admin: CloudClient, node1: CloudClient, tmp_path: Path
) -> None:
    job, _ = held_job(node1, tmp_path, origin="node1")
    released = node1.operator_release(job.uuid, "printer1", "root")
    assert released.state is JobState.RELEASED
    assert "operator root" in released.state_reason


def test_races_have_one_winner(admin: CloudClient, cloud: CloudServer, tmp_path: Path) -> None:
    with cloud.node_client("node1") as node:
        job, _ = held_job(node, tmp_path, origin="node1")

    def release(_i: int) -> str:
        with cloud.admin_client() as client:
            try:
                client.release(job.uuid, "alice", PINS["alice"], "printer1")
            except Conflict:
                return "conflict"
        return "ok"

    def claim(_i: int) -> str:
        with cloud.node_client("node1") as client:
            try:
                client.claim(job.uuid)
            except Conflict:
                return "conflict"
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(release, range(6))) == ["conflict"] * 5 + ["ok"]
        assert sorted(pool.map(claim, range(6))) == ["conflict"] * 5 + ["ok"]
    assert admin.get_job(job.uuid).state is JobState.CLAIMED


def test_cancel_by_owner_and_by_other(
    cloud: CloudServer, admin: CloudClient, node2: CloudClient, tmp_path: Path
) -> None:
    job, _ = held_job(node2, tmp_path)
    start = cursor_now(node2)
    with pytest.raises(Forbidden, match=f"job {job.uuid} belongs to alice"):
        admin.cancel(job.uuid, user="bob")
    assert admin.get_job(job.uuid).state is JobState.HELD
    canceled = admin.cancel(job.uuid, user="alice", reason="changed my mind")
    assert canceled.state is JobState.CANCELED
    assert canceled.transaction is not None
    assert canceled.transaction.status is TransactionStatus.CANCELED
    assert canceled.transaction.amount == 0
    assert admin.cancel(job.uuid, user="alice").state is JobState.CANCELED  # idempotent
    assert stored_files(cloud, job.uuid) == []
    found = events_for(node2, start, job.uuid)
    assert [(e.kind, e.state) for e in found] == [(EventKind.CANCELED, JobState.CANCELED)]
    assert found[0].cups_job_uuid == job.cups_job_uuid and found[0].cups_job_id == 42
    with pytest.raises(Conflict, match="not held"):
        admin.release(job.uuid, "alice", PINS["alice"], "printer1")
    # The node that took the job in CUPS may cancel it too (user null).
    job2, _ = held_job(node2, tmp_path)
    assert node2.cancel(job2.uuid, reason="canceled in CUPS").state is JobState.CANCELED


def test_restart_keeps_data(
    cloud: CloudServer, admin: CloudClient, node2: CloudClient, tmp_path: Path
) -> None:
    job, doc = held_job(node2, tmp_path)
    cloud.stop()
    assert not admin.health()
    with pytest.raises(CloudUnavailable):
        admin.get_job(job.uuid)
    cloud.start()
    again = admin.get_job(job.uuid)
    assert again == job
    assert {p.name for p in admin.list_printers()} >= {"printer1", "printer2"}
    admin.release(job.uuid, "alice", PINS["alice"], "printer2")
    node2.claim(job.uuid)
    assert node2.download(job.uuid, tmp_path / "after-restart.pdf") == doc.stat().st_size
    assert (tmp_path / "after-restart.pdf").read_bytes() == doc.read_bytes()


def test_client_reads_the_environment_once_proxies_kept_netrc_ignored(
    cloud: CloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reads proxy variables when it is made, for the cloud's address (requests
    would on every request): a proxy in HTTP_PROXY is used, NO_PROXY passes it by, and a netrc
    entry for the cloud's host never replaces the bearer token."""
    host = cloud.url.split("//", 1)[1].split(":", 1)[0]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there: a request through that proxy fails
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    with cloud.node_client("node2") as through_proxy:
        with pytest.raises(CloudUnavailable):
            through_proxy.get_job(str(uuidlib.uuid4()))
    monkeypatch.setenv("NO_PROXY", host)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host} login mallory password wrong\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with cloud.node_client("node2") as direct:
        assert direct.session.trust_env is False
        with pytest.raises(NotFound):  # signed in with the node's bearer token: no 401
            direct.get_job(str(uuidlib.uuid4()))
