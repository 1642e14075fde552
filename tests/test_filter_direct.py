"""pullprint-finish as submitd runs it (``direct``): the document read from the open file the
filter executable passed, the prepared PDF written straight into the output file, no work file;
against the in-process run (work files) on the same documents, and as the pullprint user, who
may not open CUPS's spool file by name (the copy path)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pikepdf
import pytest

from pullprint.cups.protocol import StatusWriter
from pullprint.filters import finish
from pullprint.filters.sanitize import read_marks
from tests.test_finishing_support import color_pdf, page_texts

NOBODY = 65534


def run_direct(
    document: Path, out: Path, options: str = "", *, direct: bool = True, tmpdir: Path
) -> tuple[int, list[str]]:
    """finish.run as submitd calls it: argv[6] named, its open file on stdin."""
    lines = io.StringIO()
    argv = ["PullPrint", "42", "alice", "t", "1", options, str(document)]
    with document.open("rb") as source, out.open("wb") as target:
        code = finish.run(
            argv, source, target, StatusWriter(lines), str(tmpdir), opened=True, direct=direct
        )
    return int(code), lines.getvalue().splitlines()


def work_files(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.iterdir())


def texts(path: Path) -> list[str]:
    return [text.strip() for text in page_texts(path)]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_direct_output_is_the_in_process_output(tmp_path: Path, work: Path) -> None:
    doc = color_pdf(tmp_path / "doc.pdf", 3)
    fast, slow = tmp_path / "fast.pdf", tmp_path / "slow.pdf"
    code, lines = run_direct(doc, fast, tmpdir=work)
    assert code == 0, lines
    assert "INFO: pullprint-finish: 3 page(s)" in lines
    assert "ATTR: job-impressions=3" in lines
    assert run_direct(doc, slow, direct=False, tmpdir=work)[0] == 0
    assert texts(fast) == texts(slow) == [f"Page {n}" for n in (1, 2, 3)]
    assert read_marks(fast) == read_marks(slow)
    assert read_marks(fast)["Pages"] == "3"
    assert work_files(work) == []  # nothing left behind, nothing made for the direct run


def test_direct_with_layout_options_lays_out_once(tmp_path: Path, work: Path) -> None:
    doc = color_pdf(tmp_path / "doc.pdf", 4)
    out = tmp_path / "out.pdf"
    code, lines = run_direct(doc, out, "number-up=2", tmpdir=work)
    assert code == 0, lines
    assert "INFO: pullprint-finish: 2 page(s)" in lines
    assert read_marks(out)["Applied"].startswith("number-up=2 ")
    again = tmp_path / "again.pdf"  # its own output: not laid out again
    assert run_direct(out, again, "number-up=2", tmpdir=work)[0] == 0
    with pikepdf.open(again) as pdf:
        assert len(pdf.pages) == 2
    assert work_files(work) == []


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog", "unreadable pdf"),
        (b"GIF89a not a pdf at all", "not a pdf"),
    ],
)
def test_direct_bad_document_names_argv6_and_writes_nothing(
    tmp_path: Path, work: Path, data: bytes, words: str
) -> None:
    doc = tmp_path / "bad.pdf"
    doc.write_bytes(data)
    out = tmp_path / "out.pdf"
    code, lines = run_direct(doc, out, tmpdir=work)
    assert code == 1, lines
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    assert len(errors) == 1, lines
    assert words in errors[0].lower(), lines
    assert "/proc/" not in errors[0] and errors[0].startswith("ERROR: pullprint-finish: job 42")
    assert work_files(work) == []


def test_direct_from_a_pipe_copies_it(tmp_path: Path, work: Path) -> None:
    """stdin that is not a regular file (6 arguments, in-process): read into a temp file."""
    doc = color_pdf(tmp_path / "doc.pdf", 2)
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(["cat", str(doc)], stdout=write_end)
    os.close(write_end)
    out, lines = tmp_path / "out.pdf", io.StringIO()
    argv = ["PullPrint", "42", "alice", "t", "1", ""]
    with os.fdopen(read_end, "rb") as source, out.open("wb") as target:
        code = finish.run(argv, source, target, StatusWriter(lines), str(work), direct=True)
    assert writer.wait(10) == 0
    assert code == 0, lines.getvalue()
    assert texts(out) == ["Page 1", "Page 2"]
    assert work_files(work) == []


CHILD = """
import io, os, sys
from pullprint.cups.protocol import StatusWriter
from pullprint.filters import finish
fd, doc, out, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
try:
    open(doc, "rb")
except PermissionError:
    pass
else:
    sys.exit("the test's document is readable by this user")
lines = io.StringIO()
with os.fdopen(fd, "rb") as source, open(out, "wb") as target:
    code = finish.run(["PullPrint", "42", "alice", "t", "1", "", doc], source, target,
                      StatusWriter(lines), work, opened=True, direct=True)
print(lines.getvalue(), file=sys.stderr)
sys.exit(int(code))
"""


def test_direct_as_a_user_who_may_not_open_the_spool_file(tmp_path: Path) -> None:
    """submitd runs as pullprint, CUPS's spool file is root's: the open file is copied (in the
    kernel) into a temp file of submitd's and read from there; the output is the same."""
    doc = color_pdf(tmp_path / "doc.pdf", 3)  # pytest's folder is root's alone (0700)
    doc.chmod(0o600)
    shared = Path(tempfile.mkdtemp(prefix="pullprint-test-"))
    os.chown(shared, NOBODY, NOBODY)
    out, work = shared / "out.pdf", shared / "work"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    fd = os.open(doc, os.O_RDONLY)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(fd), str(doc), str(out), str(work)],
            pass_fds=(fd,),
            user=NOBODY,
            group=NOBODY,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        assert proc.returncode == 0, proc.stderr
        assert "pullprint-finish: 3 page(s)" in proc.stderr
        assert texts(out) == ["Page 1", "Page 2", "Page 3"]
        assert list(work.iterdir()) == []
    finally:
        os.close(fd)
        shutil.rmtree(shared)
