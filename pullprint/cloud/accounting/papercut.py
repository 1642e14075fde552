"""PaperCut-managed printers: the cost from PaperCut's print log, balances through its web services.

Built against PaperCut MF/NG's documented interfaces (no PaperCut server was available; see
docs/accounting.md for exactly what was and was not tried):

* The print log: the table ``tbl_printer_usage_log`` of PaperCut's external database, read-only.
  A job is matched by its unique document name (``pullprint-<uuid>``, the job-name the node sends),
  as SavaPage does: ``SELECT document_name, printed, cancelled, refunded, usage_allowed,
  denied_reason, usage_cost, total_pages ... WHERE job_type = 'PRINT' AND document_name IN (...)``.
* The web services API: XML-RPC at ``http://server:9191/rpc/api/xmlrpc``, every method's first
  parameter the auth token: ``api.adjustUserAccountBalance(authToken, username, adjustment,
  comment, accountName)``, ``api.getUserAccountBalance(authToken, username, accountName)``,
  ``api.adjustSharedAccountAccountBalance(authToken, accountName, adjustment, comment)``,
  ``api.getSharedAccountAccountBalance(authToken, accountName)``, ``api.isUserExists``,
  ``api.isSharedAccountExists``.

Money stays exact on the wire too: the XML-RPC client writes Decimals as ``<double>`` text and
reads ``<double>`` answers back as Decimals (Python's stock client would pass through float).

What pullprint does with them (``PaperCutSync.run_once``, run every ``poll_ms`` by the server and
on demand by ``POST /api/v1/accounting/papercut/sync``): a pending transaction of a job released
to a PaperCut-managed printer is settled from its log row (printed -> completed with PaperCut's
``usage_cost``; cancelled, denied or refunded -> canceled at 0). PaperCut charged the printing
user's PaperCut account itself; when pullprint charged the job to a shared account (delegated
print), the adapter moves that charge in PaperCut too: the user's account is credited and the
shared account debited with the same amount, each call commented with the job's uuid.
"""

from __future__ import annotations

import logging
import time
import xmlrpc.client
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.parsers import expat

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pullprint.cloud import ledger
from pullprint.cloud.accounting import usage
from pullprint.cloud.accounting.accounts import SHARED
from pullprint.cloud.accounting.tables import papercut_settings, usage_details
from pullprint.cloud.db import jobs, make_engine, transactions
from pullprint.errors import PullprintError
from pullprint.model import TransactionStatus

log = logging.getLogger(__name__)

XMLRPC_PATH = "/rpc/api/xmlrpc"

_log_metadata = sa.MetaData()
# The documented columns pullprint reads (PaperCut's table has these and more).
printer_usage_log = sa.Table(
    "tbl_printer_usage_log",
    _log_metadata,
    sa.Column("printer_usage_log_id", sa.BigInteger, primary_key=True),
    sa.Column("document_name", sa.String),
    sa.Column("job_type", sa.String),
    sa.Column("printed", sa.String),
    sa.Column("cancelled", sa.String),
    sa.Column("refunded", sa.String),
    sa.Column("usage_allowed", sa.String),
    sa.Column("denied_reason", sa.String),
    sa.Column("usage_cost", sa.Numeric(19, 6)),
    sa.Column("total_pages", sa.Integer),
)


class PaperCutError(PullprintError):
    """PaperCut's database or web services failed or refused (the message says which)."""


@dataclass(frozen=True)
class UsageLogEntry:
    """One row of PaperCut's print log, as pullprint reads it."""

    document_name: str
    printed: bool
    cancelled: bool
    refunded: bool
    usage_allowed: bool
    denied_reason: str
    usage_cost: Decimal
    total_pages: int

    @property
    def status(self) -> str:
        """A short status for the transaction: printed, cancelled, denied: ..., refunded."""
        if not self.usage_allowed:
            return f"denied in PaperCut: {self.denied_reason}".strip()
        if self.cancelled:
            return "cancelled in PaperCut"
        if self.refunded:
            return "refunded in PaperCut"
        return "printed (PaperCut)" if self.printed else "pending in PaperCut"

    @property
    def final(self) -> bool:
        """Whether the row says how the job ended (printed, cancelled, denied or refunded)."""
        return self.printed or self.cancelled or self.refunded or not self.usage_allowed

    @property
    def charged(self) -> bool:
        """Printed, allowed and not refunded: PaperCut's cost applies."""
        return self.printed and self.usage_allowed and not self.refunded and not self.cancelled


def _yes(value: Any) -> bool:
    return str(value or "").strip().upper() == "Y"


class PaperCutLog:
    """Reads ``tbl_printer_usage_log`` from PaperCut's database (read-only). ``engine`` is
    injected; ``close`` disposes it only if it was made here."""

    def __init__(self, database_url: str = "", engine: Engine | None = None) -> None:
        self._own = engine is None
        self._engine = engine if engine is not None else make_engine(database_url)

    def close(self) -> None:
        """Dispose of the engine if this object made it (idempotent)."""
        if self._own:
            self._engine.dispose()

    def find(self, document_names: Iterable[str]) -> dict[str, UsageLogEntry]:
        """The newest print-log row of each name (``job_type = 'PRINT'``); absent names are
        missing from the answer. Changes nothing."""
        names = sorted(set(document_names))
        if not names:
            return {}
        t = printer_usage_log
        query = (
            sa.select(t)
            .where(t.c.job_type == "PRINT", t.c.document_name.in_(names))
            .order_by(t.c.printer_usage_log_id)
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except sa.exc.SQLAlchemyError as exc:
            raise PaperCutError(f"reading PaperCut's print log failed: {exc}") from exc
        found: dict[str, UsageLogEntry] = {}
        for row in rows:  # ascending ids: the newest row of a name wins
            found[str(row["document_name"])] = UsageLogEntry(
                document_name=str(row["document_name"]),
                printed=_yes(row["printed"]),
                cancelled=_yes(row["cancelled"]),
                refunded=_yes(row["refunded"]),
                usage_allowed=row["usage_allowed"] is None or _yes(row["usage_allowed"]),
                denied_reason=str(row["denied_reason"] or ""),
                usage_cost=Decimal(str(row["usage_cost"] or 0)),
                total_pages=int(row["total_pages"] or 0),
            )
        return found


# -- XML-RPC with exact money -------------------------------------------------------------------


class _Marshaller(xmlrpc.client.Marshaller):
    """The stock marshaller, plus Decimal written as an exact ``<double>``."""

    dispatch: dict[Any, Any] = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_decimal(self, value: Decimal, write: Any) -> None:
        if not value.is_finite():
            raise PaperCutError("a money amount must be finite")
        write("<value><double>")
        write(format(value, "f"))
        write("</double></value>\n")

    dispatch[Decimal] = dump_decimal


class _Unmarshaller(xmlrpc.client.Unmarshaller):
    """The stock unmarshaller, but ``<double>`` values become Decimals (exact money)."""

    dispatch: dict[Any, Any] = dict(xmlrpc.client.Unmarshaller.dispatch)

    def end_double_decimal(self, data: str) -> None:
        try:
            self.append(Decimal(data.strip()))
        except InvalidOperation as exc:
            raise PaperCutError(f"PaperCut answered a bad number {data[:40]!r}") from exc
        self._value = False

    dispatch["double"] = end_double_decimal


def encode_call(method: str, params: tuple[Any, ...]) -> bytes:
    """The XML-RPC request body for ``method(*params)``. Pure."""
    body = _Marshaller("utf-8", allow_none=False).dumps(params)
    text = (
        "<?xml version='1.0'?>\n<methodCall>\n"
        f"<methodName>{xmlrpc.client.escape(method)}</methodName>\n{body}</methodCall>\n"
    )
    return text.encode("utf-8")


def decode_response(data: bytes) -> Any:
    """The value of an XML-RPC response; raises PaperCutError for a fault or bad XML. Pure."""
    unmarshaller = _Unmarshaller()
    parser = xmlrpc.client.ExpatParser(unmarshaller)
    try:
        parser.feed(data)
        parser.close()
        values = unmarshaller.close()
    except xmlrpc.client.Fault as exc:
        raise PaperCutError(f"PaperCut refused: {exc.faultString}") from exc
    except (expat.ExpatError, xmlrpc.client.ResponseError) as exc:
        raise PaperCutError(f"PaperCut answered malformed XML-RPC: {exc}") from exc
    return values[0] if values else None


class PaperCutWebServices:
    """PaperCut's XML-RPC web services at ``url`` with ``auth_token`` (never logged).

    ``session`` is injected or made here; only a session made here is closed by ``close``.
    """

    def __init__(
        self,
        url: str,
        auth_token: str,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._token = auth_token
        self._own = session is None
        self.session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"PaperCutWebServices({self.url!r})"

    def close(self) -> None:
        """Close the session if this object made it (idempotent)."""
        if self._own:
            self.session.close()

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method(authToken, *params)``; PaperCutError if it fails or faults."""
        body = encode_call(method, (self._token, *params))
        try:
            answer = self.session.post(
                self.url, data=body, headers={"Content-Type": "text/xml"}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PaperCutError(f"{method}: PaperCut did not answer: {exc}") from exc
        with answer:
            if answer.status_code != 200:
                raise PaperCutError(f"{method}: PaperCut answered HTTP {answer.status_code}")
            return decode_response(answer.content)

    def is_user_exists(self, username: str) -> bool:
        """``api.isUserExists(authToken, username)``."""
        return bool(self.call("api.isUserExists", username))

    def get_user_account_balance(self, username: str, account_name: str = "") -> Decimal:
        """``api.getUserAccountBalance(authToken, username, accountName)`` ("" = built-in)."""
        return _decimal(self.call("api.getUserAccountBalance", username, account_name))

    def adjust_user_account_balance(
        self, username: str, adjustment: Decimal, comment: str, account_name: str = ""
    ) -> None:
        """``api.adjustUserAccountBalance(authToken, username, adjustment, comment,
        accountName)``: positive adds credit, negative charges. Not idempotent."""
        self.call("api.adjustUserAccountBalance", username, adjustment, comment, account_name)

    def is_shared_account_exists(self, account_name: str) -> bool:
        """``api.isSharedAccountExists(authToken, accountName)``."""
        return bool(self.call("api.isSharedAccountExists", account_name))

    def get_shared_account_balance(self, account_name: str) -> Decimal:
        """``api.getSharedAccountAccountBalance(authToken, sharedAccountName)``."""
        return _decimal(self.call("api.getSharedAccountAccountBalance", account_name))

    def adjust_shared_account_balance(
        self, account_name: str, adjustment: Decimal, comment: str
    ) -> None:
        """``api.adjustSharedAccountAccountBalance(authToken, accountName, adjustment,
        comment)``. Not idempotent."""
        self.call("api.adjustSharedAccountAccountBalance", account_name, adjustment, comment)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise PaperCutError(f"PaperCut answered {type(value).__name__} where a number was expected")


# -- settings and the sync --------------------------------------------------------------------


@dataclass(frozen=True)
class PaperCutSettings:
    """How to reach PaperCut. ``auth_token`` is never shown by the API nor logged."""

    database_url: str
    xmlrpc_url: str
    auth_token: str
    poll_ms: int = 5000

    def to_json(self) -> dict[str, Any]:
        """The settings without the token."""
        return {
            "database_url": sa.make_url(self.database_url).render_as_string(hide_password=True),
            "xmlrpc_url": self.xmlrpc_url,
            "auth_token_set": bool(self.auth_token),
            "poll_ms": self.poll_ms,
        }


def load_settings(engine: Engine) -> PaperCutSettings | None:
    """The stored settings, or None when PaperCut is not configured. Changes nothing."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(papercut_settings)).mappings().first()
    if row is None:
        return None
    return PaperCutSettings(
        database_url=str(row["database_url"]),
        xmlrpc_url=str(row["xmlrpc_url"]),
        auth_token=str(row["auth_token"]),
        poll_ms=int(row["poll_ms"]),
    )


def store_settings(engine: Engine, settings: PaperCutSettings) -> None:
    """Replace the settings (idempotent)."""
    with engine.begin() as conn:
        conn.execute(sa.delete(papercut_settings))
        conn.execute(
            sa.insert(papercut_settings).values(
                id=1,
                database_url=settings.database_url,
                xmlrpc_url=settings.xmlrpc_url,
                auth_token=settings.auth_token,
                poll_ms=settings.poll_ms,
                updated_at=time.time(),
            )
        )


@dataclass(frozen=True)
class SyncResult:
    """What one pass did: transaction ids settled, shared-account moves made, still waiting."""

    completed: tuple[int, ...]
    canceled: tuple[int, ...]
    adjusted: tuple[int, ...]
    waiting: int

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": list(self.completed),
            "canceled": list(self.canceled),
            "adjusted": list(self.adjusted),
            "waiting": self.waiting,
        }


class PaperCutSync:
    """Settles pending transactions of PaperCut-managed printers from PaperCut's print log and
    moves shared-account charges in PaperCut. ``log`` and ``web`` may be injected (tests);
    otherwise they are made from the stored settings on each pass."""

    def __init__(
        self,
        engine: Engine,
        log_reader: PaperCutLog | None = None,
        web: PaperCutWebServices | None = None,
    ) -> None:
        self._engine = engine
        self._log = log_reader
        self._web = web
        self._made: tuple[str, str] | None = None

    def close(self) -> None:
        """Close what this object made."""
        if self._made is not None:
            if self._log is not None:
                self._log.close()
            if self._web is not None:
                self._web.close()
            self._log, self._web, self._made = None, None, None

    def _connect(self, settings: PaperCutSettings) -> tuple[PaperCutLog, PaperCutWebServices]:
        if self._log is not None and self._web is not None and self._made is None:
            return self._log, self._web  # injected
        key = (settings.database_url, settings.xmlrpc_url)
        if self._made != key:
            self.close()
            self._log = PaperCutLog(settings.database_url)
            self._web = PaperCutWebServices(settings.xmlrpc_url, settings.auth_token)
            self._made = key
        assert self._log is not None and self._web is not None
        return self._log, self._web

    def run_once(self) -> SyncResult:
        """One pass ("burst"): read the log rows of every pending PaperCut transaction, settle
        those PaperCut has finished, then make the PaperCut adjustments not made yet. Each
        settlement is its own database transaction and idempotent."""
        settings = load_settings(self._engine)
        if settings is None and (self._log is None or self._web is None):
            return SyncResult((), (), (), 0)
        log_reader, web = (
            self._connect(settings) if settings is not None else (self._log, self._web)
        )
        assert log_reader is not None and web is not None
        with self._engine.connect() as conn:
            pending = conn.execute(
                sa.select(usage_details.c.job_uuid, usage_details.c.papercut_document)
                .select_from(
                    usage_details.join(
                        transactions, transactions.c.id == usage_details.c.transaction_id
                    )
                )
                .where(
                    usage_details.c.papercut == sa.true(),
                    transactions.c.status == TransactionStatus.PENDING.value,
                )
            ).all()
        by_name = {str(name): str(uuid) for uuid, name in pending if name}
        found = log_reader.find(by_name)
        completed: list[int] = []
        canceled: list[int] = []
        for name, entry in found.items():
            if not entry.final:
                continue
            uuid = by_name[name]
            with self._engine.begin() as conn:
                currency = str(
                    conn.execute(
                        sa.select(transactions.c.currency).where(transactions.c.job_uuid == uuid)
                    ).scalar_one()
                )
                settled = usage.settle_papercut(
                    conn,
                    uuid,
                    printed=entry.charged,
                    cost_minor_units=ledger.to_minor(entry.usage_cost, currency),
                    total_pages=entry.total_pages,
                    status=entry.status,
                    now=time.time(),
                )
                tx_id = conn.execute(
                    sa.select(transactions.c.id).where(transactions.c.job_uuid == uuid)
                ).scalar_one()
            if settled:
                (completed if entry.charged else canceled).append(int(tx_id))
                log.info("job %s settled from PaperCut's log: %s", uuid, entry.status)
        adjusted = self._adjust_shared(web)
        return SyncResult(
            tuple(completed),
            tuple(canceled),
            tuple(adjusted),
            len(by_name) - len(completed) - len(canceled),
        )

    def _adjust_shared(self, web: PaperCutWebServices) -> list[int]:
        """For completed PaperCut jobs charged to a shared account: credit the printing user
        and debit the shared account in PaperCut, then mark it done. At least once: a crash
        between the calls and the mark repeats them (the comments carry the job uuid)."""
        with self._engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(
                        usage_details.c.transaction_id,
                        usage_details.c.job_uuid,
                        usage_details.c.account_name,
                        transactions.c.amount_minor,
                        transactions.c.currency,
                        jobs.c.owner,
                    )
                    .select_from(
                        usage_details.join(
                            transactions, transactions.c.id == usage_details.c.transaction_id
                        ).join(jobs, jobs.c.uuid == usage_details.c.job_uuid)
                    )
                    .where(
                        usage_details.c.papercut == sa.true(),
                        usage_details.c.papercut_adjusted == sa.false(),
                        usage_details.c.account_kind == SHARED,
                        transactions.c.status == TransactionStatus.COMPLETED.value,
                    )
                )
                .mappings()
                .all()
            )
        done: list[int] = []
        for row in rows:
            amount = ledger.from_minor(int(row["amount_minor"]), str(row["currency"]))
            if amount:
                comment = f"pullprint job {row['job_uuid']} charged to {row['account_name']}"
                web.adjust_user_account_balance(str(row["owner"]), amount, comment)
                web.adjust_shared_account_balance(str(row["account_name"]), -amount, comment)
            with self._engine.begin() as conn:
                conn.execute(
                    sa.update(usage_details)
                    .where(usage_details.c.transaction_id == row["transaction_id"])
                    .values(papercut_adjusted=True)
                )
            done.append(int(row["transaction_id"]))
        return done
