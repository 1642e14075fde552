from __future__ import annotations

import io
import os
import signal

import pytest

from pullprint.cups.protocol import (
    CancelFlag,
    StatusWriter,
    Terminated,
    parse_job_args,
    parse_options,
)
from pullprint.daemon.ticket import TicketError, build_ticket


def test_parse_options_like_cups() -> None:
    text = "ColorModel=Gray job-uuid=urn:uuid:1-2 title='a b' x=\"c d\" flag esc=a\\ b"
    assert parse_options(text) == {
        "ColorModel": "Gray",
        "job-uuid": "urn:uuid:1-2",
        "title": "a b",
        "x": "c d",
        "flag": "true",
        "esc": "a b",
    }


def test_parse_options_hostile_input_does_not_crash() -> None:
    assert parse_options("='' a='unterminated") == {"a": "unterminated"}
    assert parse_options("") == {}


def test_parse_job_args() -> None:
    args = parse_job_args(["backend", "12", "alice", "T", "2", "Duplex=None", "/tmp/f"])
    assert (args.job_id, args.user, args.copies, args.file) == (12, "alice", 2, "/tmp/f")
    with pytest.raises(ValueError, match="expected 5 or 6"):
        parse_job_args(["backend", "1"])
    with pytest.raises(ValueError, match="integers"):
        parse_job_args(["backend", "x", "u", "t", "1", ""])


def test_status_lines_are_single_lines() -> None:
    out = io.StringIO()
    status = StatusWriter(out)
    status.info("two\nlines")
    status.attr(job_impressions=3)
    status.pages(4)
    assert out.getvalue() == "INFO: two lines\nATTR: job-impressions=3\nPAGE: total 4\n"


def test_sigterm_interrupts_a_blocking_read() -> None:
    flag = CancelFlag()
    read_fd, write_fd = os.pipe()
    with flag.on_sigterm(), os.fdopen(read_fd, "rb") as reader:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
        try:
            with pytest.raises(Terminated), flag.interruptible():
                reader.read(10)  # blocks: nothing is ever written
        finally:
            signal.signal(signal.SIGALRM, previous)
            os.close(write_fd)
    assert flag.is_set()


def test_ticket_from_cups_options_and_release_changes() -> None:
    options = {
        "ColorModel": "Gray",
        "print-color-mode": "color",  # the queue's default, passed along by cupsd
        "Duplex": "DuplexNoTumble",
        "PageSize": "A4",
    }
    ticket = build_ticket(options, 2)
    assert ticket == {
        "copies": 2,
        "print-color-mode": "monochrome",
        "sides": "two-sided-long-edge",
        "media": "iso_a4_210x297mm",
    }
    changed = build_ticket({}, 1, {"copies": "3", "sides": "one-sided"})
    assert changed == {"copies": 3, "sides": "one-sided"}


@pytest.mark.parametrize(
    "release",
    [
        {"copies": "0"},
        {"copies": "1000000"},
        {"copies": "1;rm -rf /"},
        {"sides": "x"},
        {"evil": "1"},
        {"print-color-mode": "$(id)"},
    ],
)
def test_ticket_rejects_hostile_release_options(release: dict[str, str]) -> None:
    with pytest.raises(TicketError):
        build_ticket({}, 1, release)
