"""A raw port 9100 printer for tests: a TCP sink on 127.0.0.1 that keeps each connection's bytes
(one job per connection) and can act like a printer's page counter through ``on_job``."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class SocketSink:
    """``with SocketSink() as sink:``; ``sink.uri`` is ``socket://127.0.0.1:PORT``."""

    def __init__(self, on_job: Callable[[bytes], None] | None = None, port: int = 0) -> None:
        self.on_job = on_job
        self.jobs: list[bytes] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = int(self._server.getsockname()[1])
        self.refuse = False  # True: close connections at once (a printer that refuses)
        self._thread = threading.Thread(target=self._serve, name="socket-sink", daemon=True)
        self._stopped = threading.Event()

    @property
    def uri(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> SocketSink:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()

    def _receive(self, conn: socket.socket) -> None:
        with conn:
            if self.refuse:
                return
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        if not data:
            return
        with self._lock:
            self.jobs.append(data)
        if self.on_job is not None:
            self.on_job(data)

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.jobs)

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()

    def __enter__(self) -> SocketSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
