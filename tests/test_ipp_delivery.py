"""IPP client and delivery against a real ippeveprinter (no mocks): ipp and ipps, counts, job
attributes arriving, cancel, an absent printer, and memory while streaming a 200 MB document."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import psutil
import pytest
import requests

from pullprint.daemon.ipp_delivery import deliver_ipp, find_job_by_name
from pullprint.errors import IPPError, PrinterUnavailable
from pullprint.ipp.client import IppClient, IppJobState, stream_body
from pullprint.ipp.errors import IppCanceled, IppStatusError
from pullprint.model import JobState
from pullprint.peers.documents import make_pdf
from pullprint.peers.ippeve import IppEvePrinter, ensure_dns_sd
from pullprint.peers.ports import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IppEvePrinter]:
    with IppEvePrinter(tmp_path_factory.mktemp("ippeve"), name="pullprint-ipp-test") as running:
        yield running


@pytest.fixture(scope="module")
def slow_printer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IppEvePrinter]:
    root = tmp_path_factory.mktemp("ippeve-slow")
    with IppEvePrinter(root, name="pullprint-slow", command_delay=20.0) as running:
        yield running


@pytest.fixture(scope="module")
def three_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pdf(tmp_path_factory.mktemp("docs") / "three.pdf", 3)


def log_entry(printer: IppEvePrinter, job_name: str) -> dict[str, object]:
    entries = [e for e in printer.job_log() if e["job_name"] == job_name]
    assert len(entries) == 1, printer.job_log()
    return entries[0]


def spool_file(printer: IppEvePrinter, printer_job_id: int | None) -> Path:
    files = [p for p in printer.spool_files() if p.name.startswith(f"{printer_job_id}-")]
    assert len(files) == 1, printer.spool_files()
    return files[0]


def test_print_over_ipp_completes_with_real_counts(printer: IppEvePrinter, three_pages: Path):
    states: list[str] = []
    started = time.monotonic()
    result = deliver_ipp(
        printer.uri,
        three_pages,
        job_name="ipp-plain",
        user="alice",
        job_attributes={},
        on_state=states.append,
    )
    assert result.state is JobState.COMPLETED, result.reason
    assert result.impressions == 3
    assert result.printer_job_id is not None
    assert "job-completed-successfully" in result.reason
    assert states[-1] == "completed"
    assert time.monotonic() - started < 5
    with pikepdf.open(spool_file(printer, result.printer_job_id)) as pdf:
        assert len(pdf.pages) == 3
    entry = log_entry(printer, "ipp-plain")
    assert entry["pages"] == 3
    assert entry["user"] == "alice"


def test_copies_color_mode_and_sides_arrive(printer: IppEvePrinter, three_pages: Path) -> None:
    result = deliver_ipp(
        printer.uri,
        three_pages,
        job_name="ipp-ticket",
        user="bob",
        job_attributes={
            "copies": 2,
            "print-color-mode": "monochrome",
            "sides": "two-sided-long-edge",
            "media": "iso_a4_210x297mm",
        },
    )
    assert result.state is JobState.COMPLETED, result.reason
    assert result.impressions == 6
    entry = log_entry(printer, "ipp-ticket")
    assert entry["copies"] == "2"
    assert entry["print_color_mode"] == "monochrome"
    assert entry["sides"] == "two-sided-long-edge"
    assert entry["media"] == "iso_a4_210x297mm"
    # the printer's own view of the job
    with IppClient(printer.uri) as client:
        status = client.get_job_attributes(result.printer_job_id or 0)
    assert status.job_state == IppJobState.COMPLETED
    assert status.impressions_completed == 6


def test_page_ranges_are_sent_as_range_of_integer(printer: IppEvePrinter, three_pages: Path):
    result = deliver_ipp(
        printer.uri,
        three_pages,
        job_name="ipp-ranges",
        user="alice",
        job_attributes={"page-ranges": "2-3"},
    )
    assert result.state is JobState.COMPLETED, result.reason
    assert result.impressions == 2
    assert log_entry(printer, "ipp-ranges")["page_ranges"] == "2-3"


def test_print_over_ipps_verifies_the_printer_certificate(
    printer: IppEvePrinter, three_pages: Path
) -> None:
    cert = printer.certificate()
    result = deliver_ipp(
        printer.ipps_uri,
        three_pages,
        job_name="ipps-verified",
        user="alice",
        job_attributes={"copies": 1},
        verify=str(cert),
    )
    assert result.state is JobState.COMPLETED, result.reason
    assert result.impressions == 3
    with pikepdf.open(spool_file(printer, result.printer_job_id)) as pdf:
        assert len(pdf.pages) == 3
    # without the certificate the self-signed printer is refused, and not as "unavailable"
    with IppClient(printer.ipps_uri) as client, pytest.raises(IPPError, match="TLS") as info:
        client.get_printer_attributes(["printer-state"])
    assert not isinstance(info.value, PrinterUnavailable)


def test_printer_attributes_view(printer: IppEvePrinter) -> None:
    with IppClient(printer.uri) as client:
        attrs = client.get_printer_attributes()
    assert attrs.printer_name == "pullprint-ipp-test"
    assert attrs.printer_state in (3, 4)
    assert "application/pdf" in attrs.document_format_supported
    assert "two-sided-long-edge" in attrs.sides_supported
    assert "monochrome" in attrs.print_color_mode_supported
    assert attrs.copies_supported is not None and attrs.copies_supported.upper >= 99


def test_status_errors_name_the_status(printer: IppEvePrinter, three_pages: Path) -> None:
    with IppClient(printer.uri) as client:
        with pytest.raises(IppStatusError, match="client-error-not-found") as info:
            client.get_job_attributes(999_999)
        assert info.value.status_code == 0x0406
        assert info.value.status_message
        with pytest.raises(IppStatusError, match=r"client-error-.*document-format"):
            client.print_job(three_pages, document_format="application/x-unknown")


def test_find_job_by_name(printer: IppEvePrinter, three_pages: Path) -> None:
    result = deliver_ipp(
        printer.uri, three_pages, job_name="ipp-find-me", user="alice", job_attributes={}
    )
    found = find_job_by_name(printer.uri, "ipp-find-me")
    assert found is not None
    assert found.job_id == result.printer_job_id
    assert found.state_name == "completed"
    assert find_job_by_name(printer.uri, "no-such-job") is None
    assert printer.find_job("ipp-find-me") == found


def test_cancel_while_printing(slow_printer: IppEvePrinter, three_pages: Path) -> None:
    cancel = threading.Event()
    states: list[str] = []

    def on_state(state: str) -> None:
        states.append(state)
        if state == "processing":
            cancel.set()

    started = time.monotonic()
    result = deliver_ipp(
        slow_printer.uri,
        three_pages,
        job_name="ipp-cancel",
        user="alice",
        job_attributes={},
        cancel=cancel,
        on_state=on_state,
    )
    assert result.state is JobState.CANCELED, result.reason
    assert result.printer_job_id is not None
    assert time.monotonic() - started < 10  # the 20 s print command was not waited for
    with IppClient(slow_printer.uri) as client:
        status = client.get_job_attributes(result.printer_job_id)
    assert status.job_state == IppJobState.CANCELED
    assert "processing" in states


def test_cancel_before_sending_prints_nothing(printer: IppEvePrinter, three_pages: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    before = len(printer.spool_files())
    result = deliver_ipp(
        printer.uri, three_pages, job_name="x", user="a", job_attributes={}, cancel=cancel
    )
    assert result.state is JobState.CANCELED
    assert len(printer.spool_files()) == before


def test_stream_body_yields_chunks_and_stops_on_cancel(tmp_path: Path) -> None:
    document = tmp_path / "doc.bin"
    document.write_bytes(b"x" * (3 * 65536 + 10))
    chunks = list(stream_body(b"HDR", document))
    assert chunks[0] == b"HDR"
    assert [len(c) for c in chunks[1:]] == [65536, 65536, 65536, 10]
    cancel = threading.Event()
    body = stream_body(b"HDR", document, cancel)
    next(body)
    next(body)
    cancel.set()
    with pytest.raises(IppCanceled):
        next(body)


def test_printer_not_running_is_unavailable_quickly(three_pages: Path) -> None:
    uri = f"ipp://127.0.0.1:{free_port()}/ipp/print"
    started = time.monotonic()
    with pytest.raises(PrinterUnavailable):
        deliver_ipp(uri, three_pages, job_name="x", user="alice", job_attributes={})
    with IppClient(uri, timeout=2) as client, pytest.raises(PrinterUnavailable):
        client.get_printer_attributes()
    assert time.monotonic() - started < 2


def test_injected_session_is_left_open(printer: IppEvePrinter) -> None:
    closed: list[bool] = []

    class Session(requests.Session):
        def close(self) -> None:
            closed.append(True)
            super().close()

    with Session() as session:
        with IppClient(printer.uri, session=session) as client:
            client.get_printer_attributes(["printer-state"])
        assert closed == []
        with IppClient(printer.uri, session=session) as client:
            client.get_printer_attributes(["printer-state"])  # still usable
    assert closed == [True]


def test_streaming_200_mb_keeps_memory_flat(printer: IppEvePrinter, tmp_path: Path) -> None:
    """A 200 MB document goes through Print-Job without the process growing with it."""
    size = 200 * 1024 * 1024
    document = tmp_path / "big.pwg"
    with document.open("wb") as handle:  # a sparse file: PWG sync word, then zeros
        handle.write(b"RaS2")
        handle.truncate(size)
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with IppClient(printer.uri) as client:
            job_id = client.print_job(
                document, document_format="image/pwg-raster", job_name="ipp-big", user="alice"
            )
    finally:
        done.set()
        sampler.join()
    assert job_id > 0
    growth = peak - baseline
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert spool_file(printer, job_id).stat().st_size == size  # all of it arrived
    open_paths = {Path(f.path) for f in process.open_files()}
    assert document not in open_paths  # the document's file handle is closed


def test_dns_sd_start_is_idempotent() -> None:
    ensure_dns_sd()
    ensure_dns_sd()


def test_dns_sd_starts_over_stale_pid_files() -> None:
    """A machine whose processes were all ended keeps /run/dbus/pid: the bus must start anyway."""
    ensure_dns_sd()
    for name in ("avahi-daemon", "dbus-daemon"):
        subprocess.run(["pkill", "-KILL", "-x", name], check=False)
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-x", "dbus-daemon"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dbus-daemon did not die"
        time.sleep(0.05)
    Path("/run/dbus/pid").write_text("999999\n")  # what SIGKILL leaves behind
    ensure_dns_sd()
    for name in ("dbus-daemon", "avahi-daemon"):
        assert subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0, name
