"""What pullprint-finish does to a job at submission: sanitise, apply the layout, mark, count.

The held document is what the user saw in the print dialog: the layout options that change page
content (number-up, page-ranges, orientation, fit-to-page, booklet) are applied here, once. The
options the user chose are recorded twice, by design: CUPS hands argv[5] to the backend (which
stores them with the job), and the document info carries ``/pullprint:Options`` (the validated
options as JSON), ``/pullprint:Applied`` (the layout options applied here) and
``/pullprint:Pages``. A document that already carries ``/pullprint:Applied`` is not laid out again.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pullprint.filters.engine import run_layout
from pullprint.filters.options import FinishingOptions
from pullprint.filters.sanitize import (
    MAX_PAGES,
    Output,
    SanitizeReport,
    sanitize_pdf,
    write_marks,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """The prepared document: its pages, what was applied and what was removed."""

    pages: int
    source_pages: int
    applied: str
    removed: tuple[str, ...]
    repaired: bool


def _kv(items: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in items.items())


def _as_is(report: SanitizeReport) -> Submission:
    """The submission of a sanitised document that is not laid out (or was laid out before)."""
    return Submission(report.pages, report.pages, report.applied, report.removed, report.repaired)


def prepare_submission(
    src: Path,
    dst: Output,
    options: FinishingOptions,
    *,
    max_pages: int = MAX_PAGES,
    timeout: float = 600.0,
    work_dir: str | None = None,
) -> Submission:
    """Sanitise ``src`` into ``dst`` and apply its layout options; ``src`` is unchanged.

    ``dst`` is a path, written atomically, or a file opened for writing at its start, written
    in place (the caller discards it on an error). Without layout options no work file is
    made; with, they are in a temp folder in ``work_dir`` (default: ``dst``'s folder, else the
    system's). Idempotent: run on its own output it applies nothing again (the
    ``/pullprint:Applied`` mark). Raises DocumentError (unreadable input) or FinishingError.
    """
    layout = options.layout_items()
    marks = {"Options": json.dumps(options.to_json(), sort_keys=True)}
    if not layout:
        return _as_is(sanitize_pdf(src, dst, marks={**marks, "Applied": ""}, max_pages=max_pages))
    if work_dir is None and isinstance(dst, Path):
        work_dir = str(dst.parent)
    with tempfile.TemporaryDirectory(prefix=".submit-", dir=work_dir) as work:
        clean = Path(work) / "clean.pdf"
        report = sanitize_pdf(src, clean, marks={**marks, "Applied": ""}, max_pages=max_pages)
        if report.applied:  # laid out before (its own output): kept as it is
            if isinstance(dst, Path):
                clean.replace(dst)
            else:
                with clean.open("rb") as fh:
                    shutil.copyfileobj(fh, dst, 1 << 16)
            return _as_is(report)
        laid = Path(work) / "laid.pdf"
        sheet = options.media if (options.number_up > 1 or options.booklet) else None
        run_layout(
            clean,
            laid,
            options,
            paper=sheet,
            fit=options.fit_to_page,
            source_pages=report.pages,
            timeout=timeout,
        )
        applied = _kv(layout)
        pages = write_marks(laid, dst, {**marks, "Applied": applied})
    log.info("laid out %s: %s -> %d page(s)", src.name, applied, pages)
    return Submission(pages, report.pages, applied, report.removed, report.repaired)
