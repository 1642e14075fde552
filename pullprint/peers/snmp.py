"""A real SNMP agent for tests: net-snmp's snmpd on a loopback UDP port, with a config written
here whose ``pass_persist`` script serves the Printer MIB page counter (prtMarkerLifeCount) from
a file
the test changes (:meth:`SnmpAgent.set_count`, :meth:`SnmpAgent.add_pages`)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

from pullprint.daemon.snmp import PRT_MARKER_LIFE_COUNT, SnmpError, read_counter
from pullprint.peers.ports import stop_process

COUNTER_SCRIPT = """#!/bin/sh
# snmpd pass_persist script: GET of prtMarkerLifeCount.1.1 answers the number in the counter file
# (pass_persist, not pass: snmpd caches a pass script's answers for seconds)
while read -r cmd; do
    case "$cmd" in
        PING) echo PONG ;;
        get)
            read -r oid
            if [ "$oid" = ".{oid}" ]; then echo "$oid"; echo counter; cat "{counter}"
            else echo NONE; fi ;;
        getnext) read -r oid; echo NONE ;;
        set) read -r oid; read -r value; echo not-writable ;;
        *) exit 0 ;;
    esac
done
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SnmpAgent:
    """``with SnmpAgent(folder) as agent:``; ``agent.target`` is ``127.0.0.1:PORT``."""

    def __init__(self, root: Path, count: int = 1000) -> None:
        self.root = root.resolve()
        self.port = free_udp_port()
        self.counter = self.root / "counter"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._initial = count

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_count(self, count: int) -> None:
        with self._lock:
            tmp = self.counter.with_name(".counter.tmp")
            tmp.write_text(f"{count}\n")
            tmp.replace(self.counter)

    def count(self) -> int:
        return int(self.counter.read_text())

    def add_pages(self, pages: int) -> None:
        with self._lock:
            value = int(self.counter.read_text()) + pages
            tmp = self.counter.with_name(".counter.tmp")
            tmp.write_text(f"{value}\n")
            tmp.replace(self.counter)

    def start(self, timeout: float = 10.0) -> SnmpAgent:
        self.root.mkdir(parents=True, exist_ok=True)
        self.set_count(self._initial)
        script = self.root / "counter.sh"
        script.write_text(COUNTER_SCRIPT.format(oid=PRT_MARKER_LIFE_COUNT, counter=self.counter))
        script.chmod(0o755)
        conf = self.root / "snmpd.conf"
        conf.write_text(
            "rocommunity public 127.0.0.1\n"
            f"pass_persist .1.3.6.1.2.1.43.10.2.1.4 /bin/sh {script}\n"
        )
        self.proc = subprocess.Popen(
            [
                "snmpd",
                "-f",
                "-C",
                "-c",
                str(conf),
                "-Lf",
                str(self.root / "snmpd.log"),
                "-p",
                str(self.root / "snmpd.pid"),
                f"udp:127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                read_counter(self.target, timeout=0.5)
                return self
            except SnmpError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, "snmpd", 5)

    def __enter__(self) -> SnmpAgent:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
