"""The node's Prometheus metrics (text format 0.0.4) and a tiny loopback HTTP server for them.

Counters and gauges live in :class:`Metrics` (thread-safe, no dependency); :func:`serve` exposes
``GET /metrics`` on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    """What the node counts. ``outbox_size`` is read when scraped."""

    def __init__(self, outbox_size: Callable[[], int] = lambda: 0) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[Labels, int] = {}
        self.seconds_sum: dict[Labels, float] = {}
        self.seconds_count: dict[Labels, int] = {}
        self.last_cloud_contact = 0.0
        self.active = 0
        self.outbox_size = outbox_size

    def job_done(self, printer: str, protocol: str, result: str, seconds: float) -> None:
        """Count one delivery that ended (``result``: completed, failed, canceled)."""
        key = (("printer", printer), ("protocol", protocol), ("result", result))
        timing = (("printer", printer), ("protocol", protocol))
        with self._lock:
            self.jobs[key] = self.jobs.get(key, 0) + 1
            self.seconds_sum[timing] = self.seconds_sum.get(timing, 0.0) + seconds
            self.seconds_count[timing] = self.seconds_count.get(timing, 0) + 1

    def cloud_answered(self) -> None:
        self.last_cloud_contact = time.time()

    def delivery_started(self) -> None:
        with self._lock:
            self.active += 1

    def delivery_ended(self) -> None:
        with self._lock:
            self.active -= 1

    def render(self) -> str:
        """The metrics in Prometheus text format. Pure apart from reading the outbox size."""
        out = [
            "# HELP pullprint_node_jobs_total Deliveries that ended, by printer, protocol, result.",
            "# TYPE pullprint_node_jobs_total counter",
        ]
        with self._lock:
            for labels, n in sorted(self.jobs.items()):
                out.append(f"pullprint_node_jobs_total{_fmt_labels(labels)} {n}")
            out += [
                "# HELP pullprint_node_delivery_seconds Time from claim to the end state.",
                "# TYPE pullprint_node_delivery_seconds summary",
            ]
            for labels, total in sorted(self.seconds_sum.items()):
                out.append(f"pullprint_node_delivery_seconds_sum{_fmt_labels(labels)} {total:.3f}")
                out.append(
                    f"pullprint_node_delivery_seconds_count{_fmt_labels(labels)} "
                    f"{self.seconds_count[labels]}"
                )
            active = self.active
        try:
            outbox = self.outbox_size()
        except OSError:
            outbox = -1
        out += [
            "# HELP pullprint_node_outbox_size Registrations waiting for the cloud.",
            "# TYPE pullprint_node_outbox_size gauge",
            f"pullprint_node_outbox_size {outbox}",
            "# HELP pullprint_node_last_cloud_contact_seconds Unix time the cloud last answered.",
            "# TYPE pullprint_node_last_cloud_contact_seconds gauge",
            f"pullprint_node_last_cloud_contact_seconds {self.last_cloud_contact:.3f}",
            "# HELP pullprint_node_active_deliveries Deliveries in progress.",
            "# TYPE pullprint_node_active_deliveries gauge",
            f"pullprint_node_active_deliveries {active}",
        ]
        return "\n".join(out) + "\n"


def serve(metrics: Metrics, port: int) -> ThreadingHTTPServer:
    """Serve ``/metrics`` on 127.0.0.1:``port`` in a daemon thread; ``shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server
