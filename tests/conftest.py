"""Shared fixtures. The peers are real and started here; a missing peer fails, never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pullprint.peers.stack import Stack

OPERATOR = ("ppoperator", "pp-Operator-1")
REQUIRED_TOOLS = ("cupsd", "lpadmin", "lp", "ippeveprinter", "qpdf", "gs", "avahi-daemon")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        raise pytest.UsageError(
            f"missing peers {missing}: run `make test` (it installs them) instead of bare pytest"
        )
    if os.geteuid() != 0:
        raise pytest.UsageError("the tests start cupsd with a root backend: run them as root")


@pytest.fixture(scope="session")
def operator_account() -> tuple[str, str]:
    """A local user in group lpadmin, for the CUPS web UI's Basic authentication (PAM)."""
    name, password = OPERATOR
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", "lpadmin", name], check=True
        )
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    return OPERATOR


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A fresh folder that cupsd's lp user can traverse (0755). Not under pytest's tmp_path:
    pytest keeps /tmp/pytest-of-root at 0700 and resets it whenever a pytest run starts."""
    folder = Path(tempfile.mkdtemp(prefix="pullprint-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def stack(world_dir: Path) -> Iterator[Stack]:
    from pullprint.peers.stack import Stack

    with Stack(world_dir / "stack") as running:
        yield running
