"""Raw port 9100 delivery through the whole stack: the PJL header the plan asks for reaches a
socket sink byte for byte; the count is real when the SNMP page counter moves, else estimated.
Also `pullprint node status` and the /metrics endpoint after those jobs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from pullprint.daemon.jetdirect import send_socket
from pullprint.filters.pjl import UEL
from pullprint.model import JobState
from pullprint.peers.jetdirect import SocketSink
from pullprint.peers.ports import free_port
from pullprint.peers.snmp import SnmpAgent
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold

FINAL = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED}


def test_send_socket_streams_the_bytes(tmp_path: Path) -> None:
    doc = tmp_path / "doc.bin"
    doc.write_bytes(bytes(range(256)) * 1000)
    with SocketSink() as sink:
        assert send_socket(sink.uri, doc) == 256_000
        deadline = 50
        while not sink.received() and deadline:
            deadline -= 1
            import time

            time.sleep(0.05)
        assert sink.received() == [doc.read_bytes()]


def test_raw_printer_with_pjl_snmp_status_metrics(world_dir: Path) -> None:
    agent = SnmpAgent(world_dir / "snmp", count=5000).start()
    counted = SocketSink(on_job=lambda data: agent.add_pages(3)).start()  # prints 3 impressions
    blind = SocketSink().start()
    metrics_port = free_port()
    try:
        options = {
            "raw_profiles": {"raw1": "duplex=yes, color=yes, pjl=yes"},
            "snmp": {"raw1": agent.target},
            "snmp_settle_seconds": 0.3,
            "snmp_wait_seconds": 4.0,
            "metrics_port": metrics_port,
            "log_format": "kv",
        }
        with Stack(world_dir / "stack", node_options=options) as stack:
            with stack.admin() as admin:
                from pullprint.model import Printer

                admin.add_printer(Printer("raw1", counted.uri, "node1"))
                admin.add_printer(Printer("raw2", blind.uri, "node1"))
            _, uuid = print_and_hold(stack, world_dir, pages=3)
            out = stack.cli(
                "release", uuid, "--printer", "raw1", "--user", "alice", "--pin", "1234",
                "--option", "copies=2", "--option", "sides=two-sided-long-edge",
                "--option", "print-color-mode=monochrome",
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            final = stack.wait_state(uuid, FINAL)
            assert final.state is JobState.COMPLETED, final.state_reason
            assert final.impressions == 3  # the page counter's word, not the estimate (6)
            assert "SNMP" in final.state_reason
            data = counted.received()[0]
            assert data.startswith(UEL + b"@PJL\r\n")
            header = data[: data.index(b"%PDF")].decode("ascii")
            assert f'@PJL JOB NAME="pullprint-{uuid}"' in header
            assert "@PJL SET QTY=2" in header
            assert "@PJL SET DUPLEX=ON" in header and "@PJL SET BINDING=LONGEDGE" in header
            assert "@PJL SET RENDERMODE=GRAYSCALE" in header
            assert "@PJL ENTER LANGUAGE=PDF" in header
            assert data.endswith(UEL + f'@PJL EOJ NAME="pullprint-{uuid}"\r\n'.encode() + UEL)
            assert data.count(b"%PDF") == 1  # copies in PJL only, never also in the PDF

            _, uuid2 = print_and_hold(stack, world_dir, pages=2)
            out = stack.cli("release", uuid2, "--printer", "raw2", "--user", "bob", "--pin", "5678")
            assert out.returncode == 3  # not bob's
            out = stack.cli(
                "release", uuid2, "--printer", "raw2", "--user", "alice", "--pin", "1234"
            )
            assert out.returncode == 0, out.stderr
            final2 = stack.wait_state(uuid2, FINAL)
            assert final2.state is JobState.COMPLETED
            assert final2.impressions == 2
            assert final2.state_reason.startswith("estimated")
            assert len(blind.received()) == 1

            status = stack.cli("node", "status", "--json")
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            by_uuid = {j["uuid"]: j for j in report["jobs"]}
            assert by_uuid[uuid]["step"] == "done" and by_uuid[uuid]["reported"]
            assert by_uuid[uuid]["plan"]["transport"] == "socket"
            assert by_uuid[uuid2]["estimated"] is True
            printers = {p["name"]: p for p in report["printers"]}
            assert printers["raw1"]["last_state"] == "completed"
            text = stack.cli("node", "status").stdout
            assert "raw2" in text and "estimated" in text

            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
                body = answer.read().decode()
            assert (
                'pullprint_node_jobs_total{printer="raw1",protocol="socket",result="completed"} 1'
                in body
            )
            assert (
                'pullprint_node_delivery_seconds_count{printer="raw2",protocol="socket"} 1' in body
            )
            assert "pullprint_node_outbox_size 0" in body
            assert "pullprint_node_last_cloud_contact_seconds" in body
            log_text = (stack.root / "node.log").read_text()
            assert "level=info" in log_text and f"job={uuid}" in log_text
    finally:
        counted.stop()
        blind.stop()
        agent.stop()
