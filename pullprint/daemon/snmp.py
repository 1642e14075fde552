"""The printer's page counter over SNMP (Printer MIB prtMarkerLifeCount), read with net-snmp's
``snmpget`` (no Python dependency). Read before and after a raw or LPR job, the difference is a
real count; without it the count is an estimate.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable

from pullprint.errors import PullprintError

log = logging.getLogger(__name__)

PRT_MARKER_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"


class SnmpError(PullprintError):
    """The agent did not answer or answered something that is not a counter."""


def read_counter(
    target: str, community: str = "public", oid: str = PRT_MARKER_LIFE_COUNT, timeout: float = 2.0
) -> int:
    """The integer at ``oid`` of the agent at ``target`` ("host:port"). Changes nothing."""
    args = ["snmpget", "-v2c", "-c", community, "-Oqv", "-t", str(timeout), "-r", "1"]
    args += [f"udp:{target}", oid]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout * 3 + 2)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnmpError(f"snmpget {target}: {exc}") from exc
    text = done.stdout.strip()
    if done.returncode != 0 or not text.isdigit():
        raise SnmpError(f"snmpget {target} {oid}: {text or done.stderr.strip()}")
    return int(text)


def wait_settled(
    read: Callable[[], int],
    before: int,
    *,
    settle: float,
    wait: float,
    interval: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
) -> int | None:
    """Poll the counter until it has moved past ``before`` and then stayed still ``settle``
    seconds; returns the pages counted (after - before), or None when it did not move within
    ``wait`` seconds (or ``stop()`` turned true)."""
    deadline = time.monotonic() + wait
    last = before
    still_since = time.monotonic()
    while time.monotonic() < deadline and not stop():
        try:
            value = read()
        except SnmpError as exc:
            log.info("page counter unreadable: %s", exc)
            time.sleep(interval)
            continue
        now = time.monotonic()
        if value != last:
            last, still_since = value, now
        elif last != before and now - still_since >= settle:
            return last - before
        time.sleep(interval)
    return None if last == before else last - before
