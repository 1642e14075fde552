"""Free loopback ports and waiting for a listener."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Wait until something accepts connections on host:port, else raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listening on {host}:{port} after {timeout} s"
                ) from None
            time.sleep(0.02)


def stop_process(proc: subprocess.Popen[Any] | None, name: str, seconds: float) -> None:
    """SIGTERM ``proc`` and wait ``seconds`` for it, then SIGKILL it. Nothing if it is None or
    ended already. Idempotent."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %s s; killing it", name, seconds)
        proc.kill()
        proc.wait()
