"""A real PostgreSQL server for tests, started from Debian's binaries on a free loopback port.

``PostgresServer()`` makes a cluster in a fresh temp folder (owned by the unprivileged user
``postgres`` when run as root, since the server refuses to run as root), starts it listening on
127.0.0.1 only with password (scram-sha-256) authentication, and ``create_database()`` gives each
test its own database and SQLAlchemy URL. ``stop()`` stops the server and removes the folder.
Anything that goes wrong raises RuntimeError with the server's log: tests fail, never skip.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pullprint.peers.ports import free_port

log = logging.getLogger(__name__)

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
RUN_AS = "postgres"
SUPERUSER = "pullprint"


def find_bin() -> Path:
    """The folder holding initdb and pg_ctl; RuntimeError if PostgreSQL is not installed."""
    for folder in BIN_DIRS:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise RuntimeError(
        "PostgreSQL server binaries not found in "
        + ", ".join(map(str, BIN_DIRS))
        + ": apt-get install postgresql"
    )


class PostgresServer:
    """One private PostgreSQL cluster on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        self.bin = find_bin()
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.folder = Path(tempfile.mkdtemp(prefix="pullprint-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "server.log"
        self._as_user: list[str] = []
        self._counter = 0
        self._started = False

    def _run(self, *args: str, input_text: str | None = None) -> str:
        done = subprocess.run(
            [*self._as_user, *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n"
                f"{self.log_tail()}"
            )
        return done.stdout

    def start(self) -> PostgresServer:
        """initdb, then start the server and wait until it accepts connections."""
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(RUN_AS)
            except KeyError as exc:
                raise RuntimeError(
                    f"user {RUN_AS} is missing (apt-get install postgresql)"
                ) from exc
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", RUN_AS, "--"]
        self.folder.chmod(0o700)
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._as_user:
            user = pwd.getpwnam(RUN_AS)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self._started = True
        log.info("PostgreSQL up on 127.0.0.1:%d", self.port)
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (psycopg 3) of ``database``; it holds the password."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "pullprint") -> str:
        """Create a new empty database; returns its URL."""
        import psycopg

        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        conninfo = self.url().replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder. Idempotent."""
        if self._started:
            self._started = False
            try:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
                )
            except RuntimeError as exc:
                log.warning("PostgreSQL did not stop cleanly: %s", exc)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, PermissionError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PostgresServer:
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


_shared: PostgresServer | None = None


def shared() -> PostgresServer:
    """One server for the whole test process, started on first use and stopped at exit."""
    global _shared
    if _shared is None:
        import atexit

        server = PostgresServer()
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)
        _shared = server
    return _shared
