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
from pullprint.cups.private import PrivateCups
from pullprint.model import Job, JobState, Printer
from pullprint.peers.cloud import CloudServer
from pullprint.peers.ippeve import IppEvePrinter

log = logging.getLogger(__name__)

NODE = "node1"


class NodeProcess:
    """``pullprint node`` as a child process."""

    def __init__(
        self, config_path: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pullprint", "--config", str(self.config_path), "node"],
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
    ) -> None:
        """``node_options``: NodeConfig keys to set (release_printer, retry_window_seconds...)."""
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
        self.config_path = self.root / "pullprint.toml"

    @property
    def printer_names(self) -> list[str]:
        return [f"printer{i + 1}" for i in range(self.n_printers)]

    def start(self) -> Stack:
        self.cloud.start()
        for name in self.printer_names:
            printer = IppEvePrinter(self.root / name, name=name)
            printer.start()
            self.printers.append(printer)
        self.cups = PrivateCups(self.root / "cups", env={configmod.ENV_VAR: str(self.config_path)})
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
        if self.start_node:
            self.start_node_process()
        return self

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

    def wait_cloud_job(self, user: str, cups_job_id: int, timeout: float = 20.0) -> Job:
        """The cloud's job for a CUPS job of ``user``, once it is registered."""
        deadline = time.monotonic() + timeout
        with self.admin() as admin:
            while True:
                for job in admin.list_jobs(user=user):
                    if job.cups_job_id == cups_job_id:
                        return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CUPS job {cups_job_id} of {user} not registered")
                time.sleep(0.05)

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
        for part in (self.node, self.cups, *self.printers, self.cloud):
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
