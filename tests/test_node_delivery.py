"""Node delivery against real peers: an unreachable printer is retried inside the window with
the job shown waiting, then FAILED, and the owner releases it elsewhere; IPPS with a pinned
certificate; graceful SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from pullprint.config import NodeConfig
from pullprint.daemon import tls
from pullprint.daemon.delivery import ipp_capabilities, parse_profile, protocol_of
from pullprint.daemon.journal import Journal
from pullprint.errors import IPPError
from pullprint.model import JobState, Printer, TransactionStatus
from pullprint.peers.ippeve import IppEvePrinter
from pullprint.peers.ports import free_port
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold


def test_protocols_and_profiles() -> None:
    assert protocol_of("ipps://h/ipp/print") == "ipp"
    assert protocol_of("lpd://h/q") == "lpr"
    assert protocol_of("socket://h:9100") == "socket"
    with pytest.raises(IPPError):
        protocol_of("smb://h/q")
    spec = parse_profile("formats=application/postscript, duplex=yes, pjl=no")
    assert spec.document_formats == ("application/postscript",)
    assert spec.duplex and not spec.pjl


def test_journal_steps_and_resume_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.begin("a", "p1", "socket://127.0.0.1:1", "socket", {"copies": "2"})
    assert not journal.begin("a", "p1", "socket://127.0.0.1:1", "socket", {})
    journal.begin("b", "p1", "ipp://127.0.0.1:1/ipp/print", "ipp", {})
    journal.step("a", "sending", counter_before=7)
    journal.finish("b", "completed", "", impressions=3)
    journal.reported("b")
    assert [e.uuid for e in journal.unfinished()] == ["a"]
    entry = journal.get("a")
    assert entry is not None and entry.counter_before == 7 and entry.options == {"copies": "2"}
    with pytest.raises(ValueError):
        journal.step("a", "printed")
    journal.close()
    again = Journal(tmp_path)  # durable
    assert again.get("b") is not None and again.printers()[0].last_state == "completed"
    again.close()


def test_unreachable_printer_waits_then_fails_then_prints_elsewhere(world_dir: Path) -> None:
    options = {"retry_window_seconds": 3.0, "retry_max_backoff": 0.5}
    with Stack(world_dir / "stack", node_options=options) as stack:
        gone = f"ipp://127.0.0.1:{free_port()}/ipp/print"
        with stack.admin() as admin:
            admin.add_printer(Printer("gone", gone, "node1"))
        _, uuid = print_and_hold(stack, world_dir, pages=2)
        out = stack.cli("release", uuid, "--printer", "gone", "--user", "alice", "--pin", "1234")
        assert out.returncode == 0, out.stderr
        waiting = stack.wait_state(uuid, {JobState.PRINTING}, timeout=10)
        assert waiting.state_reason.startswith("waiting: printer gone unreachable")
        failed = stack.wait_state(uuid, {JobState.FAILED}, timeout=15)
        assert "unreachable or refusing" in failed.state_reason
        assert failed.transaction is not None
        assert failed.transaction.status is TransactionStatus.PENDING  # kept for elsewhere
        out = stack.cli(
            "release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        assert out.returncode == 0, out.stderr
        done = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=20)
        assert done.state is JobState.COMPLETED, done.state_reason
        assert done.impressions == 2


def test_ipps_pinned_certificate(world_dir: Path) -> None:
    import hashlib
    import ssl

    with IppEvePrinter(world_dir / "p", name="tls1") as printer:
        der = ssl.PEM_cert_to_DER_cert(printer.certificate().read_text())
        pin = hashlib.sha256(der).hexdigest()
        uri = printer.ipps_uri
        good = NodeConfig(spool_dir=world_dir, tls_pins={"tls1": pin})
        session, verify = tls.session_for(good, "tls1", uri)
        with session:
            caps = ipp_capabilities(uri, "tls1", session, verify)
        assert "application/pdf" in caps.document_format_supported
        bad = NodeConfig(spool_dir=world_dir, tls_pins={"tls1": "00" * 32})
        session, verify = tls.session_for(bad, "tls1", uri)
        with session, pytest.raises((IPPError, requests.RequestException)):
            ipp_capabilities(uri, "tls1", session, verify)
        system = NodeConfig(spool_dir=world_dir)  # self-signed: the system CAs refuse it
        session, verify = tls.session_for(system, "tls1", uri)
        with session, pytest.raises(IPPError):
            ipp_capabilities(uri, "tls1", session, verify)
        tofu = NodeConfig(spool_dir=world_dir, tls_tofu=("tls1",))
        session, verify = tls.session_for(tofu, "tls1", uri)
        with session:
            ipp_capabilities(uri, "tls1", session, verify)
        assert pin in (world_dir / tls.TOFU_FILE).read_text()


def test_sigterm_stops_promptly_while_long_polling(world_dir: Path) -> None:
    with Stack(world_dir / "stack") as stack:
        assert stack.node is not None and stack.node.proc is not None
        time.sleep(1.0)  # the node is now inside a 20 s long-poll
        started = time.monotonic()
        stack.node.stop()
        assert stack.node.proc.returncode == 0
        assert time.monotonic() - started < 5
