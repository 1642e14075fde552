"""startup.freeze: the start-up's objects leave the generations a collection walks."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
import pullprint.cloud.app  # what the cloud server imports before it serves
from pullprint import startup
before = len(gc.get_objects(generation=2))
frozen = startup.freeze()
print(before, frozen, gc.get_freeze_count(), len(gc.get_objects(generation=2)))
"""


def test_freeze_moves_the_start_up_out_of_the_oldest_generation() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    before, frozen, count, after = (int(x) for x in out)
    assert before > 50_000  # the oldest generation held the start-up
    assert frozen == count >= before
    assert after == 0  # a full collection now walks none of it
