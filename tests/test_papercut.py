"""The PaperCut adapter against stand-ins built from PaperCut's documentation: a PostgreSQL
``tbl_printer_usage_log`` with the documented columns and an XML-RPC server with the documented
web-services signatures (no real PaperCut server; see docs/accounting.md)."""

from __future__ import annotations

import hashlib
import secrets
import uuid as uuidlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from pullprint.cloud.accounting.client import AccountingClient
from pullprint.cloud.accounting.papercut import (
    PaperCutError,
    PaperCutLog,
    PaperCutWebServices,
    decode_response,
    encode_call,
)
from pullprint.model import Job, JobState, JobSubmission, Printer, TransactionStatus
from pullprint.peers.cloud import CloudServer
from pullprint.peers.papercut import ApiCall, PaperCutApiServer, PaperCutDatabase

TOKEN = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def pc_db() -> Iterator[PaperCutDatabase]:
    with PaperCutDatabase() as db:
        yield db


@pytest.fixture(scope="module")
def pc_api() -> Iterator[PaperCutApiServer]:
    with PaperCutApiServer(TOKEN) as server:
        server.add_user("alice", Decimal("20.00"))
        server.add_shared_account("physics", Decimal("100.00"))
        yield server


# -- XML-RPC with exact money ----------------------------------------------------------------


def test_decimals_travel_as_exact_doubles() -> None:
    body = encode_call("api.adjustUserAccountBalance", ("t", "alice", Decimal("-0.10"), "c", ""))
    assert b"<double>-0.10</double>" in body
    assert b"<methodName>api.adjustUserAccountBalance</methodName>" in body
    answer = (
        b"<?xml version='1.0'?><methodResponse><params><param><value>"
        b"<double>12.345678901234567890</double></value></param></params></methodResponse>"
    )
    assert decode_response(answer) == Decimal("12.345678901234567890")


def test_faults_and_garbage_are_papercut_errors() -> None:
    fault = (
        b"<?xml version='1.0'?><methodResponse><fault><value><struct>"
        b"<member><name>faultCode</name><value><int>1</int></value></member>"
        b"<member><name>faultString</name><value><string>Invalid authentication token</string>"
        b"</value></member></struct></value></fault></methodResponse>"
    )
    with pytest.raises(PaperCutError, match="Invalid authentication token"):
        decode_response(fault)
    with pytest.raises(PaperCutError, match="malformed"):
        decode_response(b"<html>proxy error</html>")


def test_web_services_follow_the_documented_signatures(pc_api: PaperCutApiServer) -> None:
    with requests.Session() as session:
        web = PaperCutWebServices(pc_api.url, TOKEN, session=session)
        assert web.is_user_exists("alice") and not web.is_user_exists("mallory")
        start = web.get_user_account_balance("alice")
        web.adjust_user_account_balance("alice", Decimal("1.10"), "top up")
        assert web.get_user_account_balance("alice") == start + Decimal("1.10")
        assert web.is_shared_account_exists("physics")
        web.adjust_shared_account_balance("physics", Decimal("-0.30"), "job")
        assert web.get_shared_account_balance("physics") == Decimal("99.70")
        web.adjust_user_account_balance("alice", Decimal("-1.10"), "undo")
        with pytest.raises(PaperCutError, match="does not exist"):
            web.adjust_user_account_balance("mallory", Decimal(1), "x")
        web.close()
        assert session.adapters  # an injected session is not closed by the client
    assert ApiCall("api.adjustUserAccountBalance", ("alice", 1.1, "top up")) in pc_api.calls
    with pytest.raises(PaperCutError, match="authentication"):
        PaperCutWebServices(pc_api.url, "wrong").is_user_exists("alice")
    with pytest.raises(PaperCutError, match="did not answer"):
        PaperCutWebServices("http://127.0.0.1:9/rpc/api/xmlrpc", TOKEN, timeout=2).call("x")


# -- the print log -----------------------------------------------------------------------------


def test_print_log_is_matched_by_unique_document_name(pc_db: PaperCutDatabase) -> None:
    name = f"pullprint-{uuidlib.uuid4()}"
    other = f"pullprint-{uuidlib.uuid4()}"
    pc_db.log_print(name, "alice", "p1", total_pages=2, usage_cost=Decimal("0.2"), printed=False)
    pc_db.log_print(name, "alice", "p1", total_pages=2, usage_cost=Decimal("0.24"))
    pc_db.log_print(other, "bob", "p1", total_pages=1, usage_cost=Decimal(0), usage_allowed=False,
                    printed=False, denied_reason="insufficient credit")  # fmt: skip
    reader = PaperCutLog(pc_db.url)
    try:
        found = reader.find([name, other, "pullprint-not-there"])
    finally:
        reader.close()
    assert set(found) == {name, other}
    assert found[name].charged and found[name].usage_cost == Decimal("0.24")  # the newest row
    assert found[name].total_pages == 2
    assert not found[other].charged and found[other].final
    assert found[other].status == "denied in PaperCut: insufficient credit"


# -- settling from PaperCut through the real cloud ---------------------------------------------


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, pc_db: PaperCutDatabase, pc_api: PaperCutApiServer
) -> Iterator[CloudServer]:
    folder = tmp_path_factory.mktemp("cloud")
    with CloudServer(folder, node_names=("node1",)) as server:
        with server.admin_client() as admin:
            admin.add_user("alice", "1234")
            admin.add_printer(
                Printer("pc1", "ipp://127.0.0.1:1/ipp/print", "node1", Decimal("0.05"))
            )
        with AccountingClient(server.url, server.admin_token) as acc:
            acc.request(
                "PUT",
                "/papercut",
                json={
                    "database_url": pc_db.url,
                    "xmlrpc_url": pc_api.url,
                    "auth_token": TOKEN,
                    "poll_ms": 3_600_000,  # the tests run the sync themselves
                },
            )
            acc.request("PUT", "/printers/pc1/prices", json={"papercut": True})
            acc.request("PUT", "/accounts/shared/physics", json={"members": ["user:alice"]})
        yield server


def printed_job(cloud: CloudServer, folder: Path, pages: int, account: str | None = None) -> Job:
    data = b"%PDF-1.7\n" + secrets.token_bytes(256)
    doc = folder / f"{uuidlib.uuid4().hex}.pdf"
    doc.write_bytes(data)
    sub = JobSubmission(
        uuid=str(uuidlib.uuid4()), owner="alice", title="t", copies=1, options={}, pages=pages,
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), queue="PullPrint",
        origin="node1", cups_job_id=1, cups_job_uuid="",
    )  # fmt: skip
    with cloud.node_client() as node, cloud.admin_client() as admin:
        node.register(sub)
        node.upload_document(sub.uuid, doc)
        admin.release(sub.uuid, "alice", "1234", "pc1", account=account)
        node.claim(sub.uuid)
        return node.progress(sub.uuid, JobState.COMPLETED, impressions=pages)


def sync(cloud: CloudServer) -> dict[str, object]:
    with AccountingClient(cloud.url, cloud.admin_token) as acc:
        result = acc.request("POST", "/papercut/sync")
    assert isinstance(result, dict)
    return result


def test_settings_never_show_the_token(cloud: CloudServer) -> None:
    with AccountingClient(cloud.url, cloud.admin_token) as acc:
        shown = acc.request("GET", "/papercut")
    assert shown["auth_token_set"] is True
    assert TOKEN not in str(shown)


def test_cost_comes_from_papercut_once_it_logged_the_print(
    cloud: CloudServer, pc_db: PaperCutDatabase, tmp_path: Path
) -> None:
    job = printed_job(cloud, tmp_path, pages=3)
    assert job.state is JobState.COMPLETED
    assert job.transaction is not None and job.transaction.status is TransactionStatus.PENDING
    waiting = sync(cloud)["waiting"]
    assert isinstance(waiting, int) and waiting >= 1  # not logged yet: Pending (external)
    pc_db.log_print(f"pullprint-{job.uuid}", "alice", "pc1", total_pages=4,
                    usage_cost=Decimal("0.44"))  # fmt: skip
    result = sync(cloud)
    with cloud.admin_client() as admin:
        tx = admin.get_job(job.uuid).transaction
    assert tx is not None and tx.id in result["completed"]  # type: ignore[operator]
    assert (tx.status, tx.amount, tx.pages) == (TransactionStatus.COMPLETED, Decimal("0.44"), 4)
    with AccountingClient(cloud.url, cloud.admin_token) as acc:
        view = acc.printout(job.uuid)
    assert view["count_source"] == "papercut" and view["mismatch"] is True  # 4 logged, 3 sent
    assert sync(cloud)["completed"] == []  # idempotent


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        ({"printed": False, "cancelled": True}, "cancelled in PaperCut"),
        ({"printed": False, "usage_allowed": False, "denied_reason": "no credit"},
         "denied in PaperCut: no credit"),
        ({"refunded": True}, "refunded in PaperCut"),
    ],
)  # fmt: skip
def test_cancelled_denied_or_refunded_in_papercut_cancels_at_zero(
    cloud: CloudServer,
    pc_db: PaperCutDatabase,
    tmp_path: Path,
    flags: dict[str, object],
    status: str,
) -> None:
    job = printed_job(cloud, tmp_path, pages=2)
    pc_db.log_print(f"pullprint-{job.uuid}", "alice", "pc1", total_pages=2,
                    usage_cost=Decimal("0.20"), **flags)  # type: ignore[arg-type]  # fmt: skip
    sync(cloud)
    with AccountingClient(cloud.url, cloud.admin_token) as acc:
        view = acc.printout(job.uuid)
    assert (view["status"], view["amount"], view["has_cost_data"]) == ("Canceled", "0.00", False)
    assert view["external_status"] == status


def test_shared_account_charge_is_moved_in_papercut_through_xmlrpc(
    cloud: CloudServer, pc_db: PaperCutDatabase, pc_api: PaperCutApiServer, tmp_path: Path
) -> None:
    user_before = pc_api.users["alice"]
    shared_before = pc_api.shared["physics"]
    job = printed_job(cloud, tmp_path, pages=2, account="physics")
    pc_db.log_print(f"pullprint-{job.uuid}", "alice", "pc1", total_pages=2,
                    usage_cost=Decimal("0.30"))  # fmt: skip
    result = sync(cloud)
    assert len(result["adjusted"]) == 1  # type: ignore[arg-type]
    # PaperCut charged alice when it printed; pullprint moved the cost to the shared account.
    assert pc_api.users["alice"] == user_before + Decimal("0.30")
    assert pc_api.shared["physics"] == shared_before - Decimal("0.30")
    moves = [c for c in pc_api.calls if job.uuid in str(c.params[-1])]
    assert [(c.method, c.params[0], c.params[1]) for c in moves] == [
        ("api.adjustUserAccountBalance", "alice", 0.3),
        ("api.adjustSharedAccountAccountBalance", "physics", -0.3),
    ]
    assert sync(cloud)["adjusted"] == []  # made once
    with AccountingClient(cloud.url, cloud.admin_token) as acc:
        shared = acc.request("GET", "/accounts/shared/physics")
    assert Decimal(shared["balance"]) == Decimal("-0.30")  # and charged in pullprint
