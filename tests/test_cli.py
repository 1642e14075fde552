"""The ``pullprint`` command line as scripts use it: the real command (``python -m pullprint``)
in subprocesses against a real cloud server process (``start_cloud``). Every listing's
``--json`` is compared with what the API answers; every exit-code class is provoked for real
(bad usage, a wrong PIN, an unknown job, a cloud that is down); ``login`` saves a 0600 session
that later commands use; ``print FILE`` lands a held job in the signed-in user's queue.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import struct
import subprocess
import sys
import termios
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pullprint.cloudsync.client import AdminClient
from pullprint.config import Config, NodeConfig, dump
from pullprint.daemon.journal import Journal
from pullprint.model import JobState, Printer
from pullprint.peers.cloud import CloudServer
from pullprint.peers.ports import free_port
from tests.test_cloud_api import held_job, start_cloud

PASSWORD = "correct horse battery"


class Cli:
    """Runs ``python -m pullprint --config CONFIG ...`` with its own session folder."""

    def __init__(self, config: Path, home: Path) -> None:
        self.config = config
        self.home = home

    @property
    def session_file(self) -> Path:
        return self.home / "pullprint" / "session"

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PULLPRINT_SESSION",)}
        env["XDG_CONFIG_HOME"] = str(self.home)
        env.pop("PULLPRINT_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "pullprint", "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )

    def raw(self, *args: str) -> bytes:
        """Standard output as bytes (CSV keeps its CRLF line ends); the command must succeed."""
        env = {k: v for k, v in os.environ.items() if k not in ("PULLPRINT_SESSION",)}
        env["XDG_CONFIG_HOME"] = str(self.home)
        done = subprocess.run(
            [sys.executable, "-m", "pullprint", "--config", str(self.config), *args],
            capture_output=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"), "sqlite")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cli(cloud: CloudServer, tmp_path: Path) -> Cli:
    return Cli(cloud.config_path, tmp_path / "xdg")


@pytest.fixture
def admin(cloud: CloudServer) -> Iterator[AdminClient]:
    with cloud.admin_client() as client:
        yield client


def _api(cloud: CloudServer, path: str, token: str | None = None, **params: str) -> Any:
    answer = requests.get(
        f"{cloud.url}/api/v1{path}",
        headers={"Authorization": f"Bearer {token or cloud.admin_token}"},
        params=params,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json() if "json" in answer.headers["content-type"] else answer.text


def _user(admin: AdminClient, password: str = PASSWORD) -> str:
    name = f"u{uuidlib.uuid4().hex[:10]}"
    admin.put_user(name, password=password, pin="2468")
    return name


# -- listings: --json is what the API answers ------------------------------------------------------


def test_jobs_and_show_json_match_the_api(cloud: CloudServer, cli: Cli, tmp_path: Path) -> None:
    with cloud.node_client("node1") as node:
        job, _ = held_job(node, tmp_path, owner="alice", origin="node1")
    listed = cli.json("jobs", "--user", "alice")
    assert listed == _api(cloud, "/jobs", user="alice")["jobs"]
    assert job.uuid in [j["uuid"] for j in listed]
    held = cli.json("jobs", "--user", "alice", "--state", "held")
    assert held == _api(cloud, "/jobs", user="alice", state="held")["jobs"]
    assert cli.json("show", job.uuid) == _api(cloud, f"/jobs/{job.uuid}")
    text = cli("jobs", "--user", "alice")
    assert text.returncode == 0 and job.uuid in text.stdout and "held" in text.stdout
    newest = cli.json("jobs", "--user", "alice", "--limit", "1")
    assert newest == listed[:1]
    refused = cli("jobs", "--limit", "0")
    assert refused.returncode == 2 and "at least 1" in refused.stderr


def test_printers_users_terminals_groups_json_match_the_api(
    cloud: CloudServer, cli: Cli, admin: AdminClient
) -> None:
    assert cli.json("printers") == _api(cloud, "/printers")["printers"]
    assert cli.json("admin", "printers") == _api(cloud, "/printers")["printers"]
    name = _user(admin)
    admin.put_group("staff", ["alice", name])
    admin.add_terminal(f"t-{name}", "printer1", ["card", "pin"])
    assert cli.json("admin", "users") == _api(cloud, "/users")["users"]
    assert cli.json("admin", "terminals") == _api(cloud, "/terminals")["terminals"]
    groups = cli.json("admin", "groups")
    staff = next(g for g in groups if g["name"] == "staff")
    assert staff["members"] == _api(cloud, "/groups/staff")["members"] == sorted(["alice", name])
    for group in groups:
        assert group["members"] == _api(cloud, f"/groups/{group['name']}")["members"]


def _completed_job(cloud: CloudServer, tmp_path: Path) -> str:
    """A job of bob released to printer1, printed and reported completed by node1."""
    with cloud.node_client("node1") as node, cloud.admin_client() as admin:
        job, _ = held_job(node, tmp_path, owner="bob", origin="node1", pages=2, copies=1)
        admin.release(job.uuid, "bob", "56789", "printer1")
        node.claim(job.uuid)
        node.progress(job.uuid, JobState.PRINTING)
        node.progress(job.uuid, JobState.COMPLETED, impressions=2, sheets=2)
    return job.uuid


def test_reports_and_transactions_json_and_csv_match_the_api(
    cloud: CloudServer, cli: Cli, tmp_path: Path
) -> None:
    uuid = _completed_job(cloud, tmp_path)
    for group in ("user", "printer", "period"):
        got = cli.json("admin", "reports", "--group", group, "--period", "day")
        assert got == _api(cloud, "/accounting/reports", group=group, period="day")
    bob = cli.json("admin", "reports", "--user", "bob")
    assert [r["key"] for r in bob["rows"]] == ["bob"] and bob["rows"][0]["completed"] >= 1
    csv_out = cli.raw("admin", "reports", "--group", "printer", "--format", "csv")
    api_csv = _api(cloud, "/accounting/reports", group="printer", period="month", format="csv")
    assert csv_out == api_csv.encode() and api_csv.startswith("key,currency,")
    rows = cli.json("admin", "transactions", "--user", "bob")
    assert rows == _api(cloud, "/accounting/transactions", user="bob")["transactions"]
    assert uuid in [r["job_uuid"] for r in rows]
    tx_csv = cli.raw("admin", "transactions", "--printer", "printer1", "--format", "csv")
    api_tx = _api(cloud, "/accounting/transactions", printer="printer1", format="csv")
    assert tx_csv == api_tx.encode() and uuid in api_tx


def test_prices_set_and_listed(cloud: CloudServer, cli: Cli) -> None:
    done = cli(
        "admin", "price-set", "printer2", "--price", "mono=0.05", "--price",
        "color,two-sided,a4=0.15", "--unit", "sheet", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = _api(cloud, "/accounting/printers/printer2/prices")
    assert json.loads(done.stdout) == stored
    assert stored["unit"] == "sheet"
    assert {(e["media"], e["color"], e["sides"], e["price"]) for e in stored["prices"]} == {
        ("*", "mono", "one-sided", "0.05"),
        ("*", "mono", "two-sided", "0.05"),
        ("a4", "color", "two-sided", "0.15"),
    }
    assert cli.json("admin", "prices", "printer2") == stored
    bad = cli("admin", "price-set", "printer2", "--price", "purple=0.1")
    assert bad.returncode == 2 and "media" in bad.stderr


def test_node_status_json_is_the_journal(cloud: CloudServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    journal = Journal(spool)
    try:
        journal.begin("0f0e6d6c-0000-4000-8000-000000000001", "printer1", "ipp://x/", "ipp", {})
        journal.step("0f0e6d6c-0000-4000-8000-000000000001", "sent", printer_job_id=7)
        expected = [e.to_json() for e in journal.entries()]
    finally:
        journal.close()
    config = tmp_path / "node.toml"
    config.write_text(dump(Config(node=NodeConfig(cloud_url=cloud.url, spool_dir=spool))))
    status = Cli(config, tmp_path / "xdg").json("node", "status")
    assert status["jobs"] == expected and status["jobs"][0]["step"] == "sent"


# -- users, terminals, printers: forms of the admin commands ---------------------------------------


def test_user_add_and_set_with_password_role_pin_card(
    cloud: CloudServer, cli: Cli, admin: AdminClient
) -> None:
    name = f"n{uuidlib.uuid4().hex[:8]}"
    done = cli(
        "admin", "user-add", name, "--password", "--role", "operator", "--card", "04A1B2C3",
        "--display-name", "Nora N", "--json", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    user = admin.get_user(name)
    assert json.loads(done.stdout) == user
    assert user["role"] == "operator" and user["has_password"] and not user["has_pin"]
    assert user["display_name"] == "Nora N" and user["cards"][0]["approved"]
    assert admin.sign_in(name, PASSWORD)["role"] == "operator"
    done = cli("admin", "user-set", name, "--pin", "13579", "--role", "user", "--disable")
    assert done.returncode == 0, done.stderr
    user = admin.get_user(name)
    assert user["has_pin"] and user["role"] == "user" and user["disabled"]
    again = cli("admin", "user-add", name, "--pin", "1111")
    assert again.returncode == 3 and "refused" in again.stderr
    assert cli("admin", "user-add", f"x{name}").returncode == 2  # neither PIN nor password


def test_terminal_add_prints_the_secret_once_and_it_works(
    cloud: CloudServer, cli: Cli, admin: AdminClient
) -> None:
    done = cli("admin", "terminal-add", "lobby", "--printer", "printer1", "--methods", "pin")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.split("secret (shown only now; configure it on the terminal): ")[1]
    secret = secret.strip()
    assert secret.startswith("ppt_")
    sign_in = requests.post(
        f"{cloud.url}/api/v1/terminal/sign-in",
        headers={"Authorization": f"Bearer {secret}"},
        json={"user": "alice", "pin": "1234"},
        timeout=10,
    )
    assert sign_in.status_code == 201, sign_in.text
    listed = cli("admin", "terminals")
    assert "lobby" in listed.stdout and secret not in listed.stdout
    assert secret not in json.dumps(cli.json("admin", "terminals"))
    assert cli("admin", "terminal-delete", "lobby").returncode == 0
    assert cli("admin", "terminal-delete", "lobby").returncode == 4
    bad = cli("admin", "terminal-add", "x", "--printer", "printer1", "--methods", "retina")
    assert bad.returncode == 2 and "card, pin, username" in bad.stderr


def test_printer_add_and_test_against_a_real_ipp_printer(
    cli: Cli, admin: AdminClient, tmp_path: Path
) -> None:
    from pullprint.peers.ippeve import IppEvePrinter

    with IppEvePrinter(tmp_path / "printer", name="clitest") as printer:
        done = cli("admin", "printer-add", "clitest", "--uri", printer.uri, "--node", "node1")
        assert done.returncode == 0, done.stderr
        assert [p.uri for p in admin.list_printers() if p.name == "clitest"] == [printer.uri]
        probe = cli.json("admin", "printer-test", "clitest")
        assert probe["ok"] and probe["state"] in ("idle", "printing")
        assert "application/pdf" in probe["formats"] or probe["formats"]
    admin.add_printer(Printer("clitest", f"ipp://127.0.0.1:{free_port()}/ipp/print", "node1"))
    down = cli("admin", "printer-test", "clitest")
    assert down.returncode == 1 and "FAIL" in down.stdout
    assert cli("admin", "printer-test", "nosuchprinter").returncode == 4


# -- exit codes ------------------------------------------------------------------------------------


def test_exit_codes_for_each_class(cloud: CloudServer, cli: Cli, tmp_path: Path) -> None:
    with cloud.node_client("node1") as node:
        job, _ = held_job(node, tmp_path, owner="alice", origin="node1")
    usage = cli("jobs", "--state", "nonsense")
    assert usage.returncode == 2
    missing = cli("release", job.uuid, "--printer", "printer1")  # admin token: needs user, PIN
    assert missing.returncode == 2 and "--user and --pin" in missing.stderr
    bad_option = cli("release", job.uuid, "--printer", "printer1", "--user", "alice",
                     "--pin", "1234", "--option", "staple=yes")  # fmt: skip
    assert bad_option.returncode == 2 and "staple" in bad_option.stderr
    wrong = cli("release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "9999")
    assert wrong.returncode == 3 and "wrong PIN" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    unknown = cli("show", str(uuidlib.uuid4()))
    assert unknown.returncode == 4 and "not found" in unknown.stderr
    assert cli("admin", "prices", "printer1").returncode == 0

    down_cfg = tmp_path / "down.toml"
    down_url = f"http://127.0.0.1:{free_port()}"
    down_cfg.write_text(dump(Config(node=NodeConfig(cloud_url=down_url))).replace(
        'admin_token = ""', 'admin_token = "whatever"'
    ))  # fmt: skip
    down = Cli(down_cfg, tmp_path / "xdg")("jobs")
    assert down.returncode == 5
    assert f"the release service at {down_url} is unreachable" in down.stderr
    assert "pullprint server" in down.stderr and len(down.stderr.strip().splitlines()) == 1
    no_token = tmp_path / "none.toml"
    no_token.write_text(dump(Config(node=NodeConfig(cloud_url=cloud.url))))
    none = Cli(no_token, tmp_path / "xdg2")("jobs")
    assert none.returncode == 2 and "pullprint login" in none.stderr
    wrong_token = tmp_path / "wrong.toml"
    wrong_token.write_text(down_cfg.read_text().replace(down_url, cloud.url))
    refused = Cli(wrong_token, tmp_path / "xdg3")("jobs")
    assert refused.returncode == 3 and "cloud.admin_token" in refused.stderr
    assert cli("release", job.uuid, "--printer", "printer1", "--user", "alice",
               "--pin", "1234").returncode == 0  # fmt: skip
    again = cli("release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234")
    assert again.returncode == 3  # no longer held


# -- signing in ------------------------------------------------------------------------------------


def test_login_then_jobs_as_that_user_then_logout(
    cloud: CloudServer, cli: Cli, admin: AdminClient, tmp_path: Path
) -> None:
    name = _user(admin)
    with cloud.node_client("node1") as node:
        mine, _ = held_job(node, tmp_path, owner=name, origin="node1")
        held_job(node, tmp_path, owner="alice", origin="node1")
    wrong = cli("login", name, stdin="not it\n")
    assert wrong.returncode == 3 and not cli.session_file.exists()
    done = cli("login", name, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    token = json.loads(cli.session_file.read_text())["token"]
    assert token.startswith("pps_")
    assert cli.json("whoami")["name"] == name
    listed = cli.json("jobs")
    assert [j["uuid"] for j in listed] == [mine.uuid]
    assert listed == _api(cloud, "/jobs", token=token)["jobs"]
    assert cli("jobs", "--user", "alice").returncode == 3  # a user lists only their own
    assert cli("show", mine.uuid).returncode == 0
    released = cli("release", mine.uuid, "--printer", "printer1", "--json")  # no PIN: session
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["state"] == "released"
    assert cli("--admin", "jobs", "--user", "alice").returncode == 0  # the admin token still
    assert [u["name"] for u in cli.json("admin", "users")] == [name]  # a user sees themself
    assert cli("admin", "terminals").returncode == 3  # the session is no admin's
    out = cli("logout")
    assert out.returncode == 0 and not cli.session_file.exists()
    gone = requests.get(
        f"{cloud.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert gone.status_code == 401


def test_an_expired_session_says_sign_in_again(
    cloud: CloudServer, cli: Cli, admin: AdminClient
) -> None:
    name = _user(admin)
    assert cli("login", name, stdin=PASSWORD + "\n").returncode == 0
    token = json.loads(cli.session_file.read_text())["token"]
    requests.delete(
        f"{cloud.url}/api/v1/sessions/current",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).raise_for_status()
    stale = cli("jobs")
    assert stale.returncode == 3 and "pullprint login" in stale.stderr


# -- print FILE --------------------------------------------------------------------------------


def _pdf(path: Path, pages: int) -> Path:
    import pikepdf

    pdf = pikepdf.new()
    for _ in range(pages):
        pdf.add_blank_page(page_size=(595, 842))
    pdf.save(path)
    return path


def test_print_file_lands_a_held_job_in_my_queue(
    cloud: CloudServer, cli: Cli, admin: AdminClient, tmp_path: Path
) -> None:
    name = _user(admin)
    as_admin = cli("print", str(_pdf(tmp_path / "a.pdf", 1)))  # the admin token is nobody's
    assert as_admin.returncode == 3 and "pullprint login" in as_admin.stderr
    assert cli("login", name, stdin=PASSWORD + "\n").returncode == 0
    done = cli("print", str(_pdf(tmp_path / "report.pdf", 3)), "--title", "Q3 report", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "held" and job["owner"] == name and job["pages"] == 3
    assert job["title"] == "Q3 report"
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    listed = cli.json("jobs")
    assert [j["uuid"] for j in listed] == [job["uuid"]] and listed[0]["state"] == "held"
    assert admin.get_job(job["uuid"]).state is JobState.HELD
    from PIL import Image

    Image.new("RGB", (300, 200), "red").save(tmp_path / "photo.png")
    image = cli.json("print", str(tmp_path / "photo.png"))
    assert image["pages"] == 1 and image["title"] == "photo.png"
    (tmp_path / "notes.txt").write_text("not a printable document\n")
    refused = cli("print", str(tmp_path / "notes.txt"))
    assert refused.returncode == 2 and "PDF, PNG or JPEG" in refused.stderr
    assert cli("print", str(tmp_path / "missing.pdf")).returncode == 2


def test_print_shows_a_progress_bar_on_a_terminal(
    cloud: CloudServer, cli: Cli, admin: AdminClient, tmp_path: Path
) -> None:
    """stderr is a pseudo-terminal: the upload draws a progress bar there (tqdm); stdout stays
    the job line."""
    import pikepdf

    name = _user(admin)
    assert cli("login", name, stdin=PASSWORD + "\n").returncode == 0
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    noise = os.urandom(3 * 1024 * 1024)
    pdf.pages[0].Resources = pikepdf.Dictionary(
        XObject=pikepdf.Dictionary(Im0=pikepdf.Stream(pdf, noise))
    )
    big = tmp_path / "big.pdf"
    pdf.save(big, compress_streams=False)
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "XDG_CONFIG_HOME": str(cli.home)}
    env.pop("PULLPRINT_SESSION", None)
    drawn = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pullprint", "--config", str(cli.config), "print", str(big)],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    assert done.returncode == 0, drawn
    assert "held in your queue" in done.stdout
    assert b"uploading big.pdf" in drawn and b"B/s" in drawn


# -- DNS-SD discovery (parsing only: browsing would send multicast off loopback) ----------------

AVAHI_OUTPUT = (
    "+;eth0;IPv4;HP\\032LaserJet\\032M404;_ipp._tcp;local\n"
    "=;eth0;IPv4;HP\\032LaserJet\\032M404;_ipp._tcp;local;hp-m404.local;192.0.2.20;631;"
    '"txtvers=1" "rp=ipp/print" "ty=HP LaserJet M404dn" "note=2nd floor" "pdl=application/pdf"\n'
    '=;eth0;IPv6;HP\\032LaserJet\\032M404;_ipp._tcp;local;hp-m404.local;fd00::20;631;"rp=ipp/print"\n'
    '=;eth0;IPv6;Lab\\032\\0402\\041;_ipps._tcp;local;lab.local;fd00::21;443;"rp=printers/lab"\n'
    "=;eth0;IPv4;Scanner;_uscan._tcp;local;scan.local;192.0.2.30;80;\n"
)


def test_discovery_reads_avahi_browse_output() -> None:
    from pullprint.daemon.discovery import Discovered, parse_browse

    found = parse_browse(AVAHI_OUTPUT)
    assert found == [
        Discovered(
            name="HP LaserJet M404",
            uri="ipp://192.0.2.20:631/ipp/print",
            host="hp-m404.local",
            address="192.0.2.20",
            port=631,
            service="_ipp._tcp",
            make_and_model="HP LaserJet M404dn",
            location="2nd floor",
        ),
        Discovered(
            name="Lab (2)",  # avahi escapes are decimal: \\040 "(", \\041 ")"
            uri="ipps://[fd00::21]:443/printers/lab",
            host="lab.local",
            address="fd00::21",
            port=443,
            service="_ipps._tcp",
        ),
    ]
    assert [Discovered.from_json(d.to_json()) for d in found] == found
