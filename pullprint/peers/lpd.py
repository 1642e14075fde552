"""A real LPD server for tests: CUPS's cups-lpd run by socat on a loopback port, feeding a
private cupsd (the queue named in the ``lpd://`` URI must exist there)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from pullprint.cups.private import PrivateCups
from pullprint.peers.ports import free_port, stop_process, wait_listening

CUPS_LPD = Path("/usr/lib/cups/daemon/cups-lpd")


class LpdServer:
    """socat TCP-LISTEN -> cups-lpd -> ``cups``; ``uri(queue)`` is ``lpd://127.0.0.1:PORT/q``."""

    def __init__(self, cups: PrivateCups, port: int | None = None) -> None:
        self.cups = cups
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def uri(self, queue: str) -> str:
        return f"lpd://127.0.0.1:{self.port}/{queue}"

    def start(self) -> LpdServer:
        self.proc = subprocess.Popen(
            [
                "socat",
                f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork",
                f"EXEC:{CUPS_LPD} -o document-format=application/vnd.cups-raw,nofork",
            ],
            env=self.cups.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        stop_process(self.proc, "cups-lpd", 5)

    def __enter__(self) -> LpdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
