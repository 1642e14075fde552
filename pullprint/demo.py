"""``make demo``: the whole path once, for real, on loopback, on the embedded defaults.

Print a 3-page PDF with ``lp -U alice -d PullPrint``; see it held in CUPS; release it with alice's
PIN through ``pullprint release``; wait for the printer; show the transaction; stop everything.
Ends with one ``DEMO OK ...`` line and exit 0, or says what failed and exits 1.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from pullprint.cups.jobs import CupsJobState
from pullprint.model import JobState
from pullprint.peers.documents import make_pdf
from pullprint.peers.stack import Stack


class DemoFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"== {text}", flush=True)


def run(root: Path) -> str:
    step("starting cupsd (queue PullPrint), ippeveprinter, the cloud service and the node")
    with Stack(root, users={"alice": "1234"}, submitd=True) as stack:
        cups = stack.cups
        assert cups is not None
        printer = stack.printers[0]
        document = make_pdf(root / "report.pdf", 3, title="Quarterly report")
        step("lp -U alice -d PullPrint report.pdf")
        cups_job = cups.lp(document, user="alice", title="Quarterly report")
        attrs = cups.wait_job(cups_job, {CupsJobState.HELD}, timeout=30)
        print(cups.run("lpstat", "-o", "PullPrint").stdout.rstrip())
        print(
            f"CUPS job {cups_job}: {CupsJobState(int(attrs['job-state'])).name.lower()}, "
            f"job-hold-until={attrs.get('job-hold-until')}"
        )
        job = stack.wait_cloud_job("alice", cups_job)
        step(f"pullprint jobs --user alice  (job {job.uuid} is {job.state.value})")
        print(stack.cli("jobs", "--user", "alice").stdout.rstrip())

        step(f"pullprint release {job.uuid} --printer printer1 --user alice --pin ****")
        started = time.monotonic()
        out = stack.cli(
            "release", job.uuid, "--printer", "printer1", "--user", "alice", "--pin", "1234"
        )
        print((out.stdout + out.stderr).rstrip())
        if out.returncode != 0:
            raise DemoFailed(f"release failed with exit {out.returncode}")
        final = stack.wait_state(
            job.uuid, {JobState.COMPLETED, JobState.CANCELED, JobState.FAILED}, timeout=60
        )
        print(
            f"printed in {time.monotonic() - started:.2f} s: {final.state.value}, "
            f"{final.impressions} impressions"
        )
        if final.state is not JobState.COMPLETED:
            raise DemoFailed(f"job ended {final.state.value}: {final.state_reason}")
        cups_attrs = cups.wait_job(cups_job, {CupsJobState.COMPLETED}, timeout=30)
        printer_job = printer.find_job(f"pullprint-{job.uuid}")
        printer_state = printer_job.state_name if printer_job else "missing"
        step("the transaction")
        print(stack.cli("show", job.uuid).stdout.rstrip())
        tx = final.transaction
        if tx is None:
            raise DemoFailed("the print-out has no transaction")
        cups_state = CupsJobState(int(cups_attrs["job-state"])).name.lower()
        return (
            f"DEMO OK job={job.uuid} pages={final.pages} cups={cups_state} "
            f"printer={printer_state} transaction={tx.status.value} cost={tx.amount}"
        )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pullprint-demo-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        try:
            line = run(root)
        except Exception as exc:  # noqa: BLE001 - the demo reports any failure and exits 1
            print(f"DEMO FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            for log in sorted(root.rglob("*.log")) + sorted(root.rglob("error_log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log} (last lines)", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)
            return 1
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
