"""A real IPP Everywhere printer for tests, the demo and the benchmarks: ``ippeveprinter``.

:class:`IppEvePrinter` starts ``ippeveprinter`` on a free loopback port with its spool (``-d``, kept
with ``-k``) and TLS keys (``-K``) under one folder, and a ``-c`` command
(:mod:`pullprint.peers.ippeve_command`) that reports real impression counts and logs each job's
attributes. ippeveprinter needs DNS-SD: dbus-daemon and avahi-daemon are started first when they
are not running (ENVIRONMENT.md); if they cannot start, RuntimeError says so (never a skip).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from pullprint.ipp.client import JobStatus
from pullprint.peers.ports import free_port, wait_listening

log = logging.getLogger(__name__)

COMMAND_SCRIPT = Path(__file__).resolve().with_name("ippeve_command.py")
JOB_LOG = ".pullprint-jobs.jsonl"  # in the spool folder; the dot keeps it out of spool listings
HOST = "127.0.0.1"


def _running(name: str) -> bool:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True)
    return done.returncode == 0


def _remove_stale(*paths: str) -> None:
    """Remove what a daemon that no longer runs left behind (only called when it is not running)."""
    for path in paths:
        Path(path).unlink(missing_ok=True)


# The avahi-daemon the peers start announces and browses on the loopback interface only (made
# multicast-capable for it): every DNS-SD packet of the tests stays on this machine.
AVAHI_CONF = Path("/run/pullprint-avahi/avahi-daemon.conf")
AVAHI_CONF_TEXT = """\
[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=lo
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-hinfo=no
publish-workstation=no

[reflector]
enable-reflector=no
"""


def ensure_dns_sd(timeout: float = 5.0) -> None:
    """Start dbus-daemon (system bus) and avahi-daemon unless they already run. Idempotent.

    An avahi-daemon started here uses :data:`AVAHI_CONF` (loopback only, ``lo`` set
    multicast); one that already runs is left as it is. Raises RuntimeError, naming the daemon
    and its output, when one cannot be started.
    """
    if not _running("dbus-daemon"):
        Path("/run/dbus").mkdir(parents=True, exist_ok=True)
        # A machine whose processes were ended keeps the pid file and socket of a bus that is gone:
        # dbus-daemon refuses to start over them.
        _remove_stale("/run/dbus/pid", "/run/dbus/system_bus_socket")
        done = subprocess.run(
            ["dbus-daemon", "--system", "--fork", "--print-pid"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 and not _running("dbus-daemon"):
            raise RuntimeError(
                f"ippeveprinter needs DNS-SD, but dbus-daemon did not start: {done.stderr.strip()}"
            )
    if not _running("avahi-daemon"):
        _remove_stale("/run/avahi-daemon/pid", "/run/avahi-daemon/socket")
        AVAHI_CONF.parent.mkdir(parents=True, exist_ok=True)
        AVAHI_CONF.write_text(AVAHI_CONF_TEXT)
        subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=True)
        done = subprocess.run(
            ["avahi-daemon", "-f", str(AVAHI_CONF), "--no-drop-root", "--no-rlimits", "-D"],
            capture_output=True,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while not _running("avahi-daemon"):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "ippeveprinter needs DNS-SD, but avahi-daemon did not start "
                    f"(exit {done.returncode}): {done.stderr.strip()}"
                )
            time.sleep(0.05)


class IppEvePrinter:
    """``with IppEvePrinter(folder, name="printer1") as printer: ... printer.uri ...``

    ``formats`` is ippeveprinter's ``-f`` list, ``duplex`` adds ``-2``, ``command_delay`` makes the
    print command sleep that many seconds per job (a slow printer), ``extra_args`` go before the
    name. Everything the printer writes stays under ``root``.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str = "pullprint-test",
        formats: str = "application/pdf,image/pwg-raster",
        duplex: bool = True,
        command_delay: float = 0.0,
        extra_args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.name = name
        self.formats = formats
        self.duplex = duplex
        self.command_delay = command_delay
        self.extra_args = list(extra_args)
        self.port = port or 0
        self.spool_dir = self.root / "spool"
        self.keys_dir = self.root / "keys"
        self.command_path = self.root / "print-command.sh"
        self.log_path = self.root / "ippeveprinter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """``ipp://127.0.0.1:PORT/ipp/print`` (ippeveprinter accepts the IP as Host)."""
        return f"ipp://{HOST}:{self.port}/ipp/print"

    @property
    def ipps_uri(self) -> str:
        """``ipps://localhost:PORT/ipp/print``: the name its self-signed certificate is made for."""
        return f"ipps://localhost:{self.port}/ipp/print"

    @property
    def job_log_path(self) -> Path:
        return self.spool_dir / JOB_LOG

    # -- lifecycle ---------------------------------------------------------------------------
    def _write_command(self) -> None:
        args = [sys.executable, str(COMMAND_SCRIPT), "--log", str(self.job_log_path)]
        if self.command_delay > 0:
            args += ["--delay", str(self.command_delay)]
        package_root = shlex.quote(str(COMMAND_SCRIPT.parents[2]))
        text = (
            f"#!/bin/sh\nPYTHONPATH={package_root}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            f'export PYTHONPATH\nexec {shlex.join(args)} "$@"\n'
        )
        self.command_path.write_text(text)
        self.command_path.chmod(0o755)

    def start(self, timeout: float = 10.0) -> IppEvePrinter:
        """Start the printer and wait until it answers. Raises RuntimeError when it cannot."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not shutil.which("ippeveprinter"):
            raise RuntimeError("ippeveprinter is not installed (Debian package cups-ipp-utils)")
        ensure_dns_sd()
        for folder in (self.root, self.spool_dir, self.keys_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._write_command()
        if not self.port:
            self.port = free_port()
        argv = [
            "ippeveprinter",
            "-p",
            str(self.port),
            "-n",
            "localhost",
            "-f",
            self.formats,
            "-k",
            "-d",
            str(self.spool_dir),
            "-K",
            str(self.keys_dir),
            "-c",
            str(self.command_path),
            *(["-2"] if self.duplex else []),
            *self.extra_args,
            self.name,
        ]
        log.debug("starting %s", shlex.join(argv))
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(self.port, HOST, timeout=timeout)
        except TimeoutError as exc:
            code = self.proc.poll()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(
                f"ippeveprinter {self.name} not listening on {HOST}:{self.port} "
                f"(exit {code}): {tail}"
            ) from exc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the printer process (SIGTERM, then SIGKILL). Idempotent; files stay."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> IppEvePrinter:
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

    def __repr__(self) -> str:
        return f"IppEvePrinter({self.name!r}, port={self.port})"

    # -- what the printer received ---------------------------------------------------------------
    def spool_files(self) -> list[Path]:
        """The job documents the printer kept (``-k``), oldest job first; no command output."""
        if not self.spool_dir.is_dir():
            return []
        files = [
            path
            for path in self.spool_dir.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".prn"
        ]

        def job_number(path: Path) -> tuple[int, str]:
            head = path.name.split("-", 1)[0]
            return (int(head) if head.isdigit() else 0, path.name)

        return sorted(files, key=job_number)

    def job_log(self) -> list[dict[str, object]]:
        """One dict per job the print command ran for (file, pages, copies, sides, color, ...)."""
        try:
            lines = self.job_log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def certificate(self, timeout: float = 5.0) -> Path:
        """The self-signed certificate ippeveprinter serves for ipps (made in ``-K`` on the first
        TLS connection: this makes one, unverified, if the file is not there yet)."""
        for _ in range(2):
            found = sorted(self.keys_dir.glob("*.crt"))
            if found:
                return found[0]
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # only to make the printer write its certificate
            with (
                socket.create_connection((HOST, self.port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                pass
        raise RuntimeError(f"ippeveprinter made no certificate in {self.keys_dir}")

    def find_job(self, job_name: str) -> JobStatus | None:
        """The printer's job called ``job_name`` (any state), newest first; None if none."""
        from pullprint.daemon.ipp_delivery import find_job_by_name

        return find_job_by_name(self.uri, job_name)
