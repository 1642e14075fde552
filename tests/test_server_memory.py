"""The release service's PIN and password checks do not leave it hundreds of MB larger: argon2
runs on a few hashing threads (pullprint.cloud.users.HASHING_THREADS), not on each of the 40
request threads, whose arenas kept every 8 or 19 MiB buffer (glibc's dynamic mmap threshold)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECKS = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import psutil
from pullprint.cloud import db
from pullprint.cloud.users import PASSWORD_HASHER, PIN_HASHER, UserDirectory

engine = db.make_engine(f"sqlite:///{sys.argv[2]}")
db.upgrade(engine)
users = UserDirectory(engine)
users.add("alice", "1234", password="alice-secret-1")
rss = lambda: psutil.Process().memory_info().rss / 2**20
if sys.argv[1] == "request-threads":  # what the server did before: argon2 on the caller's thread
    pin = PIN_HASHER.hash("1234")
    password = PASSWORD_HASHER.hash("alice-secret-1")
    def check(i):
        if i % 5:
            return PIN_HASHER.verify(pin, "1234")
        return PASSWORD_HASHER.verify(password, "alice-secret-1")
else:
    def check(i):
        if i % 5:
            return users.verify("alice", "1234")
        return users.verify_password("alice", "alice-secret-1")
start = rss()
with ThreadPoolExecutor(40) as pool:
    assert all(pool.map(check, range(240)))
print(json.dumps({"grown_mb": rss() - start}))
"""


def grown(mode: str, tmp_path: Path) -> float:
    """MB the process grew by for 240 PIN and password checks from 40 threads."""
    out = subprocess.run(
        [sys.executable, "-c", CHECKS, mode, str(tmp_path / f"{mode}.db")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    return float(json.loads(out.stdout)["grown_mb"])


def test_concurrent_secret_checks_keep_the_process_small(tmp_path: Path) -> None:
    on_request_threads = grown("request-threads", tmp_path)
    through_users = grown("users", tmp_path)
    # Before: ~200-300 MB here. Now: at most HASHING_THREADS (2 here) buffers of 8 + 19 MiB.
    assert on_request_threads > 120, on_request_threads
    assert through_users < 80, through_users
