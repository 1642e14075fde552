"""What a long-running process does once its start-up is done."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze() -> int:
    """Keep the garbage collector off what the start-up made; returns how many objects that is.

    Those objects (modules, and in the cloud the app's routes and SQLAlchemy's tables and
    statements: about 150,000) live as long as the process, yet every full collection walked
    them all, on whichever request or job's garbage started it: 116 ms in the cloud, 23 ms in
    submitd (29,000 objects), on the development machine. ``gc.freeze`` moves them to a
    generation no collection visits; a full collection then walks only what came after (0.0 ms
    just after the start). Call it once, when the imports and set-up are done."""
    gc.collect()
    gc.freeze()
    count = gc.get_freeze_count()
    log.debug("%d objects of the start-up frozen out of the collector", count)
    return count
