"""DNS-SD discovery, for real and on loopback only: an ippeveprinter announces itself through the
avahi-daemon the peers start (loopback interface only), the node browses with avahi-browse and
reports what it found to the real cloud, and the admin adds it from the printers page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pullprint.config import NodeConfig
from pullprint.daemon import discovery
from pullprint.daemon.node import Node
from pullprint.model import Discovered
from pullprint.peers.cloud import CloudServer
from pullprint.peers.ippeve import AVAHI_CONF, IppEvePrinter
from tests.test_cloud_api import start_cloud
from tests.test_web_admin import PASSWORD, Browser


def browse_until(name: str, timeout: float = 20.0) -> Discovered:
    deadline = time.monotonic() + timeout
    while True:
        found = {d.name: d for d in discovery.browse(timeout=5)}
        if name in found:
            return found[name]
        assert time.monotonic() < deadline, f"{name} not announced; found {sorted(found)}"
        time.sleep(0.5)


def test_the_node_reports_announced_printers_and_the_admin_adds_one(tmp_path: Path) -> None:
    cloud: CloudServer = start_cloud(tmp_path / "cloud", "sqlite")
    try:
        with IppEvePrinter(tmp_path / "printer", name="Lobby Color") as printer:
            if AVAHI_CONF.exists():  # ours runs (a machine's own avahi may use its own config)
                assert "allow-interfaces=lo" in AVAHI_CONF.read_text()
            seen = browse_until("Lobby Color")
            assert seen.address == "127.0.0.1" and seen.port == printer.port
            assert seen.uri.split("://", 1)[1].startswith(f"127.0.0.1:{printer.port}/")
            assert seen.uri.split("://", 1)[0] in ("ipp", "ipps")  # announced as both
            with cloud.node_client("node1") as client:
                node = Node(NodeConfig(name="node1", spool_dir=tmp_path / "spool"), client)
                try:
                    assert node.discover_once() >= 1
                finally:
                    node.journal.close()
            with cloud.admin_client() as admin:
                listed = admin._json("GET", "/printers/discovered")["printers"]
                assert {p["node"] for p in listed if p["name"] == "Lobby Color"} == {"node1"}
                admin.put_user("boss", role="admin", password=PASSWORD)
            boss = Browser(cloud).sign_in("boss")
            page = boss.get("/admin/printers").text
            assert "Lobby Color" in page and page.count("Add as lobby-color") == 1
            offered = (f"ipps://127.0.0.1:{printer.port}/ipp/print", seen.uri)
            assert any(u in page for u in offered)  # ipps:// first when both were announced
            added = boss.post(
                "/admin/printers",
                {"name": "lobby-color", "uri": seen.uri, "node": "node1", "price": "0"},
                "/admin/printers",
            )
            assert added.status_code == 303
            with cloud.admin_client() as admin:
                stored = {p.name: p for p in admin.list_printers()}
            assert stored["lobby-color"].uri == seen.uri
            assert "Add as lobby-color" not in boss.get("/admin/printers").text  # added now
    finally:
        cloud.stop()


def test_a_node_without_avahi_reports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without avahi-browse the node says so once and goes on; the cloud keeps no report."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no avahi-browse on this PATH
    cloud = start_cloud(tmp_path / "cloud", "sqlite")
    try:
        with cloud.node_client("node1") as client:
            node = Node(NodeConfig(name="node1", spool_dir=tmp_path / "spool"), client)
            try:
                assert node.discover_once() == 0
                assert node.discover_once() == 0
            finally:
                node.journal.close()
        with cloud.admin_client() as admin:
            assert admin._json("GET", "/printers/discovered")["printers"] == []
    finally:
        cloud.stop()


def test_the_page_offers_a_printer_once_ipps_first() -> None:
    from pullprint.cloud.web.admin import offered, suggested_name

    both = [
        ("node1", Discovered("Hall", "ipp://127.0.0.5:631/ipp/print"), 1.0),
        ("node1", Discovered("Hall", "ipps://127.0.0.5:631/ipp/print"), 1.0),
        ("node2", Discovered("Hall", "ipp://127.0.9.5:631/ipp/print"), 1.0),
        ("node1", Discovered("Known", "ipp://127.0.0.6:631/ipp/print"), 1.0),
    ]
    rows = offered(both, known={"ipp://127.0.0.6:631/ipp/print"})
    assert [(n, d.uri) for n, d, _ in rows] == [
        ("node1", "ipps://127.0.0.5:631/ipp/print"),
        ("node2", "ipp://127.0.9.5:631/ipp/print"),
    ]
    assert suggested_name("Lobby Color (2nd floor)") == "lobby-color-2nd-floor"
