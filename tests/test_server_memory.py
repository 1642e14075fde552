"""The release service gives argon2's buffers back: concurrent PIN checks do not leave the
process hundreds of MB larger (glibc's dynamic mmap threshold; see
pullprint.cloud.server.return_big_buffers, which ``pullprint server`` calls at start)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECKS = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import psutil
from pullprint.cloud.server import return_big_buffers
from pullprint.cloud.users import PIN_HASHER
applied = return_big_buffers() if sys.argv[1] == "on" else None
digest = PIN_HASHER.hash("1234")
rss = lambda: psutil.Process().memory_info().rss / 2**20
start = rss()
with ThreadPoolExecutor(40) as pool:
    assert all(pool.map(lambda _: PIN_HASHER.verify(digest, "1234"), range(240)))
print(json.dumps({"applied": applied, "grown_mb": rss() - start}))
"""


def grown(mode: str) -> tuple[bool | None, float]:
    """(whether the fix was applied, MB the process grew by) for 240 PIN checks on 40 threads."""
    out = subprocess.run(
        [sys.executable, "-c", CHECKS, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    return result["applied"], float(result["grown_mb"])


def test_concurrent_pin_checks_leave_no_arena_growth() -> None:
    _, without = grown("off")
    applied, with_fix = grown("on")
    assert applied is True
    # 40 threads x 8 MiB: without the fix the buffers stay (measured ~250-310 MB here).
    assert without > 100, without
    assert with_fix < 40, with_fix
