"""pullprint: pull printing (secure print release) built on CUPS."""

from __future__ import annotations

__version__ = "0.1.0"
