"""The queue's PPD: cupstestppd passes and the options are the ones the issue lists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PPD = Path(__file__).resolve().parents[1] / "ppd" / "pullprint.ppd"


def test_cupstestppd_passes() -> None:
    # the filter is not installed system-wide, hence -I filters
    proc = subprocess.run(
        ["cupstestppd", "-I", "filters", str(PPD)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    assert "FAIL" not in proc.stdout


def _choices(option: str) -> list[str]:
    text = PPD.read_text("latin-1")
    return re.findall(rf"^\*{option} (\w+)/", text, flags=re.M)


def test_options() -> None:
    assert _choices("PageSize") == ["A4", "Letter", "Legal", "A3", "A5"]
    assert _choices("ColorModel") == ["RGB", "Gray"]
    assert _choices("Duplex") == ["None", "DuplexNoTumble", "DuplexTumble"]
    assert _choices("InputSlot")[0] == "Auto" and len(_choices("InputSlot")) >= 3
    assert _choices("Collate") == ["True", "False"]


def test_filter_chain_declared() -> None:
    text = PPD.read_text("latin-1")
    assert '*cupsFilter2: "application/pdf application/vnd.cups-pdf 0 pullprint-finish"' in text
