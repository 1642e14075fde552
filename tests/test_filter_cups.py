"""The filter chain through a real private cupsd: text, images, PostScript and PDF jobs reach
pullprint-finish as PDF (CUPS's own filters first) and come out at a raw socket sink.

The queue uses our PPD with device ``socket://127.0.0.1:PORT``; a listener in the test is the
printer and keeps the bytes our filter emitted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest

from pullprint.cups.private import PrivateCups
from tests.test_finishing_support import color_pdf, page_texts


class Sink:
    """A raw socket printer on loopback: every connection's bytes are one job."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.jobs: list[bytes] = []
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                chunks = []
                while data := conn.recv(65536):
                    chunks.append(data)
            with self.arrived:
                self.jobs.append(b"".join(chunks))
                self.arrived.notify_all()

    def wait(self, count: int, timeout: float = 60) -> list[bytes]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.jobs) >= count, timeout), self.jobs
            return list(self.jobs)

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def cups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivateCups, Sink]]:
    sink = Sink()
    # cupsd runs the filters as lp: the root must be reachable (pytest's tmp is 0700)
    root = Path(tempfile.mkdtemp(prefix="pullprint-filtercups-"))
    root.chmod(0o755)
    server = PrivateCups(root=root).start()
    try:
        server.add_queue("Finish", uri=f"socket://127.0.0.1:{sink.port}")
        yield server, sink
    finally:
        server.stop()
        sink.close()
        if not os.environ.get("PULLPRINT_KEEP_CUPS"):
            shutil.rmtree(root, ignore_errors=True)


def _documents(tmp: Path) -> dict[str, Path]:
    text = tmp / "hello.txt"
    text.write_text("Hello from a text job\n" * 10)
    ps = tmp / "hello.ps"
    ps.write_text(
        "%!PS-Adobe-3.0\n/Helvetica findfont 24 scalefont setfont\n"
        "72 700 moveto (Hello from PostScript) show showpage\n"
        "72 700 moveto (Second PS page) show showpage\n"
    )
    png = tmp / "pixel.png"
    subprocess.run(
        [
            "gs",
            "-q",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-sDEVICE=png16m",
            "-r10",
            f"-sOutputFile={png}",
            str(color_pdf(tmp / "for-png.pdf", 1)),
        ],
        check=True,
    )
    jpeg = tmp / "pixel.jpg"
    subprocess.run(
        [
            "gs",
            "-q",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-sDEVICE=jpeg",
            "-r10",
            f"-sOutputFile={jpeg}",
            str(tmp / "for-png.pdf"),
        ],
        check=True,
    )
    return {
        "text": text,
        "postscript": ps,
        "png": png,
        "jpeg": jpeg,
        "pdf": color_pdf(tmp / "four.pdf", 4),
    }


def _wait_done(server: PrivateCups, job: int) -> dict[str, object]:
    return server.wait_job(job, {7, 8, 9}, timeout=60)


def test_every_type_reaches_the_sink_as_sanitised_pdf(
    cups: tuple[PrivateCups, Sink], tmp_path: Path
) -> None:
    server, sink = cups
    docs = _documents(tmp_path)
    # texttopdf embeds a font without ToUnicode, so only the PostScript text is read back
    expected = {"postscript": "Hello from PostScript"}
    for kind, path in docs.items():
        before = len(sink.jobs)
        job = server.lp(path, user="alice", queue="Finish")
        attrs = _wait_done(server, job)
        assert attrs["job-state"] == 9, (kind, attrs, server.error_log.read_text()[-2000:])
        data = sink.wait(before + 1)[before]
        assert data.startswith(b"%PDF-"), kind
        out = tmp_path / f"{kind}.out.pdf"
        out.write_bytes(data)
        with pikepdf.open(out) as pdf:
            assert len(pdf.pages) >= 1
            assert "/pullprint:Options" in pdf.docinfo, kind
        if kind in expected:
            assert expected[kind] in page_texts(out)[0]


def test_layout_applied_at_submission(cups: tuple[PrivateCups, Sink], tmp_path: Path) -> None:
    server, sink = cups
    before = len(sink.jobs)
    job = server.lp(
        color_pdf(tmp_path / "five.pdf", 5),
        user="bob",
        queue="Finish",
        options={"number-up": "2", "page-ranges": "2-5"},
    )
    assert _wait_done(server, job)["job-state"] == 9
    out = tmp_path / "nup.pdf"
    out.write_bytes(sink.wait(before + 1)[before])
    texts = page_texts(out)
    assert len(texts) == 2
    assert "Page 2" in texts[0] and "Page 3" in texts[0] and "Page 5" in texts[1]


def test_bad_document_aborts_job_and_queue_goes_on(
    cups: tuple[PrivateCups, Sink], tmp_path: Path
) -> None:
    server, sink = cups
    bad = tmp_path / "locked.pdf"
    with pikepdf.open(color_pdf(tmp_path / "src.pdf", 1)) as pdf:
        pdf.save(bad, encryption=pikepdf.Encryption(user="pw", owner="pw2"))
    job = server.lp(bad, user="carol", queue="Finish")
    # cupsd 2.4 stops (job-state 6) a job whose filter failed, whatever the error policy; the
    # printer stays idle, so the queue goes on with the next job
    attrs = server.wait_job(job, {6, 7, 8}, timeout=60)
    assert attrs["job-state"] in (6, 8)
    assert "password" in str(attrs.get("job-printer-state-message", "")).lower()
    before = len(sink.jobs)
    good = server.lp(color_pdf(tmp_path / "ok.pdf", 1), user="carol", queue="Finish")
    assert _wait_done(server, good)["job-state"] == 9
    sink.wait(before + 1)
