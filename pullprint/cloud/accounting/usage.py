"""The life of a Printer Usage transaction beyond the core ledger: estimate and hold at release,
reconcile and charge at completion, release the hold on cancel or failure.

Design: **reserve at release, charge at completion.** A release places a hold of the estimated
cost on the chosen account (personal, or a shared account for delegated print); an enforced
account that cannot cover it refuses the release (HTTP 402) and nothing changes. Completion turns
the hold into the real charge, computed from the printer's count; a cancel, an expiry or a failure
gives the hold back at once (a failed print-out keeps its pending transaction and can be released
again, which places a new hold). On a PaperCut-managed printer the transaction stays pending
(external) after the node reports the end until PaperCut's print log gives the cost
(``papercut.PaperCutSync``).

Every function here runs inside the caller's database transaction and says what it changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pullprint.cloud import ledger
from pullprint.cloud.accounting import accounts
from pullprint.cloud.accounting.accounts import PERSONAL, Account, AccountRef, InsufficientCredit
from pullprint.cloud.accounting.pricing import (
    JobAttributes,
    PriceEntry,
    PriceList,
    cost_minor,
    expected_counts,
    reconcile,
)
from pullprint.cloud.accounting.tables import accounting_printers, price_entries, usage_details
from pullprint.cloud.accounting.tables import accounts as account_rows
from pullprint.cloud.db import jobs, transactions
from pullprint.errors import Forbidden, NotFound
from pullprint.model import Job, Printer, TransactionStatus

log = logging.getLogger(__name__)

# The node sends every job to the printer as "pullprint-<uuid>" (daemon/node.py): the unique
# document name PaperCut logs, by which its print log is matched (as SavaPage does).
DOCUMENT_PREFIX = "pullprint-"
# Release options that are accounting choices, not printer options: taken out before the node
# sees them (its ticket refuses unknown options).
ACCOUNT_OPTION = "account"

PENDING_EXTERNAL = "Pending (external)"


def document_name(job_uuid: str) -> str:
    """The unique document name of a job at the printer (and in PaperCut's print log)."""
    return f"{DOCUMENT_PREFIX}{job_uuid}"


@dataclass(frozen=True)
class PrinterPricing:
    """A printer's price list (None: the printer's flat price per impression) and whether
    PaperCut manages it."""

    price_list: PriceList | None
    papercut: bool


# Built once: these run often (building one costs more than running it).
_PRICING = sa.select(accounting_printers).where(
    accounting_printers.c.printer == sa.bindparam("b_printer")
)
_DETAILS = sa.select(usage_details).where(usage_details.c.job_uuid == sa.bindparam("b_uuid"))
_ADD_DETAILS = sa.insert(usage_details)

# What a hold reads, in one statement (one round trip; it runs in every release): the account,
# the printer's accounting settings and price entries (one row per entry, in order), the job's
# usage details of an earlier release; each outer-joined to a single row, so a missing one is
# NULLs (the columns of its prefix).
_ACCOUNT, _SETTINGS, _ENTRY, _OLD = "a_", "p_", "e_", "d_"
_ONE = sa.select(sa.literal_column("1").label("one")).subquery("one")
_HOLD_READS = (
    sa.select(
        *(c.label(_ACCOUNT + c.name) for c in account_rows.c),
        *(c.label(_SETTINGS + c.name) for c in accounting_printers.c),
        *(c.label(_ENTRY + c.name) for c in price_entries.c),
        *(c.label(_OLD + c.name) for c in usage_details.c),
    )
    .select_from(
        _ONE.outerjoin(
            account_rows,
            sa.and_(
                account_rows.c.kind == sa.bindparam("b_kind"),
                account_rows.c.name == sa.bindparam("b_name"),
            ),
        )
        .outerjoin(accounting_printers, accounting_printers.c.printer == sa.bindparam("b_printer"))
        .outerjoin(price_entries, price_entries.c.printer == accounting_printers.c.printer)
        .outerjoin(usage_details, usage_details.c.job_uuid == sa.bindparam("b_uuid"))
    )
    .order_by(price_entries.c.id)
)


def _pricing(
    settings: Mapping[Any, Any] | None, entries: Iterable[Mapping[Any, Any]]
) -> PrinterPricing:
    """The pricing of an ``accounting_printers`` row (None: defaults) and its price entries."""
    if settings is None:
        return PrinterPricing(None, False)
    listed = tuple(
        PriceEntry(
            media=str(e["media"]),
            color=str(e["color"]),
            sides=str(e["sides"]),
            price=ledger.micro_to_price(int(e["price_micro"])),
        )
        for e in entries
    )
    price_list = PriceList(str(settings["unit"]), listed) if listed else None
    return PrinterPricing(price_list, bool(settings["papercut"]))


def load_pricing(conn: Connection, printer: str) -> PrinterPricing:
    """The printer's accounting settings; defaults when none were set. Changes nothing."""
    row = conn.execute(_PRICING, {"b_printer": printer}).mappings().first()
    if row is None:
        return PrinterPricing(None, False)
    entries = conn.execute(
        sa.select(price_entries)
        .where(price_entries.c.printer == printer)
        .order_by(price_entries.c.id)
    ).mappings()
    return _pricing(row, entries)


def _unprefixed(row: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


def _hold_reads(
    conn: Connection, ref: AccountRef, printer: str, job_uuid: str
) -> tuple[Account | None, PrinterPricing, Mapping[str, Any] | None]:
    """The account (None if missing), the printer's pricing and the job's old usage details
    (None if it has none): what ``accounts.get``, ``load_pricing`` and ``_details`` read, in one
    statement. Changes nothing."""
    params = {"b_kind": ref.kind, "b_name": ref.name, "b_printer": printer, "b_uuid": job_uuid}
    rows = conn.execute(_HOLD_READS, params).mappings().all()
    first = rows[0]  # the outer joins give at least one row
    account = None
    if first[_ACCOUNT + "kind"] is not None:
        account = accounts.from_row(first, _ACCOUNT)
    settings = None
    if first[_SETTINGS + "printer"] is not None:
        settings = _unprefixed(first, _SETTINGS)
    entries = [_unprefixed(r, _ENTRY) for r in rows if r[_ENTRY + "id"] is not None]
    old = _unprefixed(first, _OLD) if first[_OLD + "job_uuid"] is not None else None
    return account, _pricing(settings, entries), old


def store_pricing(
    conn: Connection, printer: str, price_list: PriceList | None, papercut: bool
) -> None:
    """Replace the printer's price list and PaperCut flag (idempotent)."""
    conn.execute(sa.delete(price_entries).where(price_entries.c.printer == printer))
    conn.execute(sa.delete(accounting_printers).where(accounting_printers.c.printer == printer))
    conn.execute(
        sa.insert(accounting_printers).values(
            printer=printer,
            unit=price_list.unit if price_list else "impression",
            papercut=papercut,
            updated_at=time.time(),
        )
    )
    for entry in price_list.entries if price_list else ():
        conn.execute(
            sa.insert(price_entries).values(
                printer=printer,
                media=entry.media,
                color=entry.color,
                sides=entry.sides,
                price_micro=ledger.price_to_micro(entry.price),
            )
        )


def _transaction(conn: Connection, job_uuid: str) -> Mapping[Any, Any]:
    row = (
        conn.execute(sa.select(transactions).where(transactions.c.job_uuid == job_uuid))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(404, f"job {job_uuid} has no transaction")
    return row


def _details(conn: Connection, job_uuid: str) -> Mapping[Any, Any] | None:
    return conn.execute(_DETAILS, {"b_uuid": job_uuid}).mappings().first()


def _job_row(conn: Connection, job_uuid: str) -> Mapping[Any, Any]:
    row = conn.execute(sa.select(jobs).where(jobs.c.uuid == job_uuid)).mappings().first()
    if row is None:
        raise NotFound(404, f"no job {job_uuid}")
    return row


def _chosen_account(job: Job, options: dict[str, str]) -> AccountRef:
    """The account the release charges: the job's recorded choice (``job.account``, as the
    release being made sets it), else the ``account`` release option (removed from
    ``options``), else the owner's personal account."""
    chosen = options.pop(ACCOUNT_OPTION, "")
    if job.account:
        chosen = job.account
    return AccountRef.parse(chosen.strip(), job.owner)


def _transaction_of(conn: Connection, job: Job) -> tuple[int, str]:
    """The id and currency of the job's transaction: from ``job`` when it was read with it
    (neither ever changes), else from the database."""
    if job.transaction is not None:
        return job.transaction.id, job.transaction.currency
    tx = _transaction(conn, job.uuid)
    return int(tx["id"]), str(tx["currency"])


def _money(minor: int, currency: str) -> str:
    return f"{ledger.from_minor(minor, currency)} {currency}"


def _give_back_hold(conn: Connection, details: Mapping[Any, Any], why: str) -> None:
    held = int(details["held_minor"])
    if held <= 0:
        return
    ref = AccountRef(str(details["account_kind"]), str(details["account_name"]))
    accounts.post(
        conn,
        ref,
        "release",
        held,
        f"hold given back: {why}",
        transaction_id=int(details["transaction_id"]),
        job_uuid=str(details["job_uuid"]),
    )
    conn.execute(
        sa.update(usage_details)
        .where(usage_details.c.job_uuid == details["job_uuid"])
        .values(held_minor=0)
    )


def reserve(conn: Connection, job: Job, printer: Printer, options: dict[str, str]) -> None:
    """At release: price the job for ``printer``, check and hold the estimated cost on the
    chosen account, record the transaction's details. Raises InsufficientCredit (402) if an
    enforced account cannot cover it (the caller's transaction then rolls back). Removes the
    ``account`` key from ``options``. A re-release (after a failure) replaces the old hold.
    ``job.account`` must be the account choice the release records (``jobs.account``)."""
    tx_id, currency = _transaction_of(conn, job)
    ref = _chosen_account(job, options)
    account, pricing, old = _hold_reads(conn, ref, printer.name, job.uuid)
    if ref.kind == PERSONAL:
        if account is None:
            accounts.ensure(conn, ref, currency)
            account = accounts.get(conn, ref)
    else:
        if account is None:
            raise NotFound(404, f"no shared account {ref.name}; an administrator creates it first")
        if not accounts.may_charge(conn, account, job.owner):
            raise Forbidden(
                403,
                f"{job.owner} may not charge shared account {ref.name}: an administrator adds "
                "them (or a group of theirs) to its members",
            )
    attrs = JobAttributes.from_options(job.options, job.copies, options)
    expected = expected_counts(job.pages, attrs)
    unit, source = "impression", "flat"
    price_micro = ledger.price_to_micro(printer.price_per_page)
    if pricing.price_list is not None:
        listed = pricing.price_list.price_for(attrs)
        if listed is not None:
            unit, source = pricing.price_list.unit, "price-list"
            price_micro = ledger.price_to_micro(listed)
    if pricing.papercut:
        source = "papercut"
    count = expected.impressions if unit == "impression" else expected.sheets
    estimate = cost_minor(count, price_micro, ledger.minor_exponent(currency))
    now = time.time()
    if old is not None:
        _give_back_hold(conn, old, "released again")
        conn.execute(sa.delete(usage_details).where(usage_details.c.job_uuid == job.uuid))
    assert account is not None
    if account.quota_pages is not None:
        used = accounts.month_pages(conn, ref, now)
        if used + expected.impressions > account.quota_pages:
            raise InsufficientCredit(
                f"account {ref} has used {used} of its {account.quota_pages} pages this month; "
                f"this job needs {expected.impressions} more"
            )
    if not accounts.post(
        conn,
        ref,
        "hold",
        -estimate,
        f"hold for job {job.uuid} on {printer.name}",
        transaction_id=tx_id,
        job_uuid=job.uuid,
        enforce=True,
    ):
        if old is not None:  # its balance with the old hold given back
            account = accounts.get(conn, ref) or account
        raise InsufficientCredit(
            f"account {ref} cannot cover this job: it needs an estimated "
            f"{_money(estimate, currency)} ({count} {unit}s) but the balance is "
            f"{account.balance} {currency} and the overdraft limit {account.overdraft} "
            f"{currency}; top up the account or choose another account"
        )
    conn.execute(
        _ADD_DETAILS,
        {
            "transaction_id": tx_id,
            "job_uuid": job.uuid,
            "account_kind": ref.kind,
            "account_name": ref.name,
            "printer": printer.name,
            "color": attrs.color,
            "sides": attrs.sides,
            "media": attrs.media,
            "copies": attrs.copies,
            "unit": unit,
            "unit_price_micro": price_micro,
            "price_source": source,
            "expected_impressions": expected.impressions,
            "expected_sheets": expected.sheets,
            "printer_impressions": None,
            "printer_sheets": None,
            "snmp_delta": None,
            "counted": None,
            "count_source": "document",
            "mismatch": False,
            "mismatch_reason": "",
            "estimate_minor": estimate,
            "held_minor": estimate,
            "papercut": pricing.papercut,
            "papercut_document": document_name(job.uuid) if pricing.papercut else None,
            "external_status": "released",
            "papercut_adjusted": False,
            "released_at": now,
            "settled_at": None,
        },
    )
    log.info("job %s: held %s on %s", job.uuid, _money(estimate, currency), ref)


def _complete_tx(conn: Connection, job_uuid: str, pages: int, amount: int, now: float) -> bool:
    done = conn.execute(
        sa.update(transactions)
        .where(
            transactions.c.job_uuid == job_uuid,
            transactions.c.status == TransactionStatus.PENDING.value,
        )
        .values(
            status=TransactionStatus.COMPLETED.value,
            amount_minor=amount,
            pages=pages,
            updated_at=now,
        )
    )
    return done.rowcount == 1


def _charge(conn: Connection, details: Mapping[Any, Any], amount: int, why: str) -> None:
    """Give back the hold and post the real charge (never refused: the job printed)."""
    _give_back_hold(conn, details, why)
    ref = AccountRef(str(details["account_kind"]), str(details["account_name"]))
    accounts.post(
        conn,
        ref,
        "charge",
        -amount,
        f"{why} (job {details['job_uuid']})",
        transaction_id=int(details["transaction_id"]),
        job_uuid=str(details["job_uuid"]),
    )


def settle_completed(
    conn: Connection, job_uuid: str, pages: int, amount_minor: int, now: float
) -> bool:
    """The node reported the print-out completed (the job row already holds the printer's
    impressions and sheets). Reconcile and charge; on a PaperCut printer only record the counts
    and leave the transaction pending (external). Without details (a job released before
    accounting existed) complete with the core's ``pages`` and ``amount_minor``. Returns whether
    the transaction was completed now."""
    details = _details(conn, job_uuid)
    if details is None:
        return _complete_tx(conn, job_uuid, pages, amount_minor, now)
    job = _job_row(conn, job_uuid)
    attrs = JobAttributes(
        str(details["color"]), str(details["sides"]), str(details["media"]), int(details["copies"])
    )
    expected = expected_counts(int(job["pages"]), attrs)
    rec = reconcile(
        expected,
        attrs,
        printer_impressions=job["impressions"],
        printer_sheets=job["sheets"],
        snmp_delta=details["snmp_delta"],
    )
    values: dict[str, Any] = {
        "printer_impressions": job["impressions"],
        "printer_sheets": job["sheets"],
        "mismatch": rec.mismatch,
        "mismatch_reason": rec.reason,
        "count_source": rec.source,
    }
    if details["papercut"]:
        values["external_status"] = "printed; waiting for PaperCut's print log"
        conn.execute(
            sa.update(usage_details).where(usage_details.c.job_uuid == job_uuid).values(values)
        )
        return False
    tx = _transaction(conn, job_uuid)
    count = rec.counts.impressions if details["unit"] == "impression" else rec.counts.sheets
    amount = cost_minor(
        count, int(details["unit_price_micro"]), ledger.minor_exponent(str(tx["currency"]))
    )
    if not _complete_tx(conn, job_uuid, rec.counts.impressions, amount, now):
        return False
    _charge(conn, details, amount, f"printed {count} {details['unit']}s on {details['printer']}")
    values.update(counted=count, external_status="completed", settled_at=now)
    conn.execute(
        sa.update(usage_details).where(usage_details.c.job_uuid == job_uuid).values(values)
    )
    return True


def settle_canceled(conn: Connection, job_uuid: str, now: float, why: str = "canceled") -> bool:
    """Cancel the pending transaction at 0 and give back its hold. Returns whether it was
    pending."""
    done = conn.execute(
        sa.update(transactions)
        .where(
            transactions.c.job_uuid == job_uuid,
            transactions.c.status == TransactionStatus.PENDING.value,
        )
        .values(status=TransactionStatus.CANCELED.value, amount_minor=0, updated_at=now)
    )
    if done.rowcount != 1:
        return False
    details = _details(conn, job_uuid)
    if details is not None:
        _give_back_hold(conn, details, why)
        conn.execute(
            sa.update(usage_details)
            .where(usage_details.c.job_uuid == job_uuid)
            .values(external_status=why[:64], settled_at=now)
        )
    return True


def settle_failed(conn: Connection, job_uuid: str, now: float) -> None:
    """The print-out failed: give back the hold; the transaction stays pending (the owner may
    release the job at another printer, which holds again)."""
    details = _details(conn, job_uuid)
    if details is not None:
        _give_back_hold(conn, details, "the print-out failed")
        conn.execute(
            sa.update(usage_details)
            .where(usage_details.c.job_uuid == job_uuid)
            .values(external_status="failed; can be released again")
        )


def settle_papercut(
    conn: Connection,
    job_uuid: str,
    *,
    printed: bool,
    cost_minor_units: int,
    total_pages: int,
    status: str,
    now: float,
) -> bool:
    """PaperCut's print log has the job: printed -> complete with PaperCut's cost and pages;
    otherwise (cancelled, denied, refunded) -> cancel at 0. Returns whether it settled now."""
    details = _details(conn, job_uuid)
    if details is None:
        return False
    if not printed:
        return settle_canceled(conn, job_uuid, now, status)
    job = _job_row(conn, job_uuid)
    attrs = JobAttributes(
        str(details["color"]), str(details["sides"]), str(details["media"]), int(details["copies"])
    )
    rec = reconcile(
        expected_counts(int(job["pages"]), attrs),
        attrs,
        printer_impressions=job["impressions"],
        snmp_delta=details["snmp_delta"],
        papercut_pages=total_pages,
    )
    if not _complete_tx(conn, job_uuid, total_pages, cost_minor_units, now):
        return False
    _charge(conn, details, cost_minor_units, f"PaperCut cost of {total_pages} pages")
    conn.execute(
        sa.update(usage_details)
        .where(usage_details.c.job_uuid == job_uuid)
        .values(
            counted=total_pages,
            count_source="papercut",
            mismatch=rec.mismatch,
            mismatch_reason=rec.reason,
            external_status=status[:64],
            settled_at=now,
        )
    )
    return True


def record_counters(conn: Connection, job_uuid: str, snmp_delta: int) -> bool:
    """A node's SNMP impression-counter delta for the job. Before settlement it is used in the
    reconciliation; after, it only updates the mismatch flag (the charge stays). Returns whether
    the job has accounting details."""
    details = _details(conn, job_uuid)
    if details is None:
        return False
    values: dict[str, Any] = {"snmp_delta": snmp_delta}
    expected = int(details["expected_impressions"])
    if details["settled_at"] is not None and snmp_delta != expected:
        reason = f"snmp counted {snmp_delta} impressions, the document and plan expect {expected}"
        old = str(details["mismatch_reason"])
        values.update(mismatch=True, mismatch_reason=(f"{old}; {reason}" if old else reason)[:255])
    conn.execute(
        sa.update(usage_details).where(usage_details.c.job_uuid == job_uuid).values(values)
    )
    return True
