"""LPR delivery (RFC 1179, our client) to a real LPD server: cups-lpd under socat feeding a
queue of the stack's private cupsd whose device is a socket sink, so the test sees the bytes and
CUPS shows the job name and user the control file carried."""

from __future__ import annotations

import time
from pathlib import Path

from pullprint.cups.jobs import CupsJobState
from pullprint.daemon.lpd import control_file, parse_lpd_uri
from pullprint.model import JobState, Printer
from pullprint.peers.jetdirect import SocketSink
from pullprint.peers.lpd import LpdServer
from pullprint.peers.stack import Stack
from tests.test_e2e import print_and_hold


def test_control_file_and_uri() -> None:
    text = control_file(host="h", user="alice", job_name="pullprint-x\n", data_name="dfA001h")
    assert text == b"Hh\nPalice\nJpullprint-x?\nNpullprint-x?\nLalice\nldfA001h\nUdfA001h\n"
    target = parse_lpd_uri("lpd://127.0.0.1:5515/Sink")
    assert (target.host, target.port, target.queue) == ("127.0.0.1", 5515, "Sink")


def test_lpr_through_cups_lpd(world_dir: Path) -> None:
    sink = SocketSink().start()
    try:
        with Stack(world_dir / "stack") as stack:
            assert stack.cups is not None
            stack.cups.run("lpadmin", "-p", "Sink", "-v", sink.uri, "-m", "raw", "-E")
            with LpdServer(stack.cups) as lpd, stack.admin() as admin:
                admin.add_printer(Printer("lpr1", lpd.uri("Sink"), "node1"))
                _, uuid = print_and_hold(stack, world_dir, pages=2)
                out = stack.cli(
                    "release", uuid, "--printer", "lpr1", "--user", "alice", "--pin", "1234"
                )
                assert out.returncode == 0, out.stderr
                final = stack.wait_state(uuid, {JobState.COMPLETED, JobState.FAILED})
                assert final.state is JobState.COMPLETED, final.state_reason
                assert final.impressions == 2
                assert final.state_reason.startswith("estimated: sent over lpr")
                deadline = time.monotonic() + 20
                while not sink.received() and time.monotonic() < deadline:
                    time.sleep(0.1)
                data = sink.received()
                assert len(data) == 1
                assert b"%PDF" in data[0]
                assert f'@PJL JOB NAME="pullprint-{uuid}"'.encode() in data[0]
                conn = stack.cups.connection()
                everything = [conn.getJobAttributes(j) for j in conn.getJobs(which_jobs="all")]
                sink_jobs = [a for a in everything if a.get("job-name") == f"pullprint-{uuid}"]
                assert len(sink_jobs) == 1
                attrs = sink_jobs[0]
                assert attrs["job-name"] == f"pullprint-{uuid}"
                assert attrs["job-originating-user-name"] == "alice"
                assert attrs["job-state"] in (CupsJobState.COMPLETED, CupsJobState.PROCESSING)
    finally:
        sink.stop()
