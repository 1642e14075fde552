"""Reports: Printer Usage per user, printer, account and period, as JSON or CSV, and the
print-out view (status, transaction, summary). Every figure lists the ids of the transactions it
sums, so it can be traced back. Reading only; nothing here changes data.

Display names follow the spec: a pending transaction is "Pending (external)" (the printer, or
PaperCut, has not said how the print-out ended), then "Completed" or "Canceled"; the kind is
"Printer Usage". A summary carries cost data only once the transaction is completed.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pullprint.cloud import ledger
from pullprint.cloud.accounting.tables import usage_details
from pullprint.cloud.db import jobs, transactions
from pullprint.errors import NotFound
from pullprint.model import JobState, TransactionStatus

PRINTER_USAGE = "Printer Usage"
STATUS_NAMES = {
    TransactionStatus.PENDING: "Pending (external)",
    TransactionStatus.COMPLETED: "Completed",
    TransactionStatus.CANCELED: "Canceled",
}
GROUPS = ("user", "printer", "account", "period")
PERIODS = ("day", "month", "year")


def status_name(status: TransactionStatus) -> str:
    """The displayed status of a transaction: Pending (external), Completed or Canceled."""
    return STATUS_NAMES[status]


def printout_status(state: JobState, tx_status: TransactionStatus) -> str:
    """The print-out's displayed status: Canceled when the job was canceled or expired (or its
    transaction was), Completed once printed and charged, else Pending (external)."""
    if state in (JobState.CANCELED, JobState.EXPIRED) or tx_status is TransactionStatus.CANCELED:
        return "Canceled"
    if state is JobState.COMPLETED and tx_status is TransactionStatus.COMPLETED:
        return "Completed"
    return "Pending (external)"


@dataclass(frozen=True)
class UsageRow:
    """One Printer Usage transaction with its accounting details."""

    transaction_id: int
    job_uuid: str
    title: str
    user: str
    account: str
    printer: str
    job_state: JobState
    status: TransactionStatus
    amount: Decimal
    currency: str
    pages: int
    expected_pages: int | None
    counted: int | None
    unit: str
    unit_price: Decimal | None
    price_source: str
    count_source: str
    mismatch: bool
    mismatch_reason: str
    external_status: str
    created_at: float
    updated_at: float

    @property
    def has_cost_data(self) -> bool:
        return self.status is TransactionStatus.COMPLETED

    def summary(self) -> str:
        """The transaction summary shown with the print-out: cost data only once completed."""
        if self.has_cost_data:
            what = f"{self.counted} {self.unit}s" if self.counted is not None else ""
            what = what or f"{self.pages} pages"
            return f"{PRINTER_USAGE}: {what}, {self.amount} {self.currency} (Completed)"
        return f"{PRINTER_USAGE} ({status_name(self.status)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "job_uuid": self.job_uuid,
            "title": self.title,
            "type": PRINTER_USAGE,
            "user": self.user,
            "account": self.account,
            "printer": self.printer,
            "job_state": self.job_state.value,
            "printout_status": printout_status(self.job_state, self.status),
            "status": status_name(self.status),
            "status_code": self.status.value,
            "amount": str(self.amount),
            "currency": self.currency,
            "pages": self.pages,
            "expected_pages": self.expected_pages,
            "counted": self.counted,
            "unit": self.unit,
            "unit_price": str(self.unit_price) if self.unit_price is not None else None,
            "price_source": self.price_source,
            "count_source": self.count_source,
            "mismatch": self.mismatch,
            "mismatch_reason": self.mismatch_reason,
            "external_status": self.external_status,
            "summary": self.summary(),
            "has_cost_data": self.has_cost_data,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Filters:
    """Which transactions a report covers (``since`` inclusive, ``until`` exclusive)."""

    user: str | None = None
    printer: str | None = None
    account: str | None = None
    since: float | None = None
    until: float | None = None


def _select() -> sa.Select[Any]:
    return sa.select(
        transactions,
        jobs.c.title,
        jobs.c.state.label("job_state"),
        jobs.c.printer.label("job_printer"),
        *[c.label(f"d_{c.name}") for c in usage_details.c],
    ).select_from(
        transactions.join(jobs, jobs.c.uuid == transactions.c.job_uuid).outerjoin(
            usage_details, usage_details.c.transaction_id == transactions.c.id
        )
    )


def _row(row: Mapping[Any, Any]) -> UsageRow:
    currency = str(row["currency"])
    has = row["d_transaction_id"] is not None
    account = f"{row['d_account_kind']}:{row['d_account_name']}" if has else ""
    return UsageRow(
        transaction_id=int(row["id"]),
        job_uuid=str(row["job_uuid"]),
        title=str(row["title"]),
        user=str(row["user"]),
        account=account or f"personal:{row['user']}",
        printer=str((row["d_printer"] if has else row["job_printer"]) or ""),
        job_state=JobState(row["job_state"]),
        status=TransactionStatus(row["status"]),
        amount=ledger.from_minor(int(row["amount_minor"]), currency),
        currency=currency,
        pages=int(row["pages"]),
        expected_pages=int(row["d_expected_impressions"]) if has else None,
        counted=row["d_counted"] if has else None,
        unit=str(row["d_unit"]) if has else "impression",
        unit_price=ledger.micro_to_price(int(row["d_unit_price_micro"])) if has else None,
        price_source=str(row["d_price_source"]) if has else "",
        count_source=str(row["d_count_source"]) if has else "",
        mismatch=bool(row["d_mismatch"]) if has else False,
        mismatch_reason=str(row["d_mismatch_reason"]) if has else "",
        external_status=str(row["d_external_status"]) if has else "",
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def usage_rows(conn: Connection, filters: Filters, newest: int | None = None) -> list[UsageRow]:
    """The Printer Usage transactions matching ``filters``, oldest first; with ``newest``, only
    the last ``newest`` of them (still oldest first). ``newest`` cannot go with an account
    filter, which is applied after the query (ValueError)."""
    if newest is not None and filters.account:
        raise ValueError("newest cannot be combined with an account filter")
    query = _select().order_by(transactions.c.id.desc() if newest else transactions.c.id)
    if newest:
        query = query.limit(newest)
    if filters.user:
        query = query.where(transactions.c.user == filters.user)
    if filters.printer:
        query = query.where(
            sa.func.coalesce(usage_details.c.printer, jobs.c.printer) == filters.printer
        )
    if filters.since is not None:
        query = query.where(transactions.c.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(transactions.c.created_at < filters.until)
    rows = [_row(r) for r in conn.execute(query).mappings()]
    if newest:
        rows.reverse()
    if filters.account:
        rows = [r for r in rows if r.account == filters.account]
    return rows


def count_of(conn: Connection, user: str) -> int:
    """How many Printer Usage transactions ``user`` has."""
    query = sa.select(sa.func.count()).select_from(transactions)
    return int(conn.execute(query.where(transactions.c.user == user)).scalar_one())


def printout(conn: Connection, job_uuid: str) -> UsageRow:
    """The print-out view of one job (its transaction with details); NotFound if none."""
    row = conn.execute(_select().where(transactions.c.job_uuid == job_uuid)).mappings().first()
    if row is None:
        raise NotFound(404, f"no print-out {job_uuid}")
    return _row(row)


@dataclass
class ReportRow:
    """One group of a report; ``transaction_ids`` are the transactions it sums."""

    key: str
    currency: str
    transactions: int = 0
    completed: int = 0
    pending: int = 0
    canceled: int = 0
    pages: int = 0
    amount: Decimal = Decimal(0)
    mismatches: int = 0
    transaction_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "currency": self.currency,
            "transactions": self.transactions,
            "completed": self.completed,
            "pending": self.pending,
            "canceled": self.canceled,
            "pages": self.pages,
            "amount": str(self.amount),
            "mismatches": self.mismatches,
            "transaction_ids": list(self.transaction_ids),
        }


def period_key(when: float, period: str) -> str:
    """``2024-03-05`` (day), ``2024-03`` (month) or ``2024`` (year), in UTC."""
    fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[period]
    return time.strftime(fmt, time.gmtime(when))


def group(rows: Iterable[UsageRow], by: str, period: str = "month") -> list[ReportRow]:
    """Sum ``rows`` per user, printer, account or period. Amounts and pages count completed
    transactions only (pending and canceled ones are 0 by definition); groups sorted by key."""
    out: dict[tuple[str, str], ReportRow] = {}
    for row in rows:
        key = {
            "user": row.user,
            "printer": row.printer,
            "account": row.account,
            "period": period_key(row.created_at, period),
        }[by]
        report = out.setdefault((key, row.currency), ReportRow(key, row.currency))
        report.transactions += 1
        report.transaction_ids.append(row.transaction_id)
        report.mismatches += int(row.mismatch)
        if row.status is TransactionStatus.COMPLETED:
            report.completed += 1
            report.pages += row.pages
            report.amount += row.amount
        elif row.status is TransactionStatus.PENDING:
            report.pending += 1
        else:
            report.canceled += 1
    return [out[k] for k in sorted(out)]


REPORT_COLUMNS = (
    "key",
    "currency",
    "transactions",
    "completed",
    "pending",
    "canceled",
    "pages",
    "amount",
    "mismatches",
    "transaction_ids",
)
DETAIL_COLUMNS = (
    "transaction_id",
    "job_uuid",
    "user",
    "account",
    "printer",
    "status",
    "amount",
    "currency",
    "pages",
    "expected_pages",
    "counted",
    "unit",
    "unit_price",
    "price_source",
    "count_source",
    "mismatch",
    "mismatch_reason",
    "created_at",
)


def _csv(columns: tuple[str, ...], records: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for record in records:
        cells = []
        for column in columns:
            value = record[column]
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "yes" if value else "no"
            elif value is None:
                value = ""
            text = str(value)
            if text[:1] in ("=", "+", "-", "@") and column not in ("amount", "unit_price"):
                text = "'" + text  # no formulas in spreadsheets
            cells.append(text)
        writer.writerow(cells)
    return buffer.getvalue()


def report_csv(rows: Iterable[ReportRow]) -> str:
    """A grouped report as CSV (transaction ids space-separated)."""
    return _csv(REPORT_COLUMNS, (r.to_json() for r in rows))


def details_csv(rows: Iterable[UsageRow]) -> str:
    """Transactions as CSV, one line each."""
    return _csv(DETAIL_COLUMNS, (r.to_json() for r in rows))
