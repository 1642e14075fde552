"""Memory: peak RSS of the node delivering a big PDF (1 GB) and of the backend receiving it,
next to the same figures for a 100 MB PDF in the same run (flat with document size?).

The whole real path: ``lp`` into the private cupsd -> our filter -> our backend (spools it,
registers, uploads it to the cloud) -> held; release -> the node downloads it and sends it over
IPP to ippeveprinter -> completed. psutil samples every process of interest every 10 ms (the
backend and filter that cupsd starts, found by their executable or the Python shell's path, and
the node; with ``--submitd``, the job is handed to ``pullprint submitd``, whose peak is given
too); the figure is
the larger of the highest sample and the kernel's high-water mark (VmHWM) last read. For the
node, its RSS just before the release is given too (what it holds while idle).

The PDFs are written on disk in a temp folder, streaming (pages of incompressible 1 MiB grey
images, never the whole file in memory), and deleted once cupsd has its copy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench._stats import emit
from pullprint.cups.jobs import CupsJobState
from pullprint.errors import Conflict
from pullprint.model import JobState
from pullprint.peers.stack import Stack

MIB = 1024 * 1024
SIDE = 1024  # a page's image: SIDE x SIDE grey bytes = 1 MiB


def write_big_pdf(path: Path, megabytes: int) -> int:
    """Write a valid PDF of about ``megabytes`` MiB (one 1 MiB image a page), streaming; returns
    its size. Nothing but one page's image is ever in memory."""
    pages = max(1, megabytes)
    offsets: list[int] = []
    # Objects: 1 catalog, 2 pages; page i: 3+3i page, 4+3i content, 5+3i image.
    with path.open("wb") as out:

        def obj(number: int, body: bytes, stream: bytes | None = None) -> None:
            while len(offsets) < number:
                offsets.append(0)
            offsets[number - 1] = out.tell()
            out.write(f"{number} 0 obj\n".encode() + body)
            if stream is not None:
                out.write(b"\nstream\n" + stream + b"\nendstream")
            out.write(b"\nendobj\n")

        out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(pages))
        obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(2, f"<< /Type /Pages /Count {pages} /Kids [{kids}] >>".encode())
        content = b"q 451 0 0 451 72 200 cm /Im1 Do Q"
        for i in range(pages):
            page, stream, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
            obj(
                page,
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {stream} 0 R "
                f"/Resources << /XObject << /Im1 {image} 0 R >> >> >>".encode(),
            )
            obj(stream, f"<< /Length {len(content)} >>".encode(), content)
            obj(
                image,
                f"<< /Type /XObject /Subtype /Image /Width {SIDE} /Height {SIDE} "
                f"/ColorSpace /DeviceGray /BitsPerComponent 8 /Length {SIDE * SIDE} >>".encode(),
                os.urandom(SIDE * SIDE),
            )
        xref = out.tell()
        out.write(f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode())
        for offset in offsets:
            out.write(f"{offset:010d} 00000 n \n".encode())
        out.write(
            f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\n".encode()
            + f"startxref\n{xref}\n%%EOF\n".encode()
        )
        return out.tell()


def _hwm(proc: psutil.Process) -> int:
    """The process's peak RSS so far (VmHWM) in bytes, 0 if it is gone."""
    try:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class PeakSampler(threading.Thread):
    """Samples the RSS of every process ``role_of`` names a role for, until stopped."""

    def __init__(self, role_of: Callable[[psutil.Process], str | None]) -> None:
        super().__init__(daemon=True)
        self.role_of = role_of
        self.peak: dict[str, int] = {}
        self.seen: dict[int, tuple[str, psutil.Process]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for proc in psutil.process_iter(["cmdline", "exe"]):
                if proc.pid not in self.seen:
                    role = self.role_of(proc)
                    if role is None:
                        continue
                    self.seen[proc.pid] = (role, proc)
            for pid, (role, proc) in list(self.seen.items()):
                try:
                    rss = max(proc.memory_info().rss, _hwm(proc))
                except psutil.Error:
                    del self.seen[pid]
                    continue
                self.peak[role] = max(self.peak.get(role, 0), rss)
            self._halt.wait(0.01)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join(10)
        return {role: round(rss / MIB, 1) for role, rss in self.peak.items()}


def _cups_role(proc: psutil.Process) -> str | None:
    """The role of a process cupsd started for the job: the C program (found by its executable:
    cupsd gives a backend the device URI as argv[0], a filter the queue's name) or the Python
    shell it executes in its place (the same pid; found by the shell's path in its command line)."""
    names = " ".join([proc.info.get("exe") or "", *(proc.info.get("cmdline") or [])])
    if "/backend/pullprint" in names or "/pullprint/backend" in names:
        return "backend"
    if "/filter/pullprint-finish" in names or "/pullprint/filter" in names:
        return "filter"
    return None


def one_size(stack: Stack, folder: Path, megabytes: int) -> dict[str, object]:
    """Print, hold and release one PDF of ``megabytes`` MiB; the peaks of each process."""
    assert stack.cups is not None and stack.node is not None and stack.node.proc is not None
    doc = folder / f"big-{megabytes}.pdf"
    size = write_big_pdf(doc, megabytes)
    started = time.perf_counter()
    submitd = stack.submitd.proc.pid if stack.submitd and stack.submitd.proc else None
    sampler = PeakSampler(lambda p: "submitd" if p.pid == submitd else _cups_role(p))
    sampler.start()
    try:
        cups_job = stack.cups.lp(doc, user="alice")
    finally:
        doc.unlink()  # cupsd has its own copy now
    try:
        stack.cups.wait_job(cups_job, {CupsJobState.HELD}, timeout=600)
        job = stack.wait_cloud_job("alice", cups_job, timeout=600)
    finally:
        receiving = sampler.stop()
    held = time.perf_counter() - started
    node = psutil.Process(stack.node.proc.pid)
    node_idle = node.memory_info().rss
    node_sampler = PeakSampler(lambda p: "node" if p.pid == node.pid else None)
    node_sampler.start()
    started = time.perf_counter()
    try:
        with stack.admin() as admin:
            deadline = time.monotonic() + 600
            while True:
                try:
                    admin.release(job.uuid, "alice", stack.users["alice"], stack.printer_names[0])
                    break
                except Conflict:  # the upload has not finished yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        done = stack.wait_state(job.uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=900)
    finally:
        delivering = node_sampler.stop()
    return {
        "bench": "memory",
        "submitd": submitd is not None,
        "document_mb": round(size / MIB, 1),
        "backend_peak_rss_mb": receiving.get("backend"),
        "filter_peak_rss_mb": receiving.get("filter"),
        "submitd_peak_rss_mb": receiving.get("submitd"),
        "node_idle_rss_mb": round(node_idle / MIB, 1),
        "node_peak_rss_mb": delivering.get("node"),
        "job": done.state.value,
        "hold_seconds": round(held, 1),
        "release_to_done_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="100,1024", help="document sizes in MiB, comma-separated"
    )
    parser.add_argument(
        "--submitd",
        action="store_true",
        help="the filter and backend hand the job to pullprint submitd (its peak is given)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pullprint-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        options = {"max_document_bytes": 2 * 1024 * MIB, "retry_window_seconds": 900.0}
        with Stack(
            root / "stack", users={"alice": "1234"}, node_options=options, submitd=args.submitd
        ) as stack:
            for megabytes in (int(s) for s in args.sizes.split(",")):
                emit(one_size(stack, root, megabytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
