"""``pullprint submitd``, the resident helper the CUPS filter and backend hand jobs to, against the
real peers: a private cupsd running the real filter and backend executables, the real cloud, and
submitd as its own process. Without submitd (or when it dies mid-job) the executables run the job
themselves: nothing is lost and nothing registered twice."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest

from pullprint import config as configmod
from pullprint.backend.submitd import FAULT_STEPS, MAX_QUEUED_UPLOADS, Submitd
from pullprint.cups import handoff, install
from pullprint.cups.install import PACKAGE_ROOT
from pullprint.cups.jobs import CupsJobState
from pullprint.daemon.journal import FAULT_ENV
from pullprint.model import JobState
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold

STOPPED = {CupsJobState.STOPPED, CupsJobState.CANCELED, CupsJobState.ABORTED}
STUB_PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog"


@pytest.fixture
def fast(world_dir: Path) -> Iterator[Stack]:
    with Stack(world_dir / "stack", start_node=False, submitd=True) as running:
        yield running


def submitd_log(stack: Stack) -> str:
    return (stack.root / "submitd.log").read_text(errors="replace")


def handled(stack: Stack, op: str, cups_job: int) -> list[str]:
    """submitd's log lines saying it ran ``op`` for the CUPS job."""
    return re.findall(
        rf"{op} job {cups_job} of pid \d+(?: on \S+)?: exit (\d+)", submitd_log(stack)
    )


def backend_env(stack: Stack, *, submitd: bool = True) -> dict[str, str]:
    """The environment cupsd gives the PullPrint queue's backend, to run it by hand: handing
    off to the stack's submitd, or (``submitd=False``) running the job in-process."""
    return dict(
        os.environ,
        PULLPRINT_CONFIG=str(stack.config_path),
        PULLPRINT_SUBMIT_SOCKET=str(stack.submit_socket) if submitd else "off",
        DEVICE_URI="pullprint:/",
        PRINTER="PullPrint",
        CONTENT_TYPE="application/pdf",
        TMPDIR=str(stack.root),
    )


def registered(stack: Stack, cups_job: int, user: str = "alice") -> int:
    with stack.admin() as admin:
        return sum(1 for job in admin.list_jobs(user=user) if job.cups_job_id == cups_job)


def assert_spool_empty(stack: Stack, timeout: float = 10.0) -> None:
    """The outbox and documents folders become empty: submitd uploads a held job's document
    after it answered cupsd, and an uploaded document leaves the spool."""
    spool = stack.root / "spool"
    deadline = time.monotonic() + timeout
    while True:
        left = [*(spool / "outbox").glob("*.json"), *(spool / "docs").iterdir()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert left == []


def test_lp_held_and_registered_through_submitd_then_released(world_dir: Path) -> None:
    with Stack(world_dir / "stack", submitd=True) as stack:
        cups_job, uuid = print_and_hold(stack, world_dir, pages=2)
        assert handled(stack, "filter", cups_job) == ["0"]
        assert handled(stack, "backend", cups_job) == ["3"]
        assert registered(stack, cups_job) == 1
        assert_spool_empty(stack)
        job = stack.wait_cloud_job("alice", cups_job)
        assert (job.pages, job.queue) == (2, "PullPrint")
        # The release re-runs filter and backend: submitd declines the backend's re-run, the
        # backend completes the CUPS job itself, as without submitd.
        out = stack.cli(
            "release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        assert out.returncode == 0, out.stderr
        final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED, JobState.CANCELED})
        assert final.state is JobState.COMPLETED, final.state_reason
        assert stack.cups is not None
        stack.cups.wait_job(cups_job, {CupsJobState.COMPLETED})
        assert f"CUPS job {cups_job} was held before" in submitd_log(stack)
        with pikepdf.open(stack.printers[0].spool_files()[0]) as pdf:
            assert len(pdf.pages) == 2


def test_without_submitd_the_executables_run_the_job(fast: Stack, world_dir: Path) -> None:
    assert fast.submitd is not None
    fast.submitd.stop()  # SIGTERM: it finishes, removes its socket
    assert not fast.submit_socket.exists()
    cups_job, _ = print_and_hold(fast, world_dir)
    assert handled(fast, "filter", cups_job) == handled(fast, "backend", cups_job) == []
    assert registered(fast, cups_job) == 1
    assert_spool_empty(fast)
    fast.start_submitd()
    again, _ = print_and_hold(fast, world_dir)
    assert handled(fast, "backend", again) == ["3"]


@pytest.mark.parametrize("step", [s for s in FAULT_STEPS if s != "submitd-uploading"])
def test_sigkill_of_submitd_mid_job_loses_nothing_duplicates_nothing(
    fast: Stack, world_dir: Path, step: str
) -> None:
    assert fast.submitd is not None
    fast.submitd.stop()
    killed = fast.start_submitd({FAULT_ENV: step})
    cups_job, _ = print_and_hold(fast, world_dir)
    assert killed.proc is not None
    assert killed.proc.wait(timeout=30) == -9, f"submitd was not killed at {step}"
    assert "fault injection" in submitd_log(fast)
    assert registered(fast, cups_job) == 1
    assert_spool_empty(fast)
    records = list((fast.root / "spool" / "jobs").glob("*.json"))
    assert len(records) == 1, records  # one CUPS job, one record
    job = fast.wait_cloud_job("alice", cups_job)
    assert (job.state, job.pages) == (JobState.HELD, 3)


def test_submitd_dying_before_the_upload_leaves_it_to_the_node(world_dir: Path) -> None:
    """submitd answers cupsd once the job is registered and uploads the document after. Here
    it dies before the upload: the job is held and registered, a release waits for the
    document and is refused when it does not come, and the node's outbox loop uploads it when it
    starts (the entry's lock
    went with submitd)."""
    with Stack(world_dir / "stack", submitd=True, start_node=False) as stack:
        assert stack.submitd is not None
        stack.submitd.stop()
        killed = stack.start_submitd({FAULT_ENV: "submitd-uploading"})
        cups_job, uuid = print_and_hold(stack, world_dir, pages=2)
        assert killed.proc is not None
        assert killed.proc.wait(timeout=30) == -9
        assert handled(stack, "backend", cups_job) == ["3"]
        assert len(list((stack.root / "spool" / "outbox").glob("*.json"))) == 1
        release = ("release", uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234")
        early = stack.cli(*release)
        assert early.returncode != 0
        assert "has not arrived yet (waited 5 s for node" in early.stderr, early.stderr
        stack.start_node_process()
        assert_spool_empty(stack, timeout=30)  # the node's outbox loop uploaded it
        again = stack.cli(*release)
        assert again.returncode == 0, again.stderr
        final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED}, timeout=60)
        assert final.state is JobState.COMPLETED, final.state_reason
        assert final.impressions == 2
        assert registered(stack, cups_job) == 1
        assert_spool_empty(stack)


def _as_user(user: str, code: str) -> str:
    """What ``code`` prints, run as ``user`` the way the executables start (``-IS``), with
    ``from pullprint.cups import handoff`` done first."""
    prelude = f"import os, sys; sys.path.insert(0, {PACKAGE_ROOT!r})\n"
    prelude += "from pullprint.cups import handoff\n"
    out = subprocess.run(
        [sys.executable, "-IS", "-c", prelude + code],
        user=user,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_past_a_long_upload_queue_a_job_uploads_before_it_is_held(fast: Stack) -> None:
    """Each upload waiting after its answer holds its outbox entry's lock (an open file): past
    MAX_QUEUED_UPLOADS (a slow cloud) a first run uploads before it answers again."""
    submitd = Submitd(configmod.load(fast.config_path))  # not started: nothing uploads
    later: list[object] = []
    defer = submitd.upload_later(later)  # type: ignore[arg-type]
    assert defer is not None
    for _ in range(MAX_QUEUED_UPLOADS - 1):
        submitd._uploads.put(None)
    assert submitd.upload_later(later) is not None  # type: ignore[arg-type]
    submitd._uploads.put(None)
    assert submitd.upload_later(later) is None  # type: ignore[arg-type]


def test_peer_with_another_uid_is_refused(fast: Stack) -> None:
    probe = (
        f"try:\n    handoff.connect({str(fast.submit_socket)!r})\n"
        "except handoff.NotHandedOff as exc:\n    print(exc)\nelse:\n    print('accepted')\n"
    )
    assert "REFUSED uid 65534 may not hand off jobs" in _as_user("nobody", probe)
    assert re.search(r"refused a connection from pid \d+ \(uid 65534, ", submitd_log(fast))
    # root (the backend's uid) is greeted
    sock, limit = handoff.connect(str(fast.submit_socket))
    sock.close()
    assert limit == configmod.NodeConfig().max_document_bytes

    # lp (the filters' uid) is greeted, but may not hand off a backend run: it names the job's
    # owner, and only cupsd (root) runs backends.
    forge = (
        f"sock, _ = handoff.connect({str(fast.submit_socket)!r})\n"
        "fd = os.open('/dev/null', os.O_RDONLY)\n"
        "argv = ['pullprint', '7', 'victim', 'forged', '1', '']\n"
        "request = handoff.encode_request('backend', handoff.config_path(), argv, {})\n"
        "try:\n    handoff.submit(sock, request, [fd])\n"
        "except handoff.NotHandedOff as exc:\n    print(exc)\n"
    )
    said = _as_user("lp", forge)
    assert "DECLINED a backend run is handed off by root only, not uid" in said, said
    refused = r"refused a backend request from pid \d+ \(uid \d+\): not root"
    assert re.search(refused, submitd_log(fast))


def _run_filter(stack: Stack, document: Path, options: str, socket: str) -> tuple[int, list[str]]:
    assert stack.cups is not None
    shell = stack.cups.root / "bin" / "filter" / "pullprint-finish"
    out = subprocess.run(
        [str(shell), "99", "alice", "t", "1", options, str(document)],
        env={**os.environ, handoff.ENV_SOCKET: socket, "TMPDIR": str(stack.root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, [ln for ln in out.stderr.splitlines() if not ln.startswith("DEBUG")]


@pytest.mark.parametrize(
    ("document", "options", "words"),
    [
        (STUB_PDF, "", "unreadable pdf"),
        (None, "number-up-layout=sideways", "number-up-layout must be one of"),
    ],
    ids=["malformed-pdf", "rejected-option"],
)
def test_refused_jobs_give_the_same_one_line_error(
    fast: Stack, world_dir: Path, document: bytes | None, options: str, words: str
) -> None:
    assert fast.cups is not None
    path = world_dir / "input.pdf"
    if document is None:
        make_pdf(path, 1)
    else:
        path.write_bytes(document)
    handed = _run_filter(fast, path, options, str(fast.submit_socket))
    alone = _run_filter(fast, path, options, "off")
    assert handed == alone
    code, lines = handed
    assert code == 1
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    assert len(errors) == 1 and words in errors[0].lower(), lines
    assert handled(fast, "filter", 99) == ["1"]
    # through cupsd: each job is refused with that line (not cupsd's "Filter failed": it reaped
    # the filter before it read the line, 1 job in 10 before after_read), nothing is registered
    opts = dict([options.split("=", 1)]) if options else None
    cups_jobs = [fast.cups.lp(path, user="alice", options=opts) for _ in range(10)]
    for cups_job in cups_jobs:
        attrs = fast.cups.wait_job(cups_job, STOPPED, timeout=60)
        assert words in str(attrs.get("job-printer-state-message", "")).lower(), attrs
        assert handled(fast, "filter", cups_job) == ["1"]
        assert registered(fast, cups_job) == 0


@pytest.mark.parametrize("socket", ["handed", "off"])
def test_a_failed_filter_exits_once_its_error_line_was_read(
    fast: Stack, world_dir: Path, socket: str
) -> None:
    """cupsd keeps "Filter failed" when it reaps a failed filter before it reads the ERROR:
    line, so the filter (the C hand-off, and the Python filter it runs in-process) exits only
    once its stderr pipe is empty (or after handoff.READ_WAIT): here the reader leaves the last
    byte unread for a while, and the filter waits for it."""
    assert fast.cups is not None
    path = world_dir / "input.pdf"
    make_pdf(path, 1)
    shell = fast.cups.root / "bin" / "filter" / "pullprint-finish"
    env = {
        **os.environ,
        handoff.ENV_SOCKET: str(fast.submit_socket) if socket == "handed" else "off",
        "TMPDIR": str(fast.root),
    }
    args = [str(shell), "99", "alice", "t", "1", "number-up-layout=sideways", str(path)]
    with subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as run:
        assert run.stderr is not None
        err = run.stderr.fileno()
        said = b""
        deadline = time.monotonic() + 60
        while b"number-up-layout must be one of" not in said:
            assert time.monotonic() < deadline, said
            unread = int.from_bytes(fcntl.ioctl(err, termios.FIONREAD, b"\0" * 4), sys.byteorder)
            if unread > 1:
                said += os.read(err, unread - 1)  # all but the last byte (the line's newline)
            else:
                assert run.poll() is None, f"exited before its error line was read: {said!r}"
                time.sleep(0.01)
        time.sleep(0.3)
        assert run.poll() is None, "the filter exited before its last line was read"
        said += os.read(err, 1 << 16)
        assert run.wait(timeout=30) == 1
    assert said.endswith(b"\n") and said.count(b"ERROR:") == 1, said


def test_submitd_refuses_to_start_unless_it_owns_the_spool(world_dir: Path) -> None:
    spool = world_dir / "spool"
    spool.mkdir()
    os.chown(spool, 7, 7)  # lp
    cfg = world_dir / "pullprint.toml"
    node = configmod.NodeConfig(spool_dir=spool, submit_socket=str(world_dir / "s.sock"))
    cfg.write_text(configmod.dump(configmod.Config(node=node)))
    out = subprocess.run(
        [sys.executable, "-m", "pullprint", "--config", str(cfg), "submitd"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"node.spool_dir {spool} is owned by lp, submitd runs as root" in out.stderr
    assert not (world_dir / "s.sock").exists()


def test_executables_start_without_socket_signal_or_enum() -> None:
    """The filter and backend executables import the hand-off only, and it imports no module
    that pulls in enum or selectors (socket, signal): those doubled each process's start."""
    code = (
        f"import sys\nsys.path.insert(0, {PACKAGE_ROOT!r})\n"
        "import pullprint.cups.handoff\nprint(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(out.stdout.split())
    assert "pullprint.cups.handoff" in loaded
    assert not loaded & {"socket", "signal", "enum", "selectors", "typing", "collections"}, loaded
    assert not {m for m in loaded if m.startswith("pullprint.")} - {
        "pullprint.cups.handoff",
        "pullprint.cups",
    }


def test_lp_reads_the_byte_code_the_executables_start_with(tmp_path: Path) -> None:
    """A ``__pycache__`` the backend made (root, cupsd's umask 077) is root's alone: the filter
    (lp) then compiled the hand-off from source at every job (26.5 instead of 15.6 ms to
    start). Writing the executables makes that byte-code readable to lp."""
    cached = [
        Path(importlib.util.cache_from_source(str(Path(PACKAGE_ROOT) / m)))
        for m in install.STARTUP_MODULES
    ]
    for path in cached:  # the state the backend leaves: root-only byte-code
        path.parent.chmod(0o700)
        if path.exists():
            path.chmod(0o600)
    (tmp_path / "filter").mkdir()
    install.write_filter(tmp_path / "filter" / "pullprint-finish")
    for path in cached:
        assert path.exists()
        assert path.stat().st_mode & 0o044 == 0o044 and path.parent.stat().st_mode & 0o055
    code = (
        f"paths = {[str(p) for p in cached]!r}\nprint(all(open(p, 'rb').read(16) for p in paths))\n"
    )
    assert _as_user("lp", code).strip() == "True"


# -- the executables are the C hand-off (pullprint/cups/handoff.c) --------------------------------


def test_the_executables_are_the_compiled_handoff_over_python_shells(fast: Stack) -> None:
    """cupsd runs handoff.c, compiled by install.py (~1 ms to start where Python took ~20);
    the Python shells it executes to run a job in-process are in <ServerBin>/pullprint/."""
    assert fast.cups is not None
    bindir = fast.cups.root / "bin"
    for role, path, mode in (
        ("backend", bindir / "backend" / "pullprint", 0o700),
        ("filter", bindir / "filter" / "pullprint-finish", 0o755),
    ):
        assert path.read_bytes()[:4] == b"\x7fELF", f"{path} is not the compiled hand-off"
        shell = bindir / install.SHELLS / role
        assert shell.read_text().startswith(f"#!{sys.executable} -IS\n")
        for each in (path, shell):
            st = each.stat()
            assert (st.st_mode & 0o7777, st.st_uid) == (mode, 0), each
    assert (bindir / install.SHELLS).stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("role", install.ROLES)
def test_handoff_c_compiles_without_a_warning(
    tmp_path: Path, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cc = install.c_compiler()
    assert cc is not None, "no C compiler: CI installs gcc (scripts/install-deps.sh)"
    strict = ["-Werror", "-Wshadow", "-Wconversion", "-Wformat=2", "-Wmissing-prototypes"]
    monkeypatch.setenv("CC", shlex.join([*cc, *strict]))  # install's own build, stricter
    install.compile_handoff(role, tmp_path / role)  # BuildError carries the compiler's message
    assert (tmp_path / role).read_bytes()[:4] == b"\x7fELF"


def test_the_python_shell_takes_argv0_and_resume_from_handoff_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(handoff.ENV_ARGV0, "pullprint:/")
    monkeypatch.setenv(handoff.ENV_RESUME, "1")
    argv = ["/srv/cups/pullprint/backend", "7", "alice", "t", "1", ""]
    assert handoff._from_handoff_c(argv) is True
    assert argv[0] == "pullprint:/"
    assert handoff.ENV_ARGV0 not in os.environ and handoff.ENV_RESUME not in os.environ
    assert handoff._from_handoff_c(argv) is False  # a shell cupsd ran itself


def test_sigterm_while_the_document_arrives_registers_nothing(fast: Stack, world_dir: Path) -> None:
    """The C backend, connected to submitd, killed while it spools a half-sent document: it
    says so and exits 1, submitd never got the job, nothing is registered or spooled."""
    assert fast.cups is not None
    backend = fast.cups.root / "bin" / "backend" / "pullprint"
    env = backend_env(fast)
    proc = subprocess.Popen(
        [str(backend), "78", "alice", "half", "1", ""],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stderr is not None
    doc = make_pdf(world_dir / "big.pdf", 40).read_bytes()
    proc.stdin.write(doc[: len(doc) // 2])
    proc.stdin.flush()
    time.sleep(1.0)  # connected, greeted, blocked reading the rest
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 1
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert f"INFO: {handoff.STOPPED}" in err, err
    assert handled(fast, "backend", 78) == []
    assert registered(fast, 78) == 0
    spool = fast.root / "spool"
    assert not (spool / "docs").exists() or list((spool / "docs").iterdir()) == []


def test_a_backend_whose_input_comes_slowly_is_still_handed_off(
    fast: Stack, world_dir: Path
) -> None:
    """A backend sends its request once it has spooled its whole input, after the filters: a
    1 GB PDF took ~60 s. submitd waited 10 s for it, then dropped the connection and the backend
    ran the job in-process (right, but the slow path). Here the input comes 12 s after the
    greeting: submitd still takes the job."""
    assert fast.cups is not None
    backend = fast.cups.root / "bin" / "backend" / "pullprint"
    env = backend_env(fast)
    args = ["79", "alice", "slow", "1", "job-uuid=urn:uuid:slow-input"]
    proc = subprocess.Popen(
        [str(backend), *args], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    doc = make_pdf(world_dir / "slow.pdf", 2).read_bytes()
    proc.stdin.write(doc[:100])
    proc.stdin.flush()
    time.sleep(12.0)  # greeted long ago; the rest of the input comes now
    proc.stdin.write(doc[100:])
    proc.stdin.close()
    assert proc.wait(timeout=60) == 3, proc.stderr.read() if proc.stderr else ""
    assert handled(fast, "backend", 79) == ["3"]
    assert registered(fast, 79) == 1


@pytest.mark.parametrize("stdin", ["pipe", "file"])
def test_the_backend_spools_its_input_whole_from_a_pipe_or_a_file(
    fast: Stack, world_dir: Path, stdin: str
) -> None:
    """The C backend moves a pipe (cupsd's, from the filter; it widens it to 1 MiB) into its
    temp file with splice, and reads and writes anything else: either way the cloud gets the
    document byte for byte (its size and sha256). The document is larger than the pipe."""
    assert fast.cups is not None
    backend = fast.cups.root / "bin" / "backend" / "pullprint"
    doc = make_pdf(world_dir / f"{stdin}.pdf", 25, image_kb=100)
    data = doc.read_bytes()
    assert len(data) > 2 * (1 << 20)
    job_id = 80 if stdin == "pipe" else 81
    args = [str(job_id), "alice", stdin, "1", f"job-uuid=urn:uuid:spool-{stdin}"]
    run = [str(backend), *args]
    env = backend_env(fast)
    if stdin == "pipe":
        out = subprocess.run(run, input=data, capture_output=True, env=env, timeout=60)
    else:
        with doc.open("rb") as fh:
            out = subprocess.run(run, stdin=fh, capture_output=True, env=env, timeout=60)
    assert out.returncode == 3, out.stderr
    assert handled(fast, "backend", job_id) == ["3"]
    job = fast.wait_cloud_job("alice", job_id)
    assert (job.size, job.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_document_over_the_limit_is_refused_naming_it(world_dir: Path) -> None:
    """The C backend spools at most node.max_document_bytes + 1 bytes; submitd refuses the job
    with the limit's name and size, and nothing is registered."""
    limit = 10_000
    with Stack(
        world_dir / "stack",
        start_node=False,
        submitd=True,
        node_options={"max_document_bytes": limit},
    ) as stack:
        assert stack.cups is not None
        doc = make_pdf(world_dir / "big.pdf", 60)
        assert doc.stat().st_size > limit
        cups_job = stack.cups.lp(doc, user="alice")
        attrs = stack.cups.wait_job(cups_job, STOPPED, timeout=60)
        message = str(attrs.get("job-printer-state-message", ""))
        assert f"larger than the limit of {limit} bytes (node.max_document_bytes)" in message
        assert handled(stack, "backend", cups_job) == ["1"]
        assert registered(stack, cups_job) == 0
        assert_nothing_spooled(stack)


def assert_nothing_spooled(stack: Stack) -> None:
    """A refused job leaves no record, no document (nor its partial copy) and no outbox entry."""
    spool = stack.root / "spool"
    left = [
        p for d in ("jobs", "docs", "outbox") if (spool / d).is_dir() for p in (spool / d).iterdir()
    ]
    assert left == []


@pytest.mark.parametrize("through", ["submitd", "in-process"])
def test_a_backend_run_on_a_document_that_is_no_pdf_is_refused_and_leaves_nothing(
    fast: Stack, world_dir: Path, through: str
) -> None:
    """The backend run by hand with a file argument (as cupsd runs it for a raw job, past the
    filter) on a document that is no PDF, through submitd or in-process: exit 1 naming why,
    nothing registered or spooled."""
    assert fast.cups is not None
    junk = world_dir / "junk.pdf"
    junk.write_bytes(b"this is no PDF\n" * 1000)
    env = backend_env(fast, submitd=through == "submitd")
    backend = fast.cups.root / "bin" / "backend" / "pullprint"
    args = ["77", "alice", "junk", "1", "job-uuid=urn:uuid:no-pdf", str(junk)]
    out = subprocess.run([str(backend), *args], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "ERROR: pullprint: job refused: not a PDF document" in out.stderr, out.stderr
    assert handled(fast, "backend", 77) == (["1"] if through == "submitd" else [])
    assert registered(fast, 77) == 0
    assert_nothing_spooled(fast)


def test_many_small_jobs_at_once_are_each_held_registered_and_uploaded(
    fast: Stack, world_dir: Path
) -> None:
    """40 one-page jobs from 8 clients at once through submitd (the throughput bench's shape,
    where a race of the two records once failed 2 jobs in 200): every one held, registered once
    and uploaded, and submitd failed none."""
    from concurrent.futures import ThreadPoolExecutor

    assert fast.cups is not None
    cups = fast.cups
    doc = make_pdf(world_dir / "small.pdf", 1)
    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda _: cups.lp(doc, user="alice"), range(40)))
    for job in jobs:
        cups.wait_job(job, {CupsJobState.HELD}, timeout=60)
    assert_spool_empty(fast, timeout=30)
    with fast.admin() as admin:
        ids = [job.cups_job_id for job in admin.list_jobs(user="alice")]
    assert sorted(ids) == sorted(jobs)
    assert all(handled(fast, "backend", job) == ["3"] for job in jobs)
    assert " failed" not in submitd_log(fast)


def test_the_held_record_waits_for_the_first_one(
    fast: Stack, world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first record ("receiving") is written on the run's second thread while the document
    comes in; when that write is slow (a busy disk), the "held" record still comes after it
    (they share a temp file name, and the first must never replace the second), and the run
    holds the job with its outbox entry unlocked for the upload."""
    import io

    from pullprint.backend import hold
    from pullprint.backend.spool import CupsJobRecord, Spool
    from pullprint.cloudsync.client import CloudClient
    from pullprint.cups.protocol import BackendExit, CancelFlag, JobArgs, StatusWriter

    config = configmod.load(fast.config_path)
    node = config.node
    save = Spool.save_record

    def slow_first(self: Spool, record: CupsJobRecord) -> None:
        if record.stage == "receiving":
            time.sleep(0.5)
        save(self, record)

    monkeypatch.setattr(Spool, "save_record", slow_first)
    doc = make_pdf(world_dir / "slow.pdf", 2)
    status = io.StringIO()
    with CloudClient(node.cloud_url, node.token, verify=node.cloud_verify) as cloud:
        ctx = hold.BackendContext(node, "PullPrint", StatusWriter(status), CancelFlag(), cloud)
        args = JobArgs(501, "alice", "slow", 1, {"job-uuid": "urn:uuid:slow-first"}, None)
        with doc.open("rb") as source:
            assert hold.run_job(ctx, args, source) == BackendExit.HOLD, status.getvalue()
    spool = Spool(node.spool_dir)
    record = spool.load_record("urn:uuid:slow-first")
    assert record is not None and record.stage == "held"
    assert not (spool.outbox / f"{record.uuid}.json").exists()  # uploaded: nothing kept it locked
    assert registered(fast, 501) == 1
