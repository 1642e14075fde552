"""A real cloud release service in a subprocess on loopback, for tests, the demo and benchmarks.

``CloudServer(tmp)`` writes a TOML configuration with random tokens, starts
``python -m pullprint.cloud --config PATH`` and waits for ``/api/v1/health``. ``stop()`` and
``start()`` again keep the port, the SQLite database and the stored documents, so a test can take
the cloud down and bring it back. ``database_url`` (e.g. from ``peers.postgres``) replaces the
SQLite file; ``sibling(folder)`` is a second server process on the same database, documents and
tokens (several processes behind one name); with ``tls_cert``/``tls_key`` it serves HTTPS and
``ca`` is the bundle its clients verify against.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from pullprint.cloudsync.client import AdminClient, CloudClient
from pullprint.config import CloudConfig, Config, NodeConfig, dump
from pullprint.peers.ports import free_port, stop_process

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0


class CloudServer:
    """One cloud subprocess bound to 127.0.0.1 with its files under ``folder``.

    ``overrides`` replace fields of the generated CloudConfig (e.g. ``long_poll_seconds=2``).
    """

    def __init__(
        self,
        folder: Path,
        node_names: tuple[str, ...] = ("node1",),
        start_timeout: float = 30.0,
        ca: str | None = None,
        **overrides: object,
    ) -> None:
        self.folder = folder
        self.start_timeout = start_timeout
        self.ca = ca
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_token = str(overrides.pop("admin_token", "") or secrets.token_urlsafe(24))
        given_tokens = overrides.pop("node_tokens", None)
        if isinstance(given_tokens, dict):
            self.node_tokens = {str(k): str(v) for k, v in given_tokens.items()}
        else:
            self.node_tokens = {name: secrets.token_urlsafe(24) for name in node_names}
        base = CloudConfig(
            listen_host="127.0.0.1",
            listen_port=self.port,
            database_url=f"sqlite:///{folder / 'cloud.db'}",
            storage_dir=folder / "documents",
            pin_key_file=folder / "pin.key",
            admin_token=self.admin_token,
            node_tokens=dict(self.node_tokens),
            long_poll_seconds=25.0,
        )
        self.config: CloudConfig = replace(base, **overrides)  # type: ignore[arg-type]
        self.config_path = folder / "pullprint.toml"
        self.log_path = folder / "cloud.log"
        node_name = next(iter(self.node_tokens), "node1")
        node = NodeConfig(
            name=node_name, cloud_url=self.url, token=self.node_tokens.get(node_name, "")
        )
        text = dump(Config(cloud=self.config, node=node))
        self.config_path.write_text(text, encoding="utf-8")
        self.config_path.chmod(0o600)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.listen_host}:{self.config.listen_port}"

    @property
    def verify(self) -> bool | str:
        """What clients verify the server's certificate against."""
        return self.ca if self.ca else True

    def sibling(self, folder: Path) -> CloudServer:
        """Another server process (own port, config and log under ``folder``) on the same
        database, documents, tokens and settings: for tests of several processes."""
        overrides = {
            k: getattr(self.config, k)
            for k in self.config.__dataclass_fields__
            if k not in ("listen_host", "listen_port")
        }
        return CloudServer(folder, start_timeout=self.start_timeout, ca=self.ca, **overrides)

    @property
    def storage_dir(self) -> Path:
        return self.config.storage_dir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> CloudServer:
        """Start the subprocess (same port, database and documents as before) and wait until
        it answers /api/v1/health; raises RuntimeError with the log's tail if it does not."""
        if self.running:
            return self
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pullprint.cloud", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise RuntimeError(f"the cloud exited with {code} at start:\n{self.log_tail()}")
            try:
                health = requests.get(f"{self.url}/api/v1/health", timeout=1, verify=self.verify)
                ok = health.status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                log.info("cloud up at %s (pid %d)", self.url, self._proc.pid)
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the cloud did not answer within {self.start_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the subprocess, kill it after 5 s; keeps every file. Idempotent."""
        proc, self._proc = self._proc, None
        stop_process(proc, "the cloud", STOP_SECONDS)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def admin_client(self) -> AdminClient:
        """A client with the admin token (the caller closes it)."""
        return AdminClient(self.url, self.admin_token, verify=self.verify)

    def node_client(self, name: str = "node1") -> CloudClient:
        """A client with the token of node ``name`` (the caller closes it)."""
        return CloudClient(self.url, self.node_tokens[name], verify=self.verify)

    def __enter__(self) -> CloudServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
