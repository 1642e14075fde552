"""`pullprint doctor` against the real stack: all well, then each thing broken in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from pullprint.doctor import check_cupsd_version, cupsd_version
from pullprint.peers.stack import Stack


def doctor(stack: Stack, *args: str) -> tuple[int, str]:
    """Run `pullprint doctor` as an admin would, with the private cupsd's ServerBin."""
    assert stack.cups is not None
    env = dict(os.environ, CUPS_SERVERBIN=str(stack.cups.root / "bin"))
    cmd = [sys.executable, "-m", "pullprint", "--config", str(stack.config_path), "doctor", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    return out.returncode, out.stdout + out.stderr


def test_doctor_all_well_then_each_fault(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    while not (stack.root / "spool" / "outbox").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)  # the node makes the spool when it starts
    code, text = doctor(stack)
    assert code == 0, text
    assert "queue PullPrint: pullprint:/, accepting jobs" in text
    assert "printer printer1" in text and "FAIL" not in text
    assert f"cupsd version: {cupsd_version()}" in text

    code, text = doctor(stack, "--json")
    findings = json.loads(text)
    assert {f["check"] for f in findings} >= {"cupsd", "queue PullPrint", "cloud", "spool"}

    assert stack.cups is not None
    backend = stack.cups.root / "bin" / "backend" / "pullprint"
    backend.chmod(0o777)
    try:
        code, text = doctor(stack)
        assert code == 1
        assert "FAIL backend" in text and "fix: chmod 0700" in text
    finally:
        backend.chmod(0o700)

    stack.printers[0].stop()
    code, text = doctor(stack)
    assert code == 1 and "FAIL printer printer1" in text

    stack.cloud.stop()
    code, text = doctor(stack)
    assert code == 1 and "FAIL cloud" in text and "pullprint server" in text

    stack.cups.run("lpadmin", "-x", "PullPrint")
    code, text = doctor(stack)
    assert "FAIL queue PullPrint: does not exist" in text and "fix: lpadmin -p PullPrint" in text


def test_cupsd_version_known_defect_is_a_warning_with_a_fix() -> None:
    """Debian 12's cupsd 2.4.2-3+deb12u10 crashes on jobs of users without a local account
    (OpenPrinting/cups#1555): doctor says so, as a warning that names what to do."""
    bad = check_cupsd_version("2.4.2-3+deb12u10")
    assert bad.ok and bad.warning
    assert "OpenPrinting/cups#1555" in bad.detail and "2.4.19" in bad.fix
    assert bad.line().startswith("warn cupsd version: 2.4.2-3+deb12u10 crashes")
    good = check_cupsd_version("2.4.2-3+deb12u9")
    assert good.ok and not good.warning and good.line().startswith("ok   cupsd version")
    assert check_cupsd_version(cupsd_version()).detail.startswith(cupsd_version())
