"""Personal and shared accounts: balances, holds, charges and adjustments, all journaled.

Every balance change is one conditional UPDATE of ``accounts.balance_minor`` plus one
``account_entries`` row in the caller's database transaction (on PostgreSQL one statement, the
UPDATE in a CTE), so the balance always equals the sum of its entries and two concurrent releases
can never both spend the same credit.

An account that was never configured is created on first use, *not enforced* (post-paid: its
balance may go below zero). An enforced account refuses a hold that would take the balance below
``-overdraft``; an optional page quota limits the pages charged per calendar month (UTC).
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pullprint.cloud import ledger
from pullprint.cloud.accounting.tables import account_entries, accounts, usage_details
from pullprint.cloud.db import group_members, transactions
from pullprint.errors import CloudRefused, Conflict
from pullprint.model import TransactionStatus

PERSONAL = "personal"
log = logging.getLogger(__name__)

SHARED = "shared"
KINDS = (PERSONAL, SHARED)


class InsufficientCredit(Conflict):
    """402: the account cannot cover the estimated cost of a release (or its page quota).

    A Conflict with the account's state, so the job book's automatic, direct and fast releases
    skip such a job (it stays held) instead of failing the whole request."""

    def __init__(self, message: str) -> None:
        super().__init__(402, message)


@dataclass(frozen=True)
class AccountRef:
    """An account: ``personal:alice`` or ``shared:physics``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str, owner: str) -> AccountRef:
        """``"physics"`` or ``"shared:physics"`` -> shared; ``""``/``"personal"`` -> the owner's."""
        kind, _, name = text.partition(":") if ":" in text else ("", "", text)
        if not text or text == PERSONAL or (kind == PERSONAL and name == owner):
            return cls(PERSONAL, owner)
        if kind == PERSONAL:
            raise CloudRefused(403, f"a job of {owner} cannot be charged to {text}")
        return cls(SHARED, name)


@dataclass(frozen=True)
class Account:
    """An account as shown by the API (money as Decimal currency units)."""

    kind: str
    name: str
    currency: str
    balance: Decimal
    enforced: bool
    overdraft: Decimal
    quota_pages: int | None
    members: tuple[str, ...] = ()  # shared accounts: "user:NAME" and "group:NAME" who may charge

    def to_json(self) -> dict[str, Any]:
        return {
            "account": f"{self.kind}:{self.name}",
            "kind": self.kind,
            "name": self.name,
            "currency": self.currency,
            "balance": str(self.balance),
            "enforced": self.enforced,
            "overdraft": str(self.overdraft),
            "quota_pages": self.quota_pages,
            "members": list(self.members),
        }


def _where(ref: AccountRef) -> Any:
    return sa.and_(accounts.c.kind == ref.kind, accounts.c.name == ref.name)


def ensure(conn: Connection, ref: AccountRef, currency: str) -> None:
    """Create the account (not enforced, balance 0) if it does not exist. Idempotent, also when
    another process creates it at the same moment (the insert is a savepoint; a duplicate key
    there means it exists now)."""
    if conn.execute(sa.select(accounts.c.name).where(_where(ref))).first() is not None:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                sa.insert(accounts).values(
                    kind=ref.kind,
                    name=ref.name,
                    currency=currency,
                    balance_minor=0,
                    enforced=False,
                    overdraft_minor=0,
                    quota_pages=None,
                    updated_at=time.time(),
                )
            )
    except IntegrityError:
        log.info("account %s was created meanwhile", ref)


# Built once: ``get`` and ``post`` run in every release (building costs more than running).
_BY_REF = sa.and_(
    accounts.c.kind == sa.bindparam("b_kind"), accounts.c.name == sa.bindparam("b_name")
)
_GET = sa.select(accounts).where(_BY_REF)
_POST = (
    sa.update(accounts)
    .where(_BY_REF)
    .values(balance_minor=accounts.c.balance_minor + sa.bindparam("b_amount"))
)
_POST_ENFORCED = _POST.where(
    sa.or_(
        accounts.c.enforced == sa.false(),
        accounts.c.balance_minor + sa.bindparam("b_amount") >= -accounts.c.overdraft_minor,
    )
)
_JOURNAL = sa.insert(account_entries)


def _journaled(update: sa.Update) -> sa.Insert:
    """PostgreSQL: ``update`` and its journal row in one statement (one round trip). The UPDATE
    runs in a CTE; the entry is inserted from what it returns, so a refused or missing account
    inserts nothing (no row returned). The UPDATE's row lock and re-check of its WHERE under
    concurrency are the same as on its own."""
    moved = (
        update.values(updated_at=sa.bindparam("b_now"))
        .returning(accounts.c.kind, accounts.c.name)
        .cte("moved")
    )
    entry = sa.select(
        moved.c.kind,
        moved.c.name,
        sa.bindparam("b_tx", type_=sa.BigInteger),
        sa.bindparam("b_uuid", type_=sa.String),
        sa.bindparam("b_entry", type_=sa.String),
        sa.bindparam("b_amount", type_=sa.BigInteger),
        sa.bindparam("b_comment", type_=sa.String),
        sa.bindparam("b_now", type_=sa.Float),
    )
    columns = ("account_kind", "account_name", "transaction_id", "job_uuid", "kind")
    return (
        sa.insert(account_entries)
        .from_select([*columns, "amount_minor", "comment", "created_at"], entry)
        .add_cte(moved)
        .returning(account_entries.c.id)
    )


_POST_JOURNALED = {False: _journaled(_POST), True: _journaled(_POST_ENFORCED)}


def get(conn: Connection, ref: AccountRef) -> Account | None:
    """The account, or None."""
    row = conn.execute(_GET, {"b_kind": ref.kind, "b_name": ref.name}).mappings().first()
    return None if row is None else from_row(row)


def from_row(row: Mapping[Any, Any], prefix: str = "") -> Account:
    """The model of an ``accounts`` row (its columns named ``prefix`` + column in ``row``, as in
    a join)."""
    currency = str(row[prefix + "currency"])
    return Account(
        kind=str(row[prefix + "kind"]),
        name=str(row[prefix + "name"]),
        currency=currency,
        balance=ledger.from_minor(int(row[prefix + "balance_minor"]), currency),
        enforced=bool(row[prefix + "enforced"]),
        overdraft=ledger.from_minor(int(row[prefix + "overdraft_minor"]), currency),
        quota_pages=row[prefix + "quota_pages"],
        members=tuple(row[prefix + "members"] or ()),
    )


def may_charge(conn: Connection, account: Account, user: str) -> bool:
    """True if ``user`` is a member of the shared account, directly or through a group."""
    if f"user:{user}" in account.members:
        return True
    groups = [m.removeprefix("group:") for m in account.members if m.startswith("group:")]
    if not groups:
        return False
    found = conn.execute(
        sa.select(group_members.c.user).where(
            group_members.c.user == user, group_members.c.group_name.in_(groups)
        )
    ).first()
    return found is not None


def configure(
    conn: Connection,
    ref: AccountRef,
    currency: str,
    *,
    enforced: bool | None = None,
    overdraft_minor: int | None = None,
    quota_pages: int | None = None,
    set_quota: bool = False,
    members: tuple[str, ...] | None = None,
) -> None:
    """Create the account if needed and set what is given (the quota only with ``set_quota``;
    ``quota_pages=None`` then removes it; ``members`` replaces a shared account's). Idempotent."""
    ensure(conn, ref, currency)
    values: dict[str, Any] = {"updated_at": time.time()}
    if enforced is not None:
        values["enforced"] = enforced
    if overdraft_minor is not None:
        values["overdraft_minor"] = overdraft_minor
    if set_quota:
        values["quota_pages"] = quota_pages
    if members is not None:
        values["members"] = list(members)
    conn.execute(sa.update(accounts).where(_where(ref)).values(values))


def post(
    conn: Connection,
    ref: AccountRef,
    kind: str,
    amount_minor: int,
    comment: str,
    *,
    transaction_id: int | None = None,
    job_uuid: str | None = None,
    enforce: bool = False,
) -> bool:
    """Add ``amount_minor`` (negative = debit) to the balance and journal it. With ``enforce``
    an enforced account refuses (returns False, changes nothing) if the balance would fall below
    ``-overdraft``. The account must exist (``ensure``). On PostgreSQL the update and its
    journal row are one statement."""
    enforced = enforce and amount_minor < 0
    journal = bool(amount_minor) or kind == "adjustment"
    params = {"b_kind": ref.kind, "b_name": ref.name, "b_amount": amount_minor}
    if journal and conn.dialect.name == "postgresql":
        entry: dict[str, Any] = {"b_tx": transaction_id, "b_uuid": job_uuid, "b_entry": kind}
        entry.update(b_comment=comment[:255], b_now=time.time())
        return conn.execute(_POST_JOURNALED[enforced], {**params, **entry}).first() is not None
    query = _POST_ENFORCED if enforced else _POST
    done = conn.execute(query, {**params, "updated_at": time.time()})
    if done.rowcount != 1:
        return False
    if journal:
        conn.execute(
            _JOURNAL,
            {
                "account_kind": ref.kind,
                "account_name": ref.name,
                "transaction_id": transaction_id,
                "job_uuid": job_uuid,
                "kind": kind,
                "amount_minor": amount_minor,
                "comment": comment[:255],
                "created_at": time.time(),
            },
        )
    return True


def month_pages(conn: Connection, ref: AccountRef, now: float) -> int:
    """Pages charged to the account this calendar month (UTC): completed transactions' counts
    plus the expected impressions of those still pending with a hold."""
    start = time.gmtime(now)
    since = float(calendar.timegm((start.tm_year, start.tm_mon, 1, 0, 0, 0)))
    where = sa.and_(
        usage_details.c.account_kind == ref.kind,
        usage_details.c.account_name == ref.name,
        usage_details.c.released_at >= since,
    )
    done = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(transactions.c.pages), 0))
        .select_from(
            usage_details.join(transactions, transactions.c.id == usage_details.c.transaction_id)
        )
        .where(where, transactions.c.status == TransactionStatus.COMPLETED.value)
    ).scalar_one()
    pending = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(usage_details.c.expected_impressions), 0))
        .select_from(
            usage_details.join(transactions, transactions.c.id == usage_details.c.transaction_id)
        )
        .where(where, transactions.c.status == TransactionStatus.PENDING.value)
        .where(usage_details.c.held_minor > 0)
    ).scalar_one()
    return int(done) + int(pending)


def entries(conn: Connection, ref: AccountRef, limit: int = 1000) -> list[dict[str, Any]]:
    """The account's journal, oldest first (ids, kinds, signed amounts in minor units)."""
    rows = conn.execute(
        sa.select(account_entries)
        .where(
            account_entries.c.account_kind == ref.kind,
            account_entries.c.account_name == ref.name,
        )
        .order_by(account_entries.c.id)
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]
