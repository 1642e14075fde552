"""The whole pullprint path on loopback, every part real: a private cupsd with the PullPrint queue
(our PPD, filter and backend), an ippeveprinter, the cloud service and the node daemon, each in its
own process. Used by ``make demo``, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from pullprint import config as configmod
from pullprint.cloudsync.client import CloudClient
from pullprint.cups import handoff
from pullprint.cups.private import PrivateCups
from pullprint.model import Job, JobState, Printer
from pullprint.peers.cloud import CloudServer
from pullprint.peers.ippeve import IppEvePrinter

log = logging.getLogger(__name__)

NODE = "node1"


class NodeProcess:
    """``pullprint node`` (or another long-running ``command``: ``submitd``) as a child process."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        command: str = "node",
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pullprint",
                    "--config",
                    str(self.config_path),
                    self.command,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        return self

    def kill(self) -> None:
        """SIGKILL (a crash); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Stack:
    """Start with ``with Stack(tmpdir) as stack:``; everything stops on exit."""

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        printers: int = 1,
        price: Decimal = Decimal("0.05"),
        start_node: bool = True,
        node_options: dict[str, Any] | None = None,
        submitd: bool = False,
    ) -> None:
        """``node_options``: NodeConfig keys to set (release_printer, retry_window_seconds...).
        ``submitd``: start ``pullprint submitd``, which the filter and backend hand jobs to
        (without it they run each job in-process)."""
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.users = users if users is not None else {"alice": "1234", "bob": "5678"}
        self.n_printers = printers
        self.price = price
        self.start_node = start_node
        self.node_options = dict(node_options or {})
        self.cloud = CloudServer(self.root / "cloud")
        self.printers: list[IppEvePrinter] = []
        self.cups: PrivateCups | None = None
        self.node: NodeProcess | None = None
        self.start_submitd_process = submitd
        self.submitd: NodeProcess | None = None
        self.config_path = self.root / "pullprint.toml"
        self.submit_socket = self.root / "submit.sock"

    @property
    def printer_names(self) -> list[str]:
        return [f"printer{i + 1}" for i in range(self.n_printers)]

    def start(self) -> Stack:
        self.cloud.start()
        for name in self.printer_names:
            printer = IppEvePrinter(self.root / name, name=name)
            printer.start()
            self.printers.append(printer)
        self.cups = PrivateCups(
            self.root / "cups",
            env={
                configmod.ENV_VAR: str(self.config_path),
                handoff.ENV_SOCKET: str(self.submit_socket),
            },
        )
        config = configmod.Config(
            cloud=configmod.CloudConfig(admin_token=self.cloud.admin_token),
            node=configmod.NodeConfig(
                name=NODE,
                cloud_url=self.cloud.url,
                token=self.cloud.node_tokens[NODE],
                spool_dir=self.root / "spool",
                cups_server=str(self.cups.socket),
                poll_timeout=20.0,
                register_timeout=3.0,
                outbox_retry_seconds=0.5,
                submit_socket=str(self.submit_socket),
                **{"discovery_seconds": 0, **self.node_options},  # DNS-SD only where asked
            ),
        )
        self.config_path.write_text(configmod.dump(config))
        self.config_path.chmod(0o600)
        self.cups.start()
        self.cups.add_queue()
        with self.admin() as admin:
            for user, pin in self.users.items():
                admin.add_user(user, pin)
            for name, printer in zip(self.printer_names, self.printers, strict=True):
                admin.add_printer(Printer(name, printer.uri, NODE, self.price, f"room {name}"))
        if self.start_submitd_process:
            self.start_submitd()
        if self.start_node:
            self.start_node_process()
        return self

    def start_submitd(
        self, env: dict[str, str] | None = None, timeout: float = 20.0
    ) -> NodeProcess:
        """Start ``pullprint submitd`` and wait until it greets on its socket (``env``: extra
        variables, e.g. PULLPRINT_FAULT)."""
        self.submitd = NodeProcess(self.config_path, self.root / "submitd.log", env, "submitd")
        self.submitd.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock, _ = handoff.connect(str(self.submit_socket))
            except handoff.NotHandedOff as exc:
                assert self.submitd.proc is not None
                if self.submitd.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.root / "submitd.log").read_text(errors="replace")
                    raise RuntimeError(f"submitd did not start ({exc}): {log_text}") from None
                time.sleep(0.02)
                continue
            sock.close()
            return self.submitd

    def start_node_process(self, env: dict[str, str] | None = None) -> NodeProcess:
        """Start ``pullprint node`` (``env``: extra variables, e.g. PULLPRINT_FAULT)."""
        self.node = NodeProcess(self.config_path, self.root / "node.log", env).start()
        return self.node

    def write_config(self, **node_options: Any) -> None:
        """Rewrite the configuration with more NodeConfig keys (read by the next node start)."""
        current = configmod.load(self.config_path)
        self.node_options.update(node_options)
        node = replace(current.node, **node_options)
        self.config_path.write_text(configmod.dump(replace(current, node=node)))

    def admin(self) -> CloudClient:
        return self.cloud.admin_client()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the ``pullprint`` command line with this stack's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "pullprint", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def wait_cloud_job(
        self, user: str, cups_job_id: int, timeout: float = 20.0, poll: float = 0.05
    ) -> Job:
        """The cloud's job for a CUPS job of ``user``, once it is registered (looked for every
        ``poll`` seconds)."""
        deadline = time.monotonic() + timeout
        with self.admin() as admin:
            while True:
                for job in admin.list_jobs(user=user):
                    if job.cups_job_id == cups_job_id:
                        return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CUPS job {cups_job_id} of {user} not registered")
                time.sleep(poll)

    def wait_state(self, uuid: str, states: set[JobState], timeout: float = 30.0) -> Job:
        deadline = time.monotonic() + timeout
        with self.admin() as admin:
            while True:
                job = admin.get_job(uuid)
                if job.state in states:
                    return job
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {uuid} is {job.state.value}, wanted {sorted(s.value for s in states)}"
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        for part in (self.node, self.submitd, self.cups, *self.printers, self.cloud):
            if part is None:
                continue
            try:
                part.stop()
            except Exception:
                log.exception("stopping %r failed", part)

    def __enter__(self) -> Stack:
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
