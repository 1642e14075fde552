"""The identity of a job printed through CUPS, through the real private cupsd, backend, cloud and
node: the CUPS user name is mapped to a pullprint user (domain stripped, lower case, aliases); an
unknown user is refused (the CUPS job aborted with one clear ERROR line, nothing registered, the
cloud's log says it) or held for an admin who assigns it; and an authenticated queue (Basic
against PAM, a real local user) records who really sent a job, so ``-U`` cannot spoof it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pullprint import config as configmod
from pullprint.cloud.app import check_config
from pullprint.config import CloudConfig, ConfigError, NodeConfig
from pullprint.cups.install import authenticated_queue_args, install_auth_policy
from pullprint.cups.jobs import CupsJobState
from pullprint.cups.private import PrivateCups
from pullprint.identity.names import map_user_name, rules_from
from pullprint.model import JobState
from pullprint.peers.cloud import CloudServer
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack
from tests.test_cloud_api import make_document, start_cloud, submission

HELD = {CupsJobState.HELD}
PAM_USER = ("ppprinter1", "pp-Printer-secret-1")


def api(stack: Stack, method: str, path: str, body: Any = None, token: str = "") -> Any:
    answer = requests.request(
        method,
        f"{stack.cloud.url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {token or stack.cloud.admin_token}"},
        timeout=10,
    )
    return answer


def cloud_jobs(stack: Stack) -> list[dict[str, Any]]:
    return list(api(stack, "GET", "/jobs").json()["jobs"])


def by_cups_id(stack: Stack, cups_job: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for job in cloud_jobs(stack):
            if job["cups_job_id"] == cups_job:
                return job
        assert time.monotonic() < deadline, f"CUPS job {cups_job} was not registered"
        time.sleep(0.05)


def job_log(stack: Stack, cups_job: int) -> str:
    assert stack.cups is not None
    lines = stack.cups.error_log.read_text(errors="replace").splitlines()
    mine = "\n".join(line for line in lines if f"[Job {cups_job}]" in line)
    return mine.replace("\\'", "'")  # cupsd writes a quote as \\'


@pytest.fixture(scope="module")
def mapped() -> Iterator[Stack]:
    """The default (unknown users refused) with an alias table. In a folder lp can traverse
    (see conftest.world_dir)."""
    root = Path(tempfile.mkdtemp(prefix="pullprint-test-"))
    root.chmod(0o755)
    aliases = {"EXAMPLE\\jdoe": "bob", "printer-svc": "alice"}
    try:
        with Stack(root / "stack", node_options={"user_aliases": aliases}) as stack:
            yield stack
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_cups_names_are_mapped_to_pullprint_users(mapped: Stack, world_dir: Path) -> None:
    assert mapped.cups is not None
    doc = make_pdf(world_dir / "one.pdf", 1)
    for claimed, owner in (
        ("EXAMPLE\\Alice", "alice"),
        ("Bob@EXAMPLE.ORG", "bob"),
        ("example\\JDOE", "bob"),  # the alias of the whole claim, in any case
        ("printer-svc", "alice"),
    ):
        cups_job = mapped.cups.lp(doc, user=claimed)
        attrs = mapped.cups.wait_job(cups_job, HELD)
        assert attrs["job-originating-user-name"] == claimed  # CUPS keeps the claim
        job = by_cups_id(mapped, cups_job)
        assert (job["owner"], job["state"], job["state_reason"]) == (owner, "held", ""), claimed


def test_unknown_user_is_refused_with_a_clear_message(mapped: Stack, world_dir: Path) -> None:
    assert mapped.cups is not None
    spool = mapped.root / "spool"
    docs_before = sorted((spool / "docs").iterdir())
    cups_job = mapped.cups.lp(make_pdf(world_dir / "zed.pdf", 2), user="EXAMPLE\\Zed")
    attrs = mapped.cups.wait_job(cups_job, {CupsJobState.ABORTED})
    message = attrs["job-printer-state-message"]
    assert "CUPS user 'EXAMPLE\\Zed' (pullprint user zed)" in message, message
    assert "user zed is not a pullprint user" in message and "ask an admin" in message, message
    errors = [line for line in job_log(mapped, cups_job).splitlines() if line.startswith("E ")]
    assert any("user zed is not a pullprint user" in line for line in errors), errors
    assert [j for j in cloud_jobs(mapped) if j["cups_job_id"] == cups_job] == []
    cloud_log = mapped.cloud.log_path.read_text()
    assert "refused job" in cloud_log and "zed is not a pullprint user" in cloud_log
    assert sorted((spool / "docs").iterdir()) == docs_before  # the document is not kept
    assert list((spool / "outbox").glob("*.json")) == []


def test_unknown_user_held_for_an_admin_then_assigned(world_dir: Path) -> None:
    stack = Stack(world_dir / "stack")
    stack.cloud = CloudServer(stack.root / "cloud", unknown_user="hold")
    with stack:
        assert stack.cups is not None
        api(stack, "PUT", "/users/olga", {"role": "operator", "password": "olga-secret-1"})
        api(stack, "PUT", "/users/alice", {"password": "alice-secret-1"})
        tokens = {
            name: api(
                stack, "POST", "/sessions", {"name": name, "password": f"{name}-secret-1"}
            ).json()["token"]
            for name in ("olga", "alice")
        }
        cups_job = stack.cups.lp(make_pdf(world_dir / "zed.pdf", 2), user="ZED@EXAMPLE.ORG")
        stack.cups.wait_job(cups_job, HELD)
        warned = [line for line in job_log(stack, cups_job).splitlines() if line.startswith("W ")]
        assert any(
            "held for an admin" in line
            and "'ZED@EXAMPLE.ORG' (pullprint user zed) is not a pullprint user" in line
            for line in warned
        ), warned
        job = by_cups_id(stack, cups_job)
        uuid = job["uuid"]
        assert job["owner"] == "" and job["state"] == "held"
        assert job["state_reason"].endswith("is not a pullprint user: zed")
        assert "held for an admin" in stack.cloud.log_path.read_text()
        # an operator sees it; a user does not; nobody releases it before it has an owner
        olga, alice = tokens["olga"], tokens["alice"]
        assert uuid in {j["uuid"] for j in api(stack, "GET", "/jobs", token=olga).json()["jobs"]}
        assert uuid not in {
            j["uuid"] for j in api(stack, "GET", "/jobs", token=alice).json()["jobs"]
        }
        assert api(stack, "GET", f"/jobs/{uuid}", token=alice).status_code == 403
        early = api(stack, "POST", f"/jobs/{uuid}/release", {"printer": "printer1"}, token=olga)
        assert early.status_code == 409 and "assign" in early.json()["detail"]
        # a user cannot assign it to themself; an operator assigns it; then the owner releases
        mine = api(stack, "POST", f"/jobs/{uuid}/assign", {"owner": "alice"}, token=alice)
        assert mine.status_code == 403
        nobody = api(stack, "POST", f"/jobs/{uuid}/assign", {"owner": "zed"}, token=olga)
        assert nobody.status_code == 404
        done = api(stack, "POST", f"/jobs/{uuid}/assign", {"owner": "alice"}, token=olga)
        assert done.status_code == 200, done.text
        assert done.json()["owner"] == "alice" and done.json()["transaction"]["user"] == "alice"
        out = stack.cli(
            "release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED})
        assert final.state is JobState.COMPLETED and final.impressions == 2
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})


# -- the authenticated queue (PAM) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pam_user() -> tuple[str, str]:
    """A real local user with a password (checked by cupsd through PAM)."""
    name, password = PAM_USER
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    return PAM_USER


def print_as(stack: Stack, doc: Path, user: str, password: str) -> tuple[int, Any]:
    """Print over TCP as ``user``, answering cupsd's Basic challenge with ``password``
    (libcups asks again after a refusal: three tries, then give up). Returns (job, conn)."""
    import cups

    assert stack.cups is not None
    asked: list[str] = []

    def answer(prompt: str, *_: Any) -> str:
        asked.append(prompt)
        return password if len(asked) <= 3 else ""

    # libcups keeps server, user and password callback per process (pycups' globals)
    cups.setServer("127.0.0.1")
    cups.setPort(stack.cups.port)
    cups.setUser(user)
    cups.setPasswordCB(answer)
    try:
        conn = cups.Connection(host="127.0.0.1", port=stack.cups.port)
        return int(conn.printFile("PullPrint", str(doc), "authenticated", {})), conn
    finally:
        cups.setUser("root")
        cups.setServer("")
        cups.setPort(631)


def test_authenticated_queue_takes_the_name_from_pam(
    world_dir: Path, pam_user: tuple[str, str]
) -> None:
    import cups

    name, password = pam_user
    with Stack(world_dir / "stack", users={"alice": "1234", name: "4321"}) as stack:
        assert stack.cups is not None
        assert install_auth_policy(stack.cups.root / "cupsd.conf", "PullPrint")
        assert not install_auth_policy(stack.cups.root / "cupsd.conf", "PullPrint")  # idempotent
        stack.cups.restart()
        stack.cups.run(*authenticated_queue_args("PullPrint"))
        doc = make_pdf(world_dir / "pam.pdf", 1)
        before = {j["uuid"] for j in cloud_jobs(stack)}

        # the right password: held, owned by the PAM user
        cups_job, conn = print_as(stack, doc, name, password)
        attrs = stack.cups.wait_job(cups_job, HELD)
        assert dict(conn.getJobAttributes(cups_job))["job-originating-user-name"] == name
        job = by_cups_id(stack, cups_job)
        assert job["owner"] == name
        assert f'Queued on "PullPrint" by "{name}"' in job_log(stack, cups_job)

        # the wrong password: refused, no job
        with pytest.raises(cups.IPPError):
            print_as(stack, doc, name, "not-the-password")
        # a spoofed -U without credentials: refused over TCP and over the local socket
        for server in (f"127.0.0.1:{stack.cups.port}", str(stack.cups.socket)):
            spoof = subprocess.run(
                ["lp", "-U", "alice", "-d", "PullPrint", str(doc)],
                env={**stack.cups.env(), "CUPS_SERVER": server},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert spoof.returncode != 0 and "Unauthorized" in spoof.stderr, spoof
        assert "pam_authenticate() returned 7" in stack.cups.error_log.read_text()
        time.sleep(1.0)  # a job that slipped through would have been registered by now
        assert {j["uuid"] for j in cloud_jobs(stack)} - before == {job["uuid"]}
        assert attrs["job-state"] == CupsJobState.HELD

        # the node still releases and completes jobs in the protected queue
        out = stack.cli(
            "release", job["uuid"], "--printer", "printer1", "--user", name, "--pin", "4321"
        )
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(job["uuid"], {JobState.COMPLETED, JobState.FAILED})
        assert final.state is JobState.COMPLETED
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})


# -- the parts on their own ------------------------------------------------------------------


def test_name_rules_from_the_node_configuration() -> None:
    node = NodeConfig(user_aliases={"EXAMPLE\\JDoe": "john", "svc": "alice"})
    rules = rules_from(node)
    assert map_user_name("EXAMPLE\\Alice", rules) == "alice"
    assert map_user_name("alice@EXAMPLE.ORG", rules) == "alice"
    assert map_user_name("example\\jdoe", rules) == "john"  # the whole claim, any case
    assert map_user_name("SVC@EXAMPLE.ORG", rules) == "alice"  # the mapped name
    assert map_user_name("EXAMPLE\\", rules) == "example\\"  # nothing left: kept whole
    kept = rules_from(NodeConfig(user_strip_domain=False, user_lower_case=False))
    assert map_user_name("EXAMPLE\\Alice", kept) == "EXAMPLE\\Alice"
    assert map_user_name(map_user_name("Bob@X", rules), rules) == "bob"  # idempotent


def test_unknown_user_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"cloud\.unknown_user"):
        check_config(CloudConfig(unknown_user="maybe"))
    config = configmod.parse({"cloud": {"unknown_user": "hold"}, "node": {"user_aliases": {}}})
    assert config.cloud.unknown_user == "hold"
    with pytest.raises(ConfigError, match=r"node\.user_aliases"):
        configmod.parse({"node": {"user_aliases": {"a": 1}}})


def test_held_for_an_admin_then_assigned_through_the_api(tmp_path: Path) -> None:
    """A resent registration after the assignment is the same job (200), not a conflict."""
    server = start_cloud(tmp_path / "cloud", "sqlite", unknown_user="hold")
    try:
        with server.node_client("node1") as node, server.admin_client() as admin:
            doc = make_document(tmp_path)
            sub = submission(doc, owner="zed", origin="node1")
            job = node.register(sub)
            assert job.owner == "" and job.state is JobState.HELD
            assert job.transaction is not None and job.transaction.user == ""
            node.upload_document(sub.uuid, doc)
            assert [j.uuid for j in admin.list_jobs(user="alice")] == []
            token = server.admin_token
            url = f"{server.url}/api/v1/jobs/{sub.uuid}"
            headers = {"Authorization": f"Bearer {token}"}
            assert requests.post(f"{url}/assign", json={"owner": "alice"}, headers=headers,
                                 timeout=10).status_code == 200  # fmt: skip
            again = node.register(sub)
            assert (again.uuid, again.owner) == (sub.uuid, "alice")
            assert admin.get_job(sub.uuid).transaction.user == "alice"  # type: ignore[union-attr]
            released = admin.release(sub.uuid, "alice", "1234", "printer1")
            assert released.state is JobState.RELEASED
            late = requests.post(f"{url}/assign", json={"owner": "bob"}, headers=headers,
                                 timeout=10)  # fmt: skip
            assert late.status_code == 409 and "not held" in late.json()["detail"]
    finally:
        server.stop()


def test_auth_policy_is_valid_cupsd_configuration_and_replaced_in_place(world_dir: Path) -> None:
    cups = PrivateCups(world_dir / "cups").start()
    cups.stop()
    conf = cups.root / "cupsd.conf"
    before = conf.read_text()
    for auth_type in ("Basic", "Negotiate"):
        assert install_auth_policy(conf, "PullPrint", auth_type)
        checked = subprocess.run(
            ["cupsd", "-t", "-c", str(conf), "-s", str(cups.root / "cups-files.conf")],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        text = conf.read_text()
        assert text.startswith(before.rstrip("\n")) and text.count("<Policy pullprint-auth") == 1
        assert f"AuthType {auth_type}" in text
    install_auth_policy(conf, "Other")
    assert conf.read_text().count("<Policy pullprint-auth") == 2  # one block per queue
    with pytest.raises(ValueError, match="auth_type"):
        install_auth_policy(conf, "PullPrint", "Digest")
    assert authenticated_queue_args("Q", auth_info_required="negotiate") == [
        "lpadmin", "-p", "Q", "-o", "printer-op-policy=pullprint-authenticated",
        "-o", "auth-info-required=negotiate",
    ]  # fmt: skip


def test_the_install_command_writes_the_policy(world_dir: Path) -> None:
    conf = world_dir / "cupsd.conf"
    conf.write_text("LogLevel warn\n")
    run = [sys.executable, "-m", "pullprint.cups.install", "authenticated-queue", "PullPrint"]
    first = subprocess.run([*run, "--conf", str(conf)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "written to" in first.stdout
    assert "lpadmin -p PullPrint -o printer-op-policy=pullprint-authenticated" in first.stdout
    again = subprocess.run([*run, "--conf", str(conf)], capture_output=True, text=True)
    assert "already in" in again.stdout and conf.read_text().count("<Policy") == 1
    missing = subprocess.run([*run, "--conf", str(world_dir / "nope")], capture_output=True)
    assert missing.returncode == 2


def test_private_cupsd_gives_whoever_prints_an_account_of_its_own(world_dir: Path) -> None:
    """Debian 12's cupsd 2.4.2-3+deb12u10 crashes on a job whose requesting user has no account
    (OpenPrinting/cups#1555). The private cupsd reads a passwd of its own, bind-mounted over
    /etc/passwd in a mount namespace of its own: whoever ``lp`` prints as is in it (``user@REALM``
    as ``user`` too), the host's users keep their lines and the host's file is left alone."""
    host_before = Path("/etc/passwd").read_text()
    cups = PrivateCups(world_dir / "cups").start()
    try:
        assert cups.proc is not None
        assert os.readlink(f"/proc/{cups.proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        cups.run("lpadmin", "-p", "Sink", "-v", "file:///dev/null", "-E")
        doc = make_pdf(world_dir / "visit.pdf", 1)
        visitors = [f"visitor{os.getpid()}", f"eve{os.getpid()}@EXAMPLE.ORG"]
        for name in visitors:
            job = cups.lp(doc, user=name, queue="Sink")
            attrs = cups.wait_job(job, {CupsJobState.COMPLETED})
            assert attrs["job-originating-user-name"] == name
        seen = Path(f"/proc/{cups.proc.pid}/root/etc/passwd").read_text()
        assert seen == cups.passwd.read_text()
        entries = {line.split(":", 1)[0]: line for line in seen.splitlines()}
        assert {*visitors, visitors[1].split("@")[0], "alice", "EXAMPLE\\Zed", "guest"} <= set(
            entries
        )
        for line in host_before.splitlines():
            assert entries[line.split(":", 1)[0]] == line
        with pytest.raises(ValueError, match="no ':'"):
            cups.add_account("a:b")
    finally:
        cups.stop()
    assert Path("/etc/passwd").read_text() == host_before
    # its printcap is its own too (the default, /run/cups/printcap, is the host cupsd's)
    assert "Sink" in (cups.root / "printcap").read_text()
