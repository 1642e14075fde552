"""Test peers standing in for a PaperCut MF/NG server, which cannot run here.

* ``PaperCutDatabase``: a private PostgreSQL 15 cluster (Debian's binaries, run as ``postgres``
  in its own temporary folder, listening on a free loopback port) holding a database with
  PaperCut's documented print-log table ``tbl_printer_usage_log`` and the tables its documented
  example reports join it with (``tbl_printer``, ``tbl_user``, ``tbl_account``). Only the
  columns named in PaperCut's published example reports and used by SavaPage's PaperCut adapter
  are created; PaperCut's full DDL was not available. ``log_print`` writes a row as PaperCut's
  print provider would.
* ``PaperCutApiServer``: an XML-RPC server at ``/rpc/api/xmlrpc`` following the documented
  signatures of the web-services methods pullprint uses (auth token first), keeping balances as
  Decimals and recording every call.

A missing binary or a cluster that does not start raises (tests fail, never skip).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import xmlrpc.client
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import sqlalchemy as sa

from pullprint.peers.ports import free_port

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
XMLRPC_PATH = "/rpc/api/xmlrpc"

SCHEMA = """
CREATE TABLE tbl_user (
    user_id BIGINT PRIMARY KEY,
    user_name VARCHAR(255) NOT NULL UNIQUE,
    full_name VARCHAR(255) NOT NULL DEFAULT '',
    department VARCHAR(255) NOT NULL DEFAULT '',
    office VARCHAR(255) NOT NULL DEFAULT '',
    card_number VARCHAR(255) NOT NULL DEFAULT '',
    deleted CHAR(1) NOT NULL DEFAULT 'N'
);
CREATE TABLE tbl_account (
    account_id BIGINT PRIMARY KEY,
    account_type VARCHAR(20) NOT NULL,
    account_name VARCHAR(255) NOT NULL,
    balance NUMERIC(19, 6) NOT NULL DEFAULT 0,
    deleted CHAR(1) NOT NULL DEFAULT 'N'
);
CREATE TABLE tbl_printer (
    printer_id BIGINT PRIMARY KEY,
    server_name VARCHAR(255) NOT NULL,
    printer_name VARCHAR(255) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    location VARCHAR(255) NOT NULL DEFAULT '',
    printer_type VARCHAR(255) NOT NULL DEFAULT '',
    device_type VARCHAR(20) NOT NULL DEFAULT 'PRINTER',
    physical_printer_id VARCHAR(255) NOT NULL DEFAULT '',
    deleted CHAR(1) NOT NULL DEFAULT 'N'
);
CREATE TABLE tbl_printer_usage_log (
    printer_usage_log_id BIGINT PRIMARY KEY,
    used_by_user_id BIGINT NOT NULL REFERENCES tbl_user (user_id),
    charged_to_account_id BIGINT NOT NULL REFERENCES tbl_account (account_id),
    assoc_with_account_id BIGINT NOT NULL REFERENCES tbl_account (account_id),
    printer_id BIGINT NOT NULL REFERENCES tbl_printer (printer_id),
    usage_date TIMESTAMP NOT NULL,
    usage_cost NUMERIC(19, 6) NOT NULL,
    document_name VARCHAR(255) NOT NULL,
    total_pages INTEGER NOT NULL,
    total_color_pages INTEGER NOT NULL,
    copies INTEGER NOT NULL,
    paper_size VARCHAR(40) NOT NULL,
    duplex CHAR(1) NOT NULL,
    gray_scale CHAR(1) NOT NULL,
    duplex_pages INTEGER NOT NULL,
    document_size_kb INTEGER NOT NULL,
    client_machine VARCHAR(255) NOT NULL,
    printer_language VARCHAR(255) NOT NULL,
    usage_allowed CHAR(1) NOT NULL,
    denied_reason VARCHAR(255) NOT NULL,
    printed CHAR(1) NOT NULL,
    cancelled CHAR(1) NOT NULL,
    refunded CHAR(1) NOT NULL,
    job_type VARCHAR(20) NOT NULL,
    archive_path VARCHAR(255) NOT NULL DEFAULT ''
);
CREATE INDEX ix_tbl_printer_usage_log_document_name ON tbl_printer_usage_log (document_name);
"""


class PaperCutDatabase:
    """A private PostgreSQL cluster with PaperCut's print-log tables. ``start()``/``stop()``,
    or ``with PaperCutDatabase() as db:``; ``url`` is a SQLAlchemy URL for the cloud."""

    def __init__(self, folder: Path | None = None, start_timeout: float = 60.0) -> None:
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="pullprint-papercut-db-"))
        self.start_timeout = start_timeout
        self.port = free_port()
        self.data = self.folder / "data"
        self._engine: sa.Engine | None = None
        self._next_id = 1000
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/papercut"

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}")
        return done

    def start(self) -> PaperCutDatabase:
        """initdb, start on 127.0.0.1:port, create database ``papercut`` and the tables."""
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                raise RuntimeError(f"{PG_BIN / tool} is missing: install postgresql-15")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"),
            "-w", "-t", str(int(self.start_timeout)), "-o", options, "start",
        )  # fmt: skip
        admin = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as conn:
                conn.execute(sa.text("CREATE DATABASE papercut"))
        finally:
            admin.dispose()
        self._engine = sa.create_engine(self.url)
        with self._engine.begin() as conn:
            conn.exec_driver_sql(SCHEMA)
        log.info("PaperCut database peer on 127.0.0.1:%d", self.port)
        return self

    def stop(self) -> None:
        """Stop the cluster and delete its folder (if made here). Idempotent."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                 "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )  # fmt: skip
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _ensure(self, conn: sa.Connection, table: str, key: str, value: str, **extra: Any) -> int:
        id_col = {"tbl_user": "user_id", "tbl_printer": "printer_id", "tbl_account": "account_id"}
        found = conn.execute(
            sa.text(f"SELECT {id_col[table]} FROM {table} WHERE {key} = :v"),  # noqa: S608
            {"v": value},
        ).scalar()
        if found is not None:
            return int(found)
        new_id = self._id()
        values = {id_col[table]: new_id, key: value, **extra}
        columns = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 - constants
        conn.execute(sa.text(insert), values)
        return new_id

    def log_print(
        self,
        document_name: str,
        user: str,
        printer: str,
        *,
        total_pages: int,
        usage_cost: Decimal,
        color_pages: int = 0,
        copies: int = 1,
        duplex: bool = False,
        paper_size: str = "A4",
        printed: bool = True,
        cancelled: bool = False,
        refunded: bool = False,
        usage_allowed: bool = True,
        denied_reason: str = "",
        account: str | None = None,
    ) -> int:
        """Insert a print-log row as PaperCut's print provider does; returns its id."""
        assert self._engine is not None, "start() first"

        def yn(flag: bool) -> str:
            return "Y" if flag else "N"

        with self._engine.begin() as conn:
            user_id = self._ensure(conn, "tbl_user", "user_name", user, full_name=user)
            printer_id = self._ensure(
                conn,
                "tbl_printer",
                "printer_name",
                printer,
                server_name="papercut-peer",
                display_name=f"papercut-peer\\{printer}",
            )
            personal = self._ensure(
                conn, "tbl_account", "account_name", f"personal:{user}", account_type="USER"
            )
            charged = personal
            if account:
                charged = self._ensure(
                    conn, "tbl_account", "account_name", account, account_type="SHARED"
                )
            row_id = self._id()
            conn.execute(
                sa.text(
                    "INSERT INTO tbl_printer_usage_log (printer_usage_log_id, used_by_user_id,"
                    " charged_to_account_id, assoc_with_account_id, printer_id, usage_date,"
                    " usage_cost, document_name, total_pages, total_color_pages, copies,"
                    " paper_size, duplex, gray_scale, duplex_pages, document_size_kb,"
                    " client_machine, printer_language, usage_allowed, denied_reason, printed,"
                    " cancelled, refunded, job_type) VALUES (:id, :user_id, :charged, :assoc,"
                    " :printer_id, now(), :cost, :name, :pages, :color, :copies, :paper,"
                    " :duplex, :gray, :duplex_pages, 1, '127.0.0.1', 'PDF', :allowed, :denied,"
                    " :printed, :cancelled, :refunded, 'PRINT')"
                ),
                {
                    "id": row_id,
                    "user_id": user_id,
                    "charged": charged,
                    "assoc": personal,
                    "printer_id": printer_id,
                    "cost": usage_cost,
                    "name": document_name,
                    "pages": total_pages,
                    "color": color_pages,
                    "copies": copies,
                    "paper": paper_size,
                    "duplex": yn(duplex),
                    "gray": yn(color_pages == 0),
                    "duplex_pages": total_pages if duplex else 0,
                    "allowed": yn(usage_allowed),
                    "denied": denied_reason,
                    "printed": yn(printed),
                    "cancelled": yn(cancelled),
                    "refunded": yn(refunded),
                },
            )
        return row_id

    def __enter__(self) -> PaperCutDatabase:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class ApiCall:
    """One call the server answered: method and its parameters after the auth token."""

    method: str
    params: tuple[Any, ...]


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = (XMLRPC_PATH,)


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise xmlrpc.client.Fault(2, "adjustment must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class PaperCutApiServer:
    """PaperCut's web-services API as an XML-RPC server on 127.0.0.1 (a thread). Users and
    shared accounts are created with ``add_user``/``add_shared_account``; ``calls`` records
    what was called, in order."""

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token
        self.users: dict[str, Decimal] = {}
        self.shared: dict[str, Decimal] = {}
        self.calls: list[ApiCall] = []
        self._lock = threading.Lock()
        self._server = SimpleXMLRPCServer(
            ("127.0.0.1", 0), requestHandler=_Handler, logRequests=False, allow_none=False
        )
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        methods: dict[str, Any] = {
            "api.isUserExists": self._is_user_exists,
            "api.getUserAccountBalance": self._get_user_balance,
            "api.adjustUserAccountBalance": self._adjust_user_balance,
            "api.isSharedAccountExists": self._is_shared_exists,
            "api.getSharedAccountAccountBalance": self._get_shared_balance,
            "api.adjustSharedAccountAccountBalance": self._adjust_shared_balance,
        }
        for name, func in methods.items():
            self._server.register_function(func, name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{XMLRPC_PATH}"

    def add_user(self, name: str, balance: Decimal = Decimal(0)) -> None:
        self.users[name] = balance

    def add_shared_account(self, name: str, balance: Decimal = Decimal(0)) -> None:
        self.shared[name] = balance

    def _check(self, method: str, token: str, *params: Any) -> None:
        if token != self.auth_token:
            raise xmlrpc.client.Fault(1, "Invalid authentication token")
        with self._lock:
            self.calls.append(ApiCall(method, params))

    def _user(self, name: str) -> str:
        if name not in self.users:
            raise xmlrpc.client.Fault(3, f"User does not exist: {name}")
        return name

    def _account(self, name: str) -> str:
        if name not in self.shared:
            raise xmlrpc.client.Fault(3, f"Shared account does not exist: {name}")
        return name

    def _is_user_exists(self, token: str, username: str) -> bool:
        self._check("api.isUserExists", token, username)
        return username in self.users

    def _get_user_balance(self, token: str, username: str, account_name: str = "") -> float:
        self._check("api.getUserAccountBalance", token, username, account_name)
        return float(self.users[self._user(username)])

    def _adjust_user_balance(
        self, token: str, username: str, adjustment: Any, comment: str, account_name: str = ""
    ) -> bool:
        self._check("api.adjustUserAccountBalance", token, username, adjustment, comment)
        with self._lock:
            self.users[self._user(username)] += _money(adjustment)
        return True

    def _is_shared_exists(self, token: str, account_name: str) -> bool:
        self._check("api.isSharedAccountExists", token, account_name)
        return account_name in self.shared

    def _get_shared_balance(self, token: str, account_name: str) -> float:
        self._check("api.getSharedAccountAccountBalance", token, account_name)
        return float(self.shared[self._account(account_name)])

    def _adjust_shared_balance(
        self, token: str, account_name: str, adjustment: Any, comment: str
    ) -> bool:
        self._check(
            "api.adjustSharedAccountAccountBalance", token, account_name, adjustment, comment
        )
        with self._lock:
            self.shared[self._account(account_name)] += _money(adjustment)
        return True

    def start(self) -> PaperCutApiServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PaperCutApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
