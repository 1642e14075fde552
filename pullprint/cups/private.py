"""A private cupsd on loopback, with the real pullprint backend, filter and PPD installed in it.

Used by the tests, ``make demo`` and the benchmarks (the pattern of CUPS's own
``test/run-stp-tests.sh``). Admin commands go over the domain socket, where root is recognised by
its peer credentials.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pullprint.cups.install import write_backend, write_filter
from pullprint.peers.ports import free_port, wait_listening

log = logging.getLogger(__name__)

STOCK = Path("/usr/lib/cups")
REPO_PPD = Path(__file__).resolve().parents[2] / "ppd" / "pullprint.ppd"
QUEUE = "PullPrint"
# The people the tests, the demo and the benchmarks print as. Debian 12's cupsd 2.4.2-3+deb12u10
# (OpenPrinting/cups#1555) crashes when a policy's @OWNER is checked for a requesting user without
# an account, so the private cupsd sees these (and whoever ``lp`` prints as) in a passwd file of its
# own, bind-mounted over /etc/passwd in a mount namespace of its own: the host is left alone.
ACCOUNTS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "mallory",
    "pullprint",
    "EXAMPLE\\Zed",
    "ZED@EXAMPLE.ORG",
    "guest",  # the CUPS web UI's first, unauthenticated try at Cancel-Job
    "anonymous",
)
ACCOUNT_UID = 60100  # the first uid given to those accounts (getpwnam is all cupsd asks of them)

CUPSD_CONF = """\
LogLevel {log_level}
MaxLogSize 0
Listen 127.0.0.1:{port}
Listen {root}/cups.sock
Browsing Off
WebInterface Yes
PreserveJobHistory Yes
PreserveJobFiles No
MaxJobs 0
DefaultAuthType Basic
<Location />
  Order allow,deny
  Allow from 127.0.0.1
  Allow from @LOCAL
</Location>
<Location /admin>
  AuthType Default
  Require user @SYSTEM
  Order allow,deny
  Allow from 127.0.0.1
</Location>
<Location /jobs>
  Order allow,deny
  Allow from 127.0.0.1
</Location>
<Policy default>
  JobPrivateAccess default
  JobPrivateValues none
  SubscriptionPrivateAccess default
  SubscriptionPrivateValues none
  <Limit Create-Job Print-Job Print-URI Validate-Job>
    Order deny,allow
  </Limit>
  <Limit Send-Document Send-URI Hold-Job Release-Job Restart-Job Purge-Jobs \
Set-Job-Attributes Create-Job-Subscription Renew-Subscription Cancel-Subscription \
Get-Notifications Reprocess-Job Cancel-Current-Job Suspend-Current-Job Resume-Job Cancel-My-Jobs \
Close-Job CUPS-Move-Job CUPS-Get-Document>
    Require user @OWNER @SYSTEM
    Order deny,allow
  </Limit>
  <Limit CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class \
CUPS-Set-Default CUPS-Get-Devices Pause-Printer Resume-Printer Enable-Printer Disable-Printer \
Pause-Printer-After-Current-Job Hold-New-Jobs Release-Held-New-Jobs Deactivate-Printer \
Activate-Printer Restart-Printer Shutdown-Printer Startup-Printer Promote-Job Schedule-Job-After \
Cancel-Jobs CUPS-Accept-Jobs CUPS-Reject-Jobs>
    AuthType Default
    Require user @SYSTEM
    Order deny,allow
  </Limit>
  <Limit Cancel-Job CUPS-Authenticate-Job>
    Require user @OWNER @SYSTEM
    Order deny,allow
  </Limit>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""

CUPS_FILES_CONF = """\
ServerRoot {root}/etc
ServerBin {root}/bin
RequestRoot {root}/spool
TempDir {root}/tmp
CacheDir {root}/cache
StateDir {root}/state
AccessLog {root}/log/access_log
ErrorLog {root}/log/error_log
PageLog {root}/log/page_log
Printcap {root}/printcap
User lp
Group lp
SystemGroup root lpadmin
FileDevice No
{setenv}
"""


class PrivateCups:
    """A cupsd of our own under ``root`` (an absolute folder), on a free loopback port.

    ``env`` is passed to every backend and filter with cupsd's SetEnv (the pullprint config path).
    """

    def __init__(
        self,
        root: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_level: str = "info",
    ) -> None:
        self.root = root.resolve()
        self.port = port or free_port()
        self.env_for_jobs = dict(env or {})
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.accounts: list[str] = list(dict.fromkeys(n for a in ACCOUNTS for n in _names(a)))
        self._in_passwd: set[str] = set()  # the names cupsd's passwd holds

    # -- layout ---------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.root / "cups.sock"

    @property
    def error_log(self) -> Path:
        return self.root / "log" / "error_log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwd(self) -> Path:
        """The passwd file cupsd (and the backends and filters it runs) read as /etc/passwd."""
        return self.root / "passwd"

    def add_account(self, name: str) -> None:
        """Give ``name`` an account in cupsd's passwd, so a job requested by ``name`` is checked
        against @OWNER as on a server that knows its users: the host's own line when the host
        has the user (made after cupsd started; it keeps its uid), else one with no home, no
        shell and no password. The file is appended to in place: the running cupsd sees it at
        its next lookup. See :func:`_names` for ``user@REALM``."""
        for account in _names(name):
            if ":" in account or "\n" in account:
                raise ValueError(f"{account!r}: a passwd name holds no ':' and no newline")
            if account not in self.accounts:
                self.accounts.append(account)
            if self.passwd.exists() and account not in self._in_passwd:
                with self.passwd.open("a") as out:
                    out.write(self._account_line(account, _host_passwd()))
                self._in_passwd.add(account)

    def _account_line(self, name: str, host: dict[str, str]) -> str:
        uid = ACCOUNT_UID + self.accounts.index(name)
        return host.get(name) or f"{name}:x:{uid}:65534:pullprint:/nonexistent:/usr/sbin/nologin\n"

    def _write_passwd(self) -> None:
        host = _host_passwd()
        extra = [self._account_line(n, host) for n in self.accounts if n not in host]
        self.passwd.write_text("".join(host.values()) + "".join(extra))
        self.passwd.chmod(0o644)
        self._in_passwd = set(host) | set(self.accounts)

    def env(self) -> dict[str, str]:
        """The environment for CUPS clients (lp, lpstat, lpadmin, pycups) aimed at this cupsd."""
        env = dict(os.environ)
        env["CUPS_SERVER"] = str(self.socket)
        env.pop("CUPS_USER", None)
        return env

    def _prepare(self) -> None:
        for sub in ("etc", "etc/ppd", "etc/ssl", "spool", "tmp", "cache", "state", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        for entry in STOCK.iterdir():
            target = bindir / entry.name
            if entry.name in ("backend", "filter"):
                target.mkdir(exist_ok=True)
                for stock in entry.iterdir():
                    link = target / stock.name
                    if not link.exists() and not link.is_symlink():
                        link.symlink_to(stock)
            elif not target.exists() and not target.is_symlink():
                target.symlink_to(entry)
        write_backend(bindir / "backend" / "pullprint")
        write_filter(bindir / "filter" / "pullprint-finish")
        # cupsd refuses backends and filters in group- or world-writable folders, and lp (which
        # runs the filters) must be able to reach them.
        for path in (self.root, bindir, bindir / "backend", bindir / "filter"):
            path.chmod(0o755)
        for sub in ("spool", "tmp", "cache", "state", "log"):
            shutil.chown(self.root / sub, user="root", group="lp")
            (self.root / sub).chmod(0o770 if sub != "spool" else 0o710)
        (self.root / "tmp").chmod(0o1770)
        setenv = "\n".join(f"SetEnv {k} {v}" for k, v in self.env_for_jobs.items())
        (self.root / "cupsd.conf").write_text(
            CUPSD_CONF.format(port=self.port, root=self.root, log_level=self.log_level)
        )
        (self.root / "cups-files.conf").write_text(
            CUPS_FILES_CONF.format(root=self.root, setenv=setenv)
        )

    # -- life -----------------------------------------------------------------------------
    def start(self) -> PrivateCups:
        """Write the configuration (first time), start cupsd and wait until it answers."""
        if self.proc is None:
            self._prepare()
        self._write_passwd()
        log_path = self.root / "log" / "cupsd.out"
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    'mount --bind "$0" /etc/passwd && exec "$@"',
                    str(self.passwd),
                    "cupsd",
                    "-f",
                    "-c",
                    str(self.root / "cupsd.conf"),
                    "-s",
                    str(self.root / "cups-files.conf"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        wait_listening(self.port, timeout=15)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"cupsd did not create {self.socket}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop cupsd (SIGTERM, then SIGKILL after 10 s). Held jobs stay in its spool."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> PrivateCups:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- commands -------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a CUPS command-line tool against this cupsd."""
        return subprocess.run(
            list(args), env=self.env(), check=check, capture_output=True, text=True, timeout=60
        )

    def add_queue(
        self,
        name: str = QUEUE,
        *,
        uri: str = "pullprint:/",
        ppd: Path = REPO_PPD,
        options: dict[str, str] | None = None,
    ) -> None:
        """Create (or modify) a queue, enable it and make it accept jobs."""
        args = ["lpadmin", "-p", name, "-v", uri, "-P", str(ppd), "-E"]
        args += ["-o", "printer-error-policy=abort-job"]
        for key, value in (options or {}).items():
            args += ["-o", f"{key}={value}"]
        self.run(*args)

    def add_pool(self, name: str, members: Sequence[str]) -> None:
        """A CUPS class ``name`` of PullPrint queues ``members`` (each made as :meth:`add_queue`):
        cupsd runs one job per queue at a time, so a class of N runs N at once. Idempotent."""
        for member in members:
            self.add_queue(member)
            self.run("lpadmin", "-p", member, "-c", name)
        self.run("cupsenable", name)
        self.run("cupsaccept", name)

    def lp(
        self,
        document: Path,
        *,
        user: str,
        queue: str = QUEUE,
        title: str | None = None,
        options: dict[str, str] | None = None,
    ) -> int:
        """Print ``document`` with ``lp`` as ``user``; returns the CUPS job-id."""
        self.add_account(user)
        args = ["lp", "-U", user, "-d", queue]
        if title:
            args += ["-t", title]
        for key, value in (options or {}).items():
            args += ["-o", f"{key}={value}"]
        args.append(str(document))
        out = self.run(*args).stdout
        match = re.search(r"request id is \S+-(\d+)", out)
        if not match:
            raise RuntimeError(f"lp printed no job id: {out!r}")
        return int(match.group(1))

    def connection(self) -> Any:
        """A pycups connection to this cupsd over its domain socket."""
        import cups

        return cups.Connection(host=str(self.socket))

    def job(
        self, job_id: int, *, conn: Any = None, attributes: list[str] | None = None
    ) -> dict[str, Any]:
        """The CUPS job's attributes (job-state, job-state-reasons, job-printer-state-message),
        or only ``attributes``; asked on ``conn`` (a :meth:`connection`), else a new one."""
        conn = conn if conn is not None else self.connection()
        if attributes is None:
            return dict(conn.getJobAttributes(job_id))
        return dict(conn.getJobAttributes(job_id, requested_attributes=attributes))

    def wait_job(
        self,
        job_id: int,
        states: Collection[int],
        timeout: float = 30.0,
        poll: float = 0.05,
        *,
        conn: Any = None,
        attributes: list[str] | None = None,
    ) -> dict[str, Any]:
        """Wait until the job's job-state is one of ``states`` (3..9); return its attributes.
        ``poll``: seconds between two looks (the benchmarks look more often); ``conn`` and
        ``attributes`` as for :meth:`job` (a benchmark keeps one connection and asks for
        ``job-state`` alone, so that its looking costs the machine it measures less)."""
        deadline = time.monotonic() + timeout
        while True:
            attrs = self.job(job_id, conn=conn, attributes=attributes)
            if attrs.get("job-state") in states:
                return attrs
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"CUPS job {job_id} stayed in state {attrs.get('job-state')} "
                    f"({attrs.get('job-printer-state-message', '')!r}), wanted {sorted(states)}; "
                    f"see {self.error_log}"
                )
            time.sleep(poll)


def _names(name: str) -> tuple[str, ...]:
    """The accounts cupsd may look up for a requesting user: ``user@REALM`` (Kerberos-style) is
    looked up as ``user`` too."""
    return tuple(dict.fromkeys((name, name.split("@", 1)[0])))


def _host_passwd() -> dict[str, str]:
    """The host's /etc/passwd lines (with their newline) by user name."""
    lines = Path("/etc/passwd").read_text().splitlines(keepends=True)
    return {line.split(":", 1)[0]: line if line.endswith("\n") else line + "\n" for line in lines}


def python_executable() -> str:
    """The interpreter that runs our backend and filter (the one with pullprint installed)."""
    return sys.executable
