"""Accounting (issue 7): prices, reconciled counts, balances and holds, shared accounts, reports.

Pure functions first, then the real cloud server (SQLite and PostgreSQL) driven through its API as
the node and an administrator do: register -> upload -> release -> claim -> progress.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid as uuidlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pullprint.cloud.accounting.client import AccountingClient, AccountingError
from pullprint.cloud.accounting.pricing import (
    Counts,
    JobAttributes,
    PriceEntry,
    PriceError,
    PriceList,
    cost_minor,
    expected_counts,
    media_key,
    reconcile,
)
from pullprint.cloudsync.client import CloudClient
from pullprint.errors import CloudRefused, Forbidden
from pullprint.model import Job, JobState, JobSubmission, Printer, TransactionStatus
from pullprint.peers import postgres
from pullprint.peers.cloud import CloudServer

PINS = {"alice": "1234", "bob": "5678"}
FLAT = Decimal("0.05")

# -- pure: attributes, prices, counts, reconciliation, money -----------------------------------


def test_attributes_follow_the_ticket_the_node_sends() -> None:
    cups = {"ColorModel": "Gray", "Duplex": "DuplexNoTumble", "PageSize": "A4"}
    assert JobAttributes.from_options(cups, 2) == JobAttributes("mono", "two-sided", "a4", 2)
    # cupsd passes the queue default print-color-mode=color; the PPD's ColorModel wins.
    assert JobAttributes.from_options({"print-color-mode": "color"}, 1).color == "color"
    release = {"sides": "one-sided", "copies": "3", "print-color-mode": "monochrome"}
    assert JobAttributes.from_options(cups, 2, release) == JobAttributes(
        "mono", "one-sided", "a4", 3
    )
    assert JobAttributes.from_options({}, 1) == JobAttributes("color", "one-sided", "*", 1)


def test_media_keys() -> None:
    assert media_key("iso_a4_210x297mm") == media_key("A4") == "a4"
    assert media_key("na_letter_8.5x11in") == "letter"
    assert media_key("*") == "*"
    with pytest.raises(PriceError):
        media_key("tabloid-ish")


def test_price_lookup_prefers_the_media_entry_then_any() -> None:
    prices = PriceList(
        "impression",
        (
            PriceEntry("*", "mono", "one-sided", Decimal("0.05")),
            PriceEntry("a3", "mono", "one-sided", Decimal("0.10")),
            PriceEntry("*", "color", "two-sided", Decimal("0.25")),
        ),
    )
    assert prices.price_for(JobAttributes("mono", "one-sided", "a3", 1)) == Decimal("0.10")
    assert prices.price_for(JobAttributes("mono", "one-sided", "a4", 1)) == Decimal("0.05")
    assert prices.price_for(JobAttributes("color", "two-sided", "a4", 1)) == Decimal("0.25")
    assert prices.price_for(JobAttributes("color", "one-sided", "a4", 1)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": "page"}, "unit"),
        ({"entries": (PriceEntry("*", "mono", "one-sided", Decimal("1")),) * 2}, "one price"),
    ],
)
def test_price_list_checks(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"unit": "sheet", "entries": ()}
    args.update(kwargs)
    with pytest.raises(PriceError, match=message):
        PriceList(**args)  # type: ignore[arg-type]


def test_price_entry_checks() -> None:
    with pytest.raises(PriceError, match="color"):
        PriceEntry("*", "grey", "one-sided", Decimal(1))
    with pytest.raises(PriceError, match="6 decimal"):
        PriceEntry("*", "mono", "one-sided", Decimal("0.0000001"))
    with pytest.raises(PriceError, match="between"):
        PriceEntry("*", "mono", "one-sided", Decimal("-1"))


def test_expected_counts_sides_copies_and_number_up() -> None:
    one = JobAttributes("mono", "one-sided", "*", 2)
    two = JobAttributes("mono", "two-sided", "*", 2)
    assert expected_counts(5, one) == Counts(impressions=10, sheets=10)
    assert expected_counts(5, two) == Counts(impressions=10, sheets=6)  # 3 sheets per copy
    # registered pages are counted after the queue's layout; source pages divide by number-up
    assert expected_counts(5, one, number_up=2) == Counts(10, 10)
    assert expected_counts(5, one, number_up=2, pages_before_layout=True) == Counts(6, 6)
    assert expected_counts(9, two, number_up=4, pages_before_layout=True) == Counts(6, 4)


def test_reconcile_uses_the_printer_count_and_flags_a_mismatch() -> None:
    attrs = JobAttributes("mono", "two-sided", "*", 1)
    expected = expected_counts(4, attrs)
    same = reconcile(expected, attrs, printer_impressions=4)
    assert (same.source, same.mismatch, same.counts) == ("printer", False, Counts(4, 2))
    short = reconcile(expected, attrs, printer_impressions=3)
    assert short.source == "printer" and short.mismatch
    assert short.counts == Counts(3, 2)
    assert "printer counted 3 impressions, the document and plan expect 4" in short.reason
    snmp = reconcile(expected, attrs, snmp_delta=5)
    assert (snmp.source, snmp.counts.impressions, snmp.mismatch) == ("snmp", 5, True)
    both = reconcile(expected, attrs, printer_impressions=4, snmp_delta=6)
    assert both.source == "printer" and both.counts.impressions == 4 and both.mismatch
    assert "snmp counted 6" in both.reason
    nothing = reconcile(expected, attrs)
    assert (nothing.source, nothing.mismatch, nothing.counts) == ("document", False, expected)
    sheets = reconcile(expected, attrs, printer_impressions=4, printer_sheets=3)
    assert sheets.counts == Counts(4, 3) and "printer counted 3 sheets" in sheets.reason


@given(
    count=st.integers(min_value=0, max_value=10**6),
    micro=st.integers(min_value=0, max_value=10**12),
    exponent=st.sampled_from([0, 2, 3]),
)
def test_cost_is_exact_and_rounds_half_up(count: int, micro: int, exponent: int) -> None:
    exact = Decimal(count) * Decimal(micro).scaleb(-6) * Decimal(10) ** exponent
    assert cost_minor(count, micro, exponent) == int(
        exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    )


def test_cost_examples() -> None:
    assert cost_minor(3, 50_000, 2) == 15  # 3 x 0.05 EUR = 0.15
    assert cost_minor(1, 5_000, 2) == 1  # 0.005 rounds half up to 0.01
    assert cost_minor(1, 4_999, 2) == 0
    assert cost_minor(7, 12_345, 0) == 0  # JPY


# -- the real cloud ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudServer]:
    folder = tmp_path_factory.mktemp("cloud")
    url = (
        postgres.shared().create_database()
        if request.param == "postgresql"
        else f"sqlite:///{folder / 'cloud.db'}"
    )
    server = CloudServer(folder, node_names=("node1",), database_url=url)
    with server:
        with server.admin_client() as admin:
            for name, pin in PINS.items():
                admin.add_user(name, pin)
            for name in ("printer1", "flat", "papercut"):
                admin.add_printer(Printer(name, "ipp://127.0.0.1:1/ipp/print", "node1", FLAT))
        yield server


@pytest.fixture
def admin(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.admin_client() as client:
        yield client


@pytest.fixture
def node(cloud: CloudServer) -> Iterator[CloudClient]:
    with cloud.node_client("node1") as client:
        yield client


@pytest.fixture
def acc(cloud: CloudServer) -> Iterator[AccountingClient]:
    with AccountingClient(cloud.url, cloud.admin_token) as client:
        yield client


def held(
    node: CloudClient,
    folder: Path,
    *,
    owner: str = "alice",
    pages: int = 3,
    copies: int = 1,
    options: dict[str, str] | None = None,
) -> Job:
    data = b"%PDF-1.7\n" + uuidlib.uuid4().bytes * 64
    doc = folder / f"{uuidlib.uuid4().hex}.pdf"
    doc.write_bytes(data)
    sub = JobSubmission(
        uuid=str(uuidlib.uuid4()),
        owner=owner,
        title="doc.pdf",
        copies=copies,
        options=dict(options or {}),
        pages=pages,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        queue="PullPrint",
        origin="node1",
        cups_job_id=7,
        cups_job_uuid=f"urn:uuid:{uuidlib.uuid4()}",
    )
    job = node.register(sub)
    node.upload_document(sub.uuid, doc)
    return job


def print_out(
    admin: CloudClient,
    node: CloudClient,
    job: Job,
    printer: str = "printer1",
    impressions: int | None = None,
    sheets: int | None = None,
    account: str | None = None,
) -> Job:
    admin.release(job.uuid, job.owner, PINS[job.owner], printer, account=account)
    node.claim(job.uuid)
    node.progress(job.uuid, JobState.PRINTING)
    return node.progress(job.uuid, JobState.COMPLETED, impressions=impressions, sheets=sheets)


def balance(acc: AccountingClient, account: str) -> Decimal:
    kind, name = account.split(":")
    return Decimal(acc.request("GET", f"/accounts/{kind}/{name}")["balance"])


def journal_total(acc: AccountingClient, account: str) -> Decimal:
    kind, name = account.split(":")
    data = acc.request("GET", f"/accounts/{kind}/{name}")
    return sum((Decimal(e["amount"]) for e in data["entries"]), Decimal(0))


def set_prices(acc: AccountingClient, printer: str, unit: str, prices: list[list[str]]) -> None:
    body = {
        "unit": unit,
        "prices": [{"media": m, "color": c, "sides": s, "price": p} for m, c, s, p in prices],
    }
    stored = acc.request("PUT", f"/printers/{printer}/prices", json=body)
    assert stored["unit"] == unit and len(stored["prices"]) == len(prices)


def test_flat_price_without_a_list_keeps_the_core_behaviour(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    job = print_out(admin, node, held(node, tmp_path, pages=3), "flat", impressions=3)
    assert job.transaction is not None
    assert job.transaction.status is TransactionStatus.COMPLETED
    assert job.transaction.amount == Decimal("0.15")
    view = acc.printout(job.uuid)
    assert (view["price_source"], view["count_source"], view["mismatch"]) == (
        "flat",
        "printer",
        False,
    )


def test_sheet_price_by_colour_sides_and_media(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(
        acc,
        "printer1",
        "sheet",
        [
            ["*", "mono", "one-sided", "0.04"],
            ["*", "mono", "two-sided", "0.06"],
            ["a3", "mono", "two-sided", "0.11"],
            ["*", "color", "one-sided", "0.20"],
            ["*", "color", "two-sided", "0.30"],
        ],
    )
    gray_duplex_a4 = {"ColorModel": "Gray", "Duplex": "DuplexNoTumble", "PageSize": "A4"}
    job = held(node, tmp_path, pages=5, copies=2, options=gray_duplex_a4)
    done = print_out(admin, node, job, impressions=10, sheets=6)
    assert done.transaction is not None
    assert done.transaction.amount == Decimal("0.36")  # 6 sheets x 0.06
    view = acc.printout(job.uuid)
    assert (view["unit"], view["counted"], view["unit_price"]) == ("sheet", 6, "0.06")
    assert view["summary"] == "Printer Usage: 6 sheets, 0.36 EUR (Completed)"

    a3 = held(node, tmp_path, pages=4, options={**gray_duplex_a4, "PageSize": "A3"})
    assert print_out(admin, node, a3, impressions=4).transaction.amount == Decimal("0.22")  # type: ignore[union-attr]
    # the release options change what is printed, and so the price: colour, one-sided
    color = held(node, tmp_path, pages=2, options=gray_duplex_a4)
    admin.release(
        color.uuid,
        "alice",
        "1234",
        "printer1",
        options={"print-color-mode": "color", "sides": "one-sided"},
    )
    node.claim(color.uuid)
    final = node.progress(color.uuid, JobState.COMPLETED, impressions=2)
    assert final.transaction is not None and final.transaction.amount == Decimal("0.40")


def test_printer_count_is_charged_and_a_mismatch_is_flagged(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    job = print_out(admin, node, held(node, tmp_path, pages=3), impressions=2)
    assert job.transaction is not None and job.transaction.amount == Decimal("0.20")
    view = acc.printout(job.uuid)
    assert view["mismatch"] is True and view["count_source"] == "printer"
    assert (
        "printer counted 2 impressions, the document and plan expect 3" in (view["mismatch_reason"])
    )
    # no count from the printer: the document's count is charged
    plain = print_out(admin, node, held(node, tmp_path, pages=4))
    assert plain.transaction is not None and plain.transaction.amount == Decimal("0.40")
    assert acc.printout(plain.uuid)["count_source"] == "document"
    report = acc.request("GET", "/reports", params={"group": "printer", "printer": "printer1"})
    (row,) = report["rows"]
    assert row["mismatches"] >= 1
    assert view["transaction_id"] in row["transaction_ids"]


def test_snmp_counter_delta_reconciles(
    cloud: CloudServer,
    admin: CloudClient,
    node: CloudClient,
    acc: AccountingClient,
    tmp_path: Path,
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    job = held(node, tmp_path, pages=3)
    admin.release(job.uuid, "alice", "1234", "printer1")
    node.claim(job.uuid)
    with AccountingClient(cloud.url, cloud.node_tokens["node1"]) as as_node:
        as_node.request("POST", f"/jobs/{job.uuid}/counters", 204, json={"snmp_delta": 4})
    done = node.progress(job.uuid, JobState.COMPLETED)  # no job-impressions-completed
    assert done.transaction is not None and done.transaction.amount == Decimal("0.40")
    view = acc.printout(job.uuid)
    assert view["count_source"] == "snmp" and view["mismatch"] is True


def test_release_the_balance_cannot_cover_is_refused_then_cancel_refunds(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    acc.request("PUT", "/accounts/personal/bob", json={"enforced": True, "overdraft": "0.10"})
    job = held(node, tmp_path, owner="bob", pages=3)  # estimate 0.30 > 0 + 0.10 overdraft
    with pytest.raises(CloudRefused) as refused:
        admin.release(job.uuid, "bob", "5678", "printer1")
    assert refused.value.status == 402
    assert "cannot cover this job" in refused.value.message
    assert "0.30 EUR" in refused.value.message and "overdraft limit 0.10" in refused.value.message
    assert admin.get_job(job.uuid).state is JobState.HELD
    assert balance(acc, "personal:bob") == 0

    acc.request("POST", "/accounts/personal/bob/adjust", json={"amount": "0.25", "comment": "t"})
    admin.release(job.uuid, "bob", "5678", "printer1")  # 0.25 - 0.30 >= -0.10
    assert balance(acc, "personal:bob") == Decimal("-0.05")
    admin.cancel(job.uuid, user="bob")
    assert balance(acc, "personal:bob") == Decimal("0.25")  # the hold came back
    assert balance(acc, "personal:bob") == journal_total(acc, "personal:bob")


def test_failure_refunds_and_a_new_release_holds_again(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    acc.request("PUT", "/accounts/personal/alice", json={"enforced": True, "overdraft": "0"})
    top_up = Decimal("1.00") - balance(acc, "personal:alice")  # post-paid so far
    acc.request("POST", "/accounts/personal/alice/adjust", json={"amount": str(top_up)})
    start = balance(acc, "personal:alice")
    assert start == Decimal("1.00")
    job = held(node, tmp_path, pages=2)
    admin.release(job.uuid, "alice", "1234", "printer1")
    assert balance(acc, "personal:alice") == start - Decimal("0.20")
    node.claim(job.uuid)
    failed = node.progress(job.uuid, JobState.FAILED, reason="printer jammed")
    assert failed.transaction is not None
    assert failed.transaction.status is TransactionStatus.PENDING
    assert balance(acc, "personal:alice") == start  # refunded at once
    done = print_out(admin, node, failed, impressions=2)  # released elsewhere: held again
    assert done.transaction is not None and done.transaction.amount == Decimal("0.20")
    assert balance(acc, "personal:alice") == start - Decimal("0.20")
    assert balance(acc, "personal:alice") == journal_total(acc, "personal:alice")
    acc.request("PUT", "/accounts/personal/alice", json={"enforced": False})


def test_page_quota(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    acc.request("PUT", "/accounts/personal/bob", json={"quota_pages": 4, "enforced": False})
    big = held(node, tmp_path, owner="bob", pages=5)
    with pytest.raises(CloudRefused) as refused:
        admin.release(big.uuid, "bob", "5678", "flat")
    assert refused.value.status == 402 and "pages this month" in refused.value.message
    acc.request("PUT", "/accounts/personal/bob", json={"quota_pages": None})
    admin.release(big.uuid, "bob", "5678", "flat")


def test_shared_account_is_charged_for_the_release(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    acc.request("PUT", "/accounts/shared/physics", json={})
    # Only its members may charge a shared account: alice is none yet.
    outsider = held(node, tmp_path, pages=1)
    with pytest.raises(Forbidden, match="may not charge shared account physics"):
        admin.release(outsider.uuid, "alice", "1234", "printer1", account="physics")
    assert admin.get_job(outsider.uuid).state is JobState.HELD
    acc.request("PUT", "/accounts/shared/physics", json={"members": ["user:alice"]})
    assert acc.request("GET", "/accounts/shared/physics")["members"] == ["user:alice"]
    with pytest.raises(AccountingError):
        acc.request("PUT", "/accounts/personal/alice", json={"members": ["user:bob"]})
    before = balance(acc, "personal:alice")
    job = print_out(admin, node, held(node, tmp_path, pages=3), impressions=3, account="physics")
    assert job.transaction is not None and job.transaction.amount == Decimal("0.30")
    assert balance(acc, "shared:physics") == Decimal("-0.30")
    assert balance(acc, "personal:alice") == before
    view = acc.printout(job.uuid)
    assert view["account"] == "shared:physics"
    report = acc.request("GET", "/reports", params={"group": "account"})
    row = next(r for r in report["rows"] if r["key"] == "shared:physics")
    assert row["amount"] == "0.30" and row["transaction_ids"] == [view["transaction_id"]]


def test_reports_trace_every_figure_to_transactions(
    admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    set_prices(acc, "printer1", "impression", [["*", "color", "one-sided", "0.10"]])
    print_out(admin, node, held(node, tmp_path, owner="bob", pages=2), impressions=2)
    canceled = held(node, tmp_path, owner="bob", pages=9)
    admin.cancel(canceled.uuid, user="bob")
    details = acc.request("GET", "/transactions")["transactions"]
    by_id = {t["transaction_id"]: t for t in details}
    for group in ("user", "printer", "account", "period"):
        report = acc.request("GET", "/reports", params={"group": group, "period": "day"})
        ids = [i for row in report["rows"] for i in row["transaction_ids"]]
        assert sorted(ids) == sorted(by_id)  # every transaction counted exactly once
        for row in report["rows"]:
            mine = [by_id[i] for i in row["transaction_ids"]]
            assert Decimal(row["amount"]) == sum(Decimal(t["amount"]) for t in mine)
            assert row["transactions"] == len(mine)
            assert row["completed"] == sum(t["status_code"] == "completed" for t in mine)
    bob = acc.request("GET", "/reports", params={"group": "user", "user": "bob"})["rows"]
    assert [r["key"] for r in bob] == ["bob"] and bob[0]["canceled"] >= 1

    text = acc.request("GET", "/reports", params={"group": "user", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) >= {"key", "amount", "transaction_ids", "mismatches"}
    total = sum(Decimal(r["amount"]) for r in rows)
    assert total == sum(Decimal(t["amount"]) for t in details)
    detail_csv = acc.request("GET", "/transactions", params={"format": "csv", "user": "bob"})
    lines = list(csv.DictReader(io.StringIO(detail_csv)))
    assert {line["user"] for line in lines} == {"bob"}
    assert {line["status"] for line in lines} >= {"Completed", "Canceled"}
    future = acc.request("GET", "/reports", params={"since": "2999-01-01"})
    assert future["rows"] == []


def test_admin_only_and_money_never_float(cloud: CloudServer, acc: AccountingClient) -> None:
    with AccountingClient(cloud.url, cloud.node_tokens["node1"]) as as_node:
        with pytest.raises(AccountingError) as denied:
            as_node.request("PUT", "/accounts/personal/alice", json={})
        assert denied.value.status == 403
    one = {"color": "mono", "sides": "one-sided", "price": "1"}
    bad = [
        ("PUT", "/printers/printer1/prices", {"prices": [{**one, "price": 0.1}]}),
        ("PUT", "/printers/printer1/prices", {"unit": "page", "prices": [one]}),
        ("PUT", "/printers/printer1/prices", {"prices": [{**one, "media": "b9"}]}),
        ("POST", "/accounts/personal/alice/adjust", {"amount": 1.5}),
        ("POST", "/accounts/personal/alice/adjust", {"amount": "0.001"}),
        ("PUT", "/accounts/team/x", {}),
        ("GET", "/reports?group=colour", None),
    ]
    for method, path, body in bad:
        with pytest.raises(AccountingError) as refused:
            acc.request(method, path, json=body)
        assert refused.value.status == 422, (path, refused.value.text)


def test_an_unknown_shared_account_is_refused(
    admin: CloudClient, node: CloudClient, tmp_path: Path
) -> None:
    job = held(node, tmp_path)
    with pytest.raises((CloudRefused, Forbidden)) as refused:
        admin.release(job.uuid, "alice", "1234", "printer1", account="nobody-knows")
    assert refused.value.status in (403, 404)
    assert admin.get_job(job.uuid).state is JobState.HELD


def test_concurrent_releases_never_overdraw_an_enforced_account(
    cloud: CloudServer, admin: CloudClient, node: CloudClient, acc: AccountingClient, tmp_path: Path
) -> None:
    """The hold is one conditional update: of many releases at once against one enforced
    account, exactly those its credit covers succeed, the rest are refused (402) and stay held."""
    admin.add_user("carol", "2468")
    acc.request("PUT", "/accounts/personal/carol", json={"enforced": True, "overdraft": "0.05"})
    acc.request("POST", "/accounts/personal/carol/adjust", json={"amount": "0.45"})
    jobs = [held(node, tmp_path, owner="carol", pages=2) for _ in range(8)]  # 0.10 each

    def release(job: Job) -> int:
        with cloud.admin_client() as client:
            try:
                client.release(job.uuid, "carol", "2468", "flat")
            except CloudRefused as exc:
                return exc.status
            return 200

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(release, jobs))
    assert sorted(statuses) == [200] * 5 + [402] * 3  # 0.45 + 0.05 covers five holds
    assert balance(acc, "personal:carol") == Decimal("-0.05")
    assert balance(acc, "personal:carol") == journal_total(acc, "personal:carol")
    states = [admin.get_job(job.uuid).state for job in jobs]
    assert sorted(s.value for s in states) == sorted(["released"] * 5 + ["held"] * 3), states
