"""Writing the backend and filter executables into a CUPS ServerBin folder.

Both are thin shells over library code. Permissions follow the CUPS contract: the backend is
0700 root (so cupsd runs it as root and it can write the spool), the filter 0755 (runs as lp).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BACKEND_SHELL = """#!{python}
# pullprint CUPS backend (generated). Device URI: pullprint:/
import sys
from pullprint.backend.main import main
sys.exit(main())
"""

FILTER_SHELL = """#!{python}
# pullprint CUPS filter pullprint-finish (generated).
import sys
from pullprint.filters.finish import main
sys.exit(main())
"""


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    tmp.replace(path)


def write_backend(path: Path, python: str | None = None) -> None:
    """Write the backend executable at ``path`` (mode 0700, root). Idempotent."""
    _write(path, BACKEND_SHELL.format(python=python or sys.executable), 0o700)


def write_filter(path: Path, python: str | None = None) -> None:
    """Write the filter executable at ``path`` (mode 0755, root). Idempotent."""
    _write(path, FILTER_SHELL.format(python=python or sys.executable), 0o755)
