"""Finishing benchmark: our engine against the proven tools, side by side in one run.

Cases on generated 50- and 500-page image-heavy PDFs:
- ``nup2_<n>p``: our 2-up + page-ranges + copies (apply_plan) against pdftopdf doing the same;
- ``grey_<n>p``: our greyscale (apply_plan) against a plain ghostscript call, on all n pages.
One JSON line per case: {"bench":"finishing","case":..,"ours_s":..,"ref":..,"ref_s":..,"ratio":..}.
Ours and the reference run alternately (ours, ref, ref, ours, ...) so that a change in the
machine's load during the run weighs on both alike; each figure is the median of its runs.
Goal: ratio <= 1.5 for layout, <= 1.05 for greyscale.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stats import taking_turns  # noqa: E402
from pullprint.filters.capabilities import (  # noqa: E402
    RawPrinterSpec,
    raw_capabilities,
)
from pullprint.filters.engine import PDFTOPDF, apply_plan  # noqa: E402
from pullprint.filters.plan import make_plan  # noqa: E402
from pullprint.peers.documents import make_pdf  # noqa: E402

GS_GREY = [
    "gs",
    "-q",
    "-dNOPAUSE",
    "-dBATCH",
    "-dSAFER",
    "-sDEVICE=pdfwrite",
    "-sColorConversionStrategy=Gray",
    "-dProcessColorModel=/DeviceGray",
    "-dUseFastColor=true",
]


def paired_medians(
    ours: Callable[[], object], ref: Callable[[], object], runs: int
) -> tuple[float, float]:
    """Median seconds of ``ours`` and of ``ref``, run alternately ``runs`` times each, which one
    goes first changing each round (ours, ref, ref, ours, ...): the one run second in a pair
    finds the other's output and temp files still in memory."""
    times: tuple[list[float], list[float]] = ([], [])
    for func, out in taking_turns(runs, (ours, times[0]), (ref, times[1])):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def report(case: str, ours: float, ref: str, ref_s: float) -> None:
    print(
        json.dumps(
            {
                "bench": "finishing",
                "case": case,
                "ours_s": round(ours, 4),
                "ref": ref,
                "ref_s": round(ref_s, 4),
                "ratio": round(ours / ref_s, 3),
            },
            separators=(",", ":"),
        ),
        flush=True,
    )


def main() -> int:
    # a printer that takes PDF but makes no copies and no greyscale: the PDF does both
    caps = replace(
        raw_capabilities(RawPrinterSpec(pjl=False, color=True)),
        print_color_mode_supported=("color",),
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for pages, image_kb, runs, grey_runs in ((50, 100, 5, 7), (500, 100, 3, 5)):
            src = make_pdf(tmp / f"src{pages}.pdf", pages, image_kb=image_kb)
            last = pages * 4 // 5
            layout = {"number-up": "2", "page-ranges": f"1-{last}", "copies": "2"}
            plan = make_plan(layout, None, caps, "socket", applied_at_submission={})
            # pdftopdf counts page-ranges after number-up: ask it for the same sheets
            sheets = (last + 1) // 2
            ref_args = [
                str(PDFTOPDF),
                "1",
                "bench",
                "bench",
                "2",
                f"PageSize=Custom.595.00x842.00 number-up=2 page-ranges=1-{sheets} collate=true",
                str(src),
            ]

            def ref() -> None:
                with (tmp / "ref.pdf").open("wb") as out:
                    subprocess.run(ref_args, stdout=out, stderr=subprocess.DEVNULL, check=True)  # noqa: B023

            ours, ref_s = paired_medians(
                lambda: apply_plan(plan, src, tmp / "ours.pdf"),  # noqa: B023
                ref,
                runs,
            )
            report(f"nup2_{pages}p", ours, "pdftopdf", ref_s)
            grey_plan = make_plan(
                {"print-color-mode": "monochrome"}, None, caps, "socket", applied_at_submission={}
            )
            ours_g, ref_g = paired_medians(
                lambda: apply_plan(grey_plan, src, tmp / "og.pdf"),  # noqa: B023
                lambda: subprocess.run(
                    [*GS_GREY, f"-sOutputFile={tmp / 'rg.pdf'}", str(src)],  # noqa: B023
                    check=True,
                ),
                grey_runs,
            )
            report(f"grey_{pages}p", ours_g, "gs", ref_g)
    return 0


if __name__ == "__main__":
    sys.exit(main())
