"""The spec's "Personal Print - PaperCut Scenario" (issue 7), step by step, against the real peers:
cupsd with our queue, filter and backend; ippeveprinter; the cloud; the node; and for PaperCut a
PostgreSQL print log with PaperCut's documented columns and its XML-RPC web services.

  1./2. The Print Job Creator prints a personal job to a PaperCut-managed printer (lp -> PullPrint).
  3. The print-out is Pending (external); its shadow transaction is shown as Printer Usage with
     zero amount and status Pending (external); the summary has no cost data.
  4. The print status is monitored until the end state.
  Scenario 1: released and printed -> Completed; PaperCut's cost is the transaction's amount,
     status Completed; the summary has cost data.
  Scenario 2: canceled in CUPS, in pullprint, in PaperCut, or expired -> Canceled; the
     transaction keeps zero amount, status Canceled; the summary has no cost data.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pikepdf
import pytest

from pullprint.cloud.accounting.client import AccountingClient
from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState, TransactionStatus
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from pullprint.peers.papercut import PaperCutApiServer, PaperCutDatabase
from pullprint.peers.stack import Stack
from tests.cupsweb import web_cancel

PAPERCUT_TOKEN = secrets.token_urlsafe(16)
END = {JobState.COMPLETED, JobState.CANCELED, JobState.FAILED, JobState.EXPIRED}


@pytest.fixture(scope="module")
def papercut_db() -> Iterator[PaperCutDatabase]:
    with PaperCutDatabase() as db:
        yield db


@pytest.fixture(scope="module")
def papercut_api() -> Iterator[PaperCutApiServer]:
    with PaperCutApiServer(PAPERCUT_TOKEN) as server:
        server.add_user("alice", Decimal("10.00"))
        yield server


def _world_dir() -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pullprint-scenario-"))
    folder.chmod(0o755)
    return folder


def _setup_papercut(stack: Stack, db: PaperCutDatabase, api: PaperCutApiServer) -> AccountingClient:
    acc = AccountingClient(stack.cloud.url, stack.cloud.admin_token)
    acc.request(
        "PUT",
        "/papercut",
        json={
            "database_url": db.url,
            "xmlrpc_url": api.url,
            "auth_token": PAPERCUT_TOKEN,
            "poll_ms": 200,
        },
    )
    acc.request(
        "PUT",
        "/printers/printer1/prices",
        json={
            "papercut": True,
            "unit": "impression",
            "prices": [
                {"media": "*", "color": "color", "sides": "one-sided", "price": "0.10"},
                {"media": "*", "color": "mono", "sides": "one-sided", "price": "0.05"},
            ],
        },
    )
    return acc


@pytest.fixture(scope="module")
def scenario(
    papercut_db: PaperCutDatabase, papercut_api: PaperCutApiServer
) -> Iterator[tuple[Stack, AccountingClient]]:
    import shutil

    root = _world_dir()
    try:
        with Stack(root / "stack") as stack:
            acc = _setup_papercut(stack, papercut_db, papercut_api)
            try:
                yield stack, acc
            finally:
                acc.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def print_personal_job(stack: Stack, name: str, pages: int = 3) -> tuple[int, str]:
    """Steps 1-2: alice prints to the PullPrint queue; the job is held in CUPS and the cloud."""
    assert stack.cups is not None
    doc = make_pdf(stack.root / f"{name}.pdf", pages)
    cups_job = stack.cups.lp(doc, user="alice")
    stack.cups.wait_job(cups_job, {CupsJobState.HELD})
    job = stack.wait_cloud_job("alice", cups_job)
    assert job.state is JobState.HELD
    return cups_job, job.uuid


def assert_pending_external(view: dict[str, Any]) -> None:
    """Step 3: Pending (external), Printer Usage with zero amount, summary without cost data."""
    assert view["printout_status"] == "Pending (external)"
    assert view["type"] == "Printer Usage"
    assert view["status"] == "Pending (external)"
    assert view["status_code"] == "pending"
    assert Decimal(view["amount"]) == 0
    assert view["has_cost_data"] is False
    assert view["summary"] == "Printer Usage (Pending (external))"
    assert "EUR" not in view["summary"]


def assert_canceled(view: dict[str, Any]) -> None:
    """Scenario 2: Canceled, Printer Usage with zero amount, summary without cost data."""
    assert view["printout_status"] == "Canceled"
    assert view["type"] == "Printer Usage"
    assert view["status"] == "Canceled"
    assert Decimal(view["amount"]) == 0
    assert view["has_cost_data"] is False
    assert view["summary"] == "Printer Usage (Canceled)"


def release(stack: Stack, uuid: str) -> None:
    out = stack.cli("release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234")
    assert out.returncode == 0, out.stderr


def test_scenario_1_print_completed_with_papercut_cost(
    scenario: tuple[Stack, AccountingClient], papercut_db: PaperCutDatabase
) -> None:
    stack, acc = scenario
    assert stack.cups is not None
    cups_job, uuid = print_personal_job(stack, "s1")
    assert_pending_external(acc.printout(uuid))  # step 3

    release(stack, uuid)  # the Print Job Creator releases it
    final = stack.wait_state(uuid, END)  # step 4: monitored to the printer's end state
    assert final.state is JobState.COMPLETED, final.state_reason
    assert final.impressions == 3
    (printed,) = stack.printers[0].spool_files()
    with pikepdf.open(printed) as pdf:
        assert len(pdf.pages) == 3
    stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})
    # Printed, but PaperCut has not logged its cost yet: still Pending (external), amount 0.
    view = acc.printout(uuid)
    assert_pending_external(view)
    assert "PaperCut" in view["external_status"]

    # PaperCut's print provider logs the job under its unique document name, with its cost.
    papercut_db.log_print(
        f"pullprint-{uuid}", "alice", "printer1", total_pages=3, usage_cost=Decimal("0.36")
    )
    view = acc.wait_printout(uuid, lambda v: v["status_code"] != "pending")
    assert view["printout_status"] == "Completed"
    assert view["type"] == "Printer Usage"
    assert view["status"] == "Completed"
    assert Decimal(view["amount"]) == Decimal("0.36")  # PaperCut's cost, not pullprint's
    assert view["has_cost_data"] is True
    assert view["summary"] == "Printer Usage: 3 impressions, 0.36 EUR (Completed)"
    assert view["count_source"] == "papercut" and view["mismatch"] is False
    with stack.admin() as admin:
        tx = admin.get_job(uuid).transaction
    assert tx is not None
    assert (tx.status, tx.amount, tx.pages) == (TransactionStatus.COMPLETED, Decimal("0.36"), 3)
    # The personal account in pullprint was charged PaperCut's cost (hold given back).
    account = acc.request("GET", "/accounts/personal/alice")
    mine = [e for e in account["entries"] if e["job_uuid"] == uuid]
    assert [e["kind"] for e in mine] == ["hold", "release", "charge"]
    assert sum(Decimal(e["amount"]) for e in mine) == Decimal("-0.36")


def test_scenario_2_canceled_in_cups_web_ui(
    scenario: tuple[Stack, AccountingClient], operator_account: tuple[str, str]
) -> None:
    stack, acc = scenario
    assert stack.cups is not None
    cups_job, uuid = print_personal_job(stack, "s2-cups")
    assert_pending_external(acc.printout(uuid))
    page = web_cancel(stack.cups.url, cups_job, "PullPrint", operator_account)
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert f"Job {cups_job} has been canceled" in text, text
    job = stack.wait_state(uuid, END, timeout=15)
    assert job.state is JobState.CANCELED
    assert_canceled(acc.printout(uuid))


def test_scenario_2_canceled_in_pullprint(scenario: tuple[Stack, AccountingClient]) -> None:
    stack, acc = scenario
    assert stack.cups is not None
    cups_job, uuid = print_personal_job(stack, "s2-pullprint")
    assert_pending_external(acc.printout(uuid))
    out = stack.cli("cancel", uuid, "--user", "alice")
    assert out.returncode == 0, out.stderr
    stack.cups.wait_job(cups_job, {CupsJobState.CANCELED}, timeout=15)
    assert_canceled(acc.printout(uuid))


def test_scenario_2_canceled_in_papercut(
    scenario: tuple[Stack, AccountingClient], papercut_db: PaperCutDatabase
) -> None:
    """Delivered to the PaperCut-managed queue, then canceled there (its hold/release queue)."""
    stack, acc = scenario
    _cups_job, uuid = print_personal_job(stack, "s2-papercut", pages=2)
    release(stack, uuid)
    assert stack.wait_state(uuid, END).state is JobState.COMPLETED
    assert_pending_external(acc.printout(uuid))
    papercut_db.log_print(
        f"pullprint-{uuid}",
        "alice",
        "printer1",
        total_pages=2,
        usage_cost=Decimal("0.20"),
        printed=False,
        cancelled=True,
    )
    view = acc.wait_printout(uuid, lambda v: v["status_code"] != "pending")
    assert_canceled(view)
    assert view["external_status"] == "cancelled in PaperCut"


def test_scenario_2_expired(papercut_db: PaperCutDatabase, papercut_api: PaperCutApiServer) -> None:
    """An unprinted job expires (the cloud's retention): Canceled at zero, CUPS job canceled."""
    import shutil

    root = _world_dir()
    try:
        stack = Stack(root / "stack")
        stack.cloud = CloudServer(
            stack.root / "cloud", expire_seconds=1, retention_sweep_seconds=3600.0
        )
        with stack:
            acc = _setup_papercut(stack, papercut_db, papercut_api)
            assert stack.cups is not None
            cups_job, uuid = print_personal_job(stack, "s2-expired")
            assert_pending_external(acc.printout(uuid))
            time.sleep(1.5)
            with stack.admin() as admin:
                admin.session.post(
                    f"{stack.cloud.url}/api/v1/admin/retention/run",
                    headers={"Authorization": f"Bearer {stack.cloud.admin_token}"},
                    timeout=15,
                ).raise_for_status()
            assert stack.wait_state(uuid, END).state is JobState.EXPIRED
            assert_canceled(acc.printout(uuid))
            stack.cups.wait_job(cups_job, {CupsJobState.CANCELED}, timeout=15)
            acc.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
