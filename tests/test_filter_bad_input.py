"""pullprint-finish on hostile documents and option values, run as CUPS runs it (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pikepdf
import pytest

from tests.test_finishing_support import color_pdf, page_texts

FILTER = "import sys; from pullprint.filters.finish import main; sys.exit(main())"
LIMIT = 60.0


def run_filter(
    document: Path,
    options: str = "",
    copies: str = "1",
    title: str = "t",
) -> tuple[int, bytes, list[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", FILTER, "42", "alice", title, copies, options, str(document)],
        capture_output=True,
        timeout=LIMIT,
    )
    elapsed = time.monotonic() - start
    lines = proc.stderr.decode("utf-8", "replace").splitlines()
    return proc.returncode, proc.stdout, lines, elapsed


def errors(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith("ERROR:")]


def assert_rejected(code: int, lines: list[str], words: str) -> None:
    assert code == 1, lines
    assert len(errors(lines)) == 1, lines
    assert words in errors(lines)[0].lower(), lines
    assert all(ln.split(":", 1)[0] in {"ERROR", "INFO", "DEBUG", "ATTR"} for ln in lines), lines


def assert_valid_or_rejected(code: int, out: bytes, lines: list[str], tmp: Path) -> None:
    if code == 1:
        assert len(errors(lines)) == 1, lines
        return
    assert code == 0, lines
    result = tmp / "result.pdf"
    result.write_bytes(out)
    with pikepdf.open(result) as pdf:
        assert len(pdf.pages) >= 1


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return color_pdf(tmp_path / "good.pdf", 4)


def test_good_document_layout_applied_and_marked(good: Path, tmp_path: Path) -> None:
    code, out, lines, _ = run_filter(good, "number-up=2 page-ranges=2-4 job-uuid=urn:uuid:x")
    assert code == 0, lines
    result = tmp_path / "out.pdf"
    result.write_bytes(out)
    with pikepdf.open(result) as pdf:
        assert len(pdf.pages) == 2
        assert str(pdf.docinfo["/pullprint:Pages"]) == "2"
        assert "number-up=2" in str(pdf.docinfo["/pullprint:Applied"])
        assert "page-ranges=2-4" in str(pdf.docinfo["/pullprint:Applied"])
    texts = page_texts(result)
    assert "Page 2" in texts[0] and "Page 3" in texts[0] and "Page 4" in texts[1]
    assert "INFO: pullprint-finish: 2 page(s)" in lines
    # idempotent: the filter on its own output applies nothing again
    code, out2, lines, _ = run_filter(result, "number-up=2 page-ranges=2-4")
    assert code == 0
    again = tmp_path / "again.pdf"
    again.write_bytes(out2)
    with pikepdf.open(again) as pdf:
        assert len(pdf.pages) == 2


def test_truncated(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pdf"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    code, out, lines, elapsed = run_filter(bad)
    assert elapsed < LIMIT
    assert_valid_or_rejected(code, out, lines, tmp_path)


def test_truncated_to_header_only(tmp_path: Path) -> None:
    bad = tmp_path / "stub.pdf"
    bad.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")
    code, _out, lines, _ = run_filter(bad)
    assert_rejected(code, lines, "pdf")


def test_broken_xref_is_repaired(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "xref.pdf"
    data = good.read_bytes()
    start = data.rfind(b"startxref")
    bad.write_bytes(data[:start] + b"startxref\n999999\n%%EOF\n")
    code, out, lines, _ = run_filter(bad)
    assert code == 0, lines
    result = tmp_path / "r.pdf"
    result.write_bytes(out)
    with pikepdf.open(result) as pdf:
        assert len(pdf.pages) == 4


def test_password_encrypted(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "locked.pdf"
    with pikepdf.open(good) as pdf:
        pdf.save(bad, encryption=pikepdf.Encryption(user="secret", owner="owner"))
    code, _out, lines, _ = run_filter(bad)
    assert_rejected(code, lines, "password")


def test_zero_pages(tmp_path: Path) -> None:
    bad = tmp_path / "empty.pdf"
    pikepdf.new().save(bad)
    code, _out, lines, _ = run_filter(bad)
    assert_rejected(code, lines, "no pages")


def test_not_a_pdf(tmp_path: Path) -> None:
    bad = tmp_path / "x.pdf"
    bad.write_bytes(b"#!/bin/sh\nrm -rf /\n")
    code, _out, lines, _ = run_filter(bad)
    assert_rejected(code, lines, "not a pdf")


def test_ten_thousand_pages(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    pdf = pikepdf.new()
    content = pdf.make_stream(b"0 0 0 rg 10 10 50 50 re f")
    for _ in range(10_000):
        pdf.pages.append(
            pikepdf.Page(
                pikepdf.Dictionary(
                    Type=pikepdf.Name.Page, MediaBox=[0, 0, 595, 842], Contents=content
                )
            )
        )
    pdf.save(big)
    code, out, lines, elapsed = run_filter(big, "number-up=16")
    assert code == 0, lines
    assert elapsed < LIMIT
    result = tmp_path / "r.pdf"
    result.write_bytes(out)
    with pikepdf.open(result) as done:
        assert len(done.pages) == 625


def test_giant_page_box(tmp_path: Path) -> None:
    bad = color_pdf(tmp_path / "giant.pdf", 2, size=(1e9, 1e9))
    code, _out, lines, _ = run_filter(bad)
    assert_rejected(code, lines, "largest page")


def test_deep_recursion(tmp_path: Path) -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Deep 4 0 R >>",
        body,
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    bad = tmp_path / "deep.pdf"
    bad.write_bytes(bytes(out))
    code, result, lines, elapsed = run_filter(bad)
    assert elapsed < LIMIT
    assert_valid_or_rejected(code, result, lines, tmp_path)


def test_deep_page_tree(tmp_path: Path) -> None:
    depth = 5000
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        number = level + 2
        objs.append(f"<< /Type /Pages /Kids [{number + 1} 0 R] /Count 1 >>".encode())
    objs.append(b"<< /Type /Page /MediaBox [0 0 595 842] >>")
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    bad = tmp_path / "tree.pdf"
    bad.write_bytes(bytes(out))
    code, result, lines, elapsed = run_filter(bad)
    assert elapsed < LIMIT
    assert_valid_or_rejected(code, result, lines, tmp_path)


def test_javascript_launch_and_embedded_files_removed(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "js.pdf"
    with pikepdf.open(good) as pdf:
        js = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
        pdf.Root.OpenAction = js
        pdf.Root.AA = pikepdf.Dictionary(WC=js)
        launch = pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("cmd.exe"))
        pdf.pages[0].obj.AA = pikepdf.Dictionary(O=launch)
        pdf.pages[0].obj.Annots = pikepdf.Array(
            [
                pdf.make_indirect(
                    pikepdf.Dictionary(
                        Type=pikepdf.Name.Annot,
                        Subtype=pikepdf.Name.Link,
                        Rect=[0, 0, 10, 10],
                        A=launch,
                    )
                ),
            ]
        )
        pdf.attachments["evil.exe"] = pikepdf.AttachedFileSpec(pdf, b"MZ evil")
        pdf.Root.Names.JavaScript = pikepdf.Dictionary(
            Names=pikepdf.Array([pikepdf.String("a"), js])
        )
        pdf.save(bad)
    code, out, lines, _ = run_filter(bad)
    assert code == 0, lines
    result = tmp_path / "clean.pdf"
    result.write_bytes(out)
    with pikepdf.open(result) as pdf:
        assert "/OpenAction" not in pdf.Root and "/AA" not in pdf.Root
        assert "/JavaScript" not in pdf.Root.get("/Names", {})
        assert len(pdf.attachments) == 0
        assert "/AA" not in pdf.pages[0].obj
        assert all("/A" not in a for a in pdf.pages[0].obj.get("/Annots", []))
        assert len(pdf.pages) == 4
    raw = out
    assert b"app.alert" not in raw and b"cmd.exe" not in raw and b"MZ evil" not in raw
    assert any("removed" in ln for ln in lines)


@pytest.mark.parametrize(
    "options",
    [
        "number-up=2;touch${IFS}/tmp/pwned",
        "page-ranges='1-2`touch /tmp/pwned`'",
        "number-up=99999999999999999999",
        "collate=$(touch /tmp/pwned)",
        "sides=two-sided-long-edge;reboot",
    ],
)
def test_hostile_options_rejected(good: Path, options: str) -> None:
    code, _out, lines, _ = run_filter(good, options)
    assert_rejected(code, lines, "must")
    assert not Path("/tmp/pwned").exists()


def test_hostile_title_and_huge_copies(good: Path) -> None:
    code, _out, lines, _ = run_filter(
        good, "frobnicate=$(reboot) unknown", title="$(touch /tmp/pwned)"
    )
    assert code == 0, lines
    code, _out, lines, _ = run_filter(good, "", copies="1000000")
    assert_rejected(code, lines, "copies")
    assert not Path("/tmp/pwned").exists()
