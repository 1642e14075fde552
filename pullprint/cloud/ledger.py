"""The accounting ledger: "Printer Usage" transactions and money conversions.

The job book calls these functions inside its own database transactions; the price lists,
balances, reconciliation and PaperCut live in ``pullprint.cloud.accounting`` (docs/accounting.md).

Money is stored as integer minor units (``amount_minor``; cents for EUR, whole yen for JPY) and
shown as a Decimal in currency units; a printer price is stored as integer millionths of a
currency unit (``price_micro``) so fractional-cent prices stay exact. Floats never appear.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pullprint.cloud.db import transactions
from pullprint.model import Job, Printer, Transaction, TransactionStatus, assemble

log = logging.getLogger(__name__)

KIND_PRINTER_USAGE = "printer-usage"
PRICE_DECIMALS = 6
MAX_PRICE = Decimal(1_000_000)

# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
_MINOR_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def minor_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _MINOR_EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` in currency units as integer minor units, rounded half up."""
    exp = minor_exponent(currency)
    return int(amount.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units as a Decimal in currency units (``150`` EUR -> ``Decimal("1.50")``)."""
    return Decimal(minor).scaleb(-minor_exponent(currency))


def price_to_micro(price: Decimal) -> int:
    """A per-page price as integer millionths; ValueError if it has more than 6 decimals."""
    micro = price.scaleb(PRICE_DECIMALS)
    if micro != micro.to_integral_value():
        raise ValueError(f"price_per_page has more than {PRICE_DECIMALS} decimal places")
    return int(micro)


def micro_to_price(micro: int) -> Decimal:
    """Integer millionths as a normalised Decimal price (``50000`` -> ``Decimal("0.05")``)."""
    value = Decimal(micro).scaleb(-PRICE_DECIMALS)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def usage_minor(impressions: int, price_micro: int, currency: str) -> int:
    """The cost of ``impressions`` pages at ``price_micro`` in minor units (exact, half up)."""
    return to_minor(Decimal(impressions) * Decimal(price_micro).scaleb(-PRICE_DECIMALS), currency)


_OPEN_PENDING = sa.insert(transactions)  # built once (its parameters come at execution)


def open_pending(conn: Connection, job_uuid: str, user: str, currency: str, now: float) -> None:
    """Insert the job's pending "printer-usage" transaction (amount 0) in ``conn``'s transaction."""
    conn.execute(
        _OPEN_PENDING,
        {
            "job_uuid": job_uuid,
            "user": user,
            "kind": KIND_PRINTER_USAGE,
            "amount_minor": 0,
            "currency": currency,
            "status": TransactionStatus.PENDING.value,
            "pages": 0,
            "created_at": now,
            "updated_at": now,
        },
    )


def complete(conn: Connection, job_uuid: str, pages: int, amount_minor: int, now: float) -> bool:
    """The node reported the job completed: complete its pending transaction with its cost.

    With accounting details (``accounting.usage``, recorded at release) the cost is recomputed
    from the printer's price list and reconciled count, and the release's hold becomes the charge;
    on a PaperCut-managed printer the transaction stays pending until PaperCut's print log has
    the cost. Without details, ``pages`` and ``amount_minor`` are used as given. Returns whether
    the transaction was completed now (False if it was not pending)."""
    from pullprint.cloud.accounting import usage

    return usage.settle_completed(conn, job_uuid, pages, amount_minor, now)


def cancel(conn: Connection, job_uuid: str, now: float) -> bool:
    """Cancel the job's pending transaction (amount 0) and give back its hold; False if it was
    not pending. Used for cancel and expiry."""
    from pullprint.cloud.accounting import usage

    return usage.settle_canceled(conn, job_uuid, now)


def reserve(conn: Connection, job: Job, printer: Printer, options: dict[str, str]) -> None:
    """At release, inside the release's database transaction: price the job, hold its estimated
    cost on the chosen account, or raise InsufficientCredit (402) so the release rolls back.
    Removes the accounting-only ``account`` key from ``options``."""
    from pullprint.cloud.accounting import usage

    usage.reserve(conn, job, printer, options)


def release_hold(conn: Connection, job_uuid: str, now: float) -> None:
    """The print-out failed: give back its hold; the transaction stays pending."""
    from pullprint.cloud.accounting import usage

    usage.settle_failed(conn, job_uuid, now)


def from_row(row: Mapping[Any, Any], prefix: str = "", *, account: bool = False) -> Transaction:
    """The model of a ``transactions`` row (its columns named ``prefix`` + column in ``row``,
    as in a join); with ``account`` the shared account charged too (else empty)."""
    currency = str(row[prefix + "currency"])
    return assemble(
        Transaction,
        {
            "id": int(row[prefix + "id"]),
            "job_uuid": str(row[prefix + "job_uuid"]),
            "user": str(row[prefix + "user"]),
            "kind": str(row[prefix + "kind"]),
            "amount": from_minor(int(row[prefix + "amount_minor"]), currency),
            "currency": currency,
            "status": TransactionStatus(row[prefix + "status"]),
            "pages": int(row[prefix + "pages"]),
            "account": str(row[prefix + "account"] or "") if account else "",
        },
    )
