"""``python -m pullprint`` is the ``pullprint`` command."""

from __future__ import annotations

import sys

from pullprint.cli import main

sys.exit(main())
