"""``pullprint doctor``: check a print server's pullprint setup and say how to fix what is wrong.

Each check gives one :class:`Finding` (ok, or a problem with the fix). Checks read only; nothing
is changed. The order follows a job's path: configuration, spool, CUPS queue, backend and filter
files, the release service, the printers.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pullprint.config import Config

BACKEND = "pullprint"
FILTER = "pullprint-finish"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok, but something to act on (not counted as a problem)

    def line(self) -> str:
        mark = ("warn" if self.warning else "ok  ") if self.ok else "FAIL"
        text = f"{mark} {self.check}: {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def serverbin() -> Path:
    """CUPS's ServerBin: $CUPS_SERVERBIN, else what cups-config says, else /usr/lib/cups."""
    if os.environ.get("CUPS_SERVERBIN"):
        return Path(os.environ["CUPS_SERVERBIN"])
    try:
        out = subprocess.run(
            ["cups-config", "--serverbin"], capture_output=True, text=True, timeout=5, check=True
        )
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return Path("/usr/lib/cups")


def check_executable(path: Path, modes: tuple[int, ...], role: str) -> Finding:
    """A backend or filter file: present, root-owned, an allowed mode, in a folder only root
    can write (else cupsd refuses it with "insecure permissions")."""
    name = f"{role} {path}"
    try:
        st = path.stat()
        parent = path.parent.stat()
    except FileNotFoundError:
        return Finding(name, False, "missing", f"reinstall pullprint (it installs {path})")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0:
        return Finding(name, False, f"owned by uid {st.st_uid}", f"chown root:root {path}")
    if mode not in modes:
        wanted = " or ".join(f"{m:04o}" for m in modes)
        return Finding(name, False, f"mode {mode:04o}", f"chmod {modes[0]:04o} {path} ({wanted})")
    if parent.st_uid != 0 or stat.S_IMODE(parent.st_mode) & 0o022:
        return Finding(
            name, False, f"folder {path.parent} is writable by others", f"chmod go-w {path.parent}"
        )
    return Finding(name, True, f"mode {mode:04o}, root")


# cupsd builds with a known defect that hits pull printing, by the version its package reports:
# the fix for CVE-2026-27447 (OpenPrinting/cups#1555) made cupsd dereference a NULL pointer
# whenever an "@OWNER" policy (Send-Document, Cancel-Job, Release-Job ...) is checked for a
# requesting user with no local account, so a job from such a user crashes cupsd. Upstream fixed
# it in 2.4.19; Debian 12's 2.4.2-3+deb12u10 carries the defective backport.
CUPSD_DEFECTS = {
    "2.4.2-3+deb12u10": "OpenPrinting/cups#1555",
    "2.4.17": "OpenPrinting/cups#1555",
    "2.4.18": "OpenPrinting/cups#1555",
}


def cupsd_version() -> str:
    """The installed cupsd's version: the Debian package's (dpkg-query), else upstream's
    (cups-config --version), else ""."""
    for cmd in (
        ["dpkg-query", "-W", "-f=${Version}", "cups-daemon"],
        ["cups-config", "--version"],
    ):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip():
            return out.stdout.strip()
    return ""


def check_cupsd_version(version: str) -> Finding:
    """Warn about a cupsd build that crashes on jobs of users without a local account."""
    if not version:
        return Finding("cupsd version", True, "unknown (neither dpkg-query nor cups-config)")
    defect = CUPSD_DEFECTS.get(version)
    if defect is None:
        return Finding("cupsd version", True, f"{version}, no known defect")
    return Finding(
        "cupsd version",
        True,
        f"{version} crashes on a job whose requesting user has no local account ({defect}); "
        "users with accounts on this server (local, LDAP or SSSD) print normally",
        "give every user who prints an account on the print server (nss/SSSD), or upgrade cupsd "
        "once a fixed package is out (upstream 2.4.19 has the fix)",
        warning=True,
    )


def check_spool(config: Config) -> Finding:
    spool = config.node.spool_dir
    if not spool.is_dir():
        return Finding(
            "spool", False, f"{spool} does not exist", f"mkdir -m 0700 {spool} (tmpfiles does it)"
        )
    mode = stat.S_IMODE(spool.stat().st_mode)
    if mode & 0o077:
        return Finding("spool", False, f"{spool} is mode {mode:04o}", f"chmod 0700 {spool}")
    waiting = len(list((spool / "outbox").glob("*.json"))) if (spool / "outbox").is_dir() else 0
    detail = f"{spool} (0700), {waiting} registration(s) waiting in the outbox"
    if waiting:
        return Finding(
            "spool", False, detail, "start the node; it sends them when the cloud answers"
        )
    return Finding("spool", True, detail)


def _check_pool(pool: str, members: list[str], printers: dict[str, dict[str, Any]]) -> Finding:
    """A CUPS class as a pool of PullPrint queues: every member uses pullprint:/."""
    name = f"pool {pool}"
    others = [m for m in members if printers.get(m, {}).get("device-uri") != "pullprint:/"]
    if not members or others:
        what = f"members not on pullprint:/: {', '.join(others)}" if others else "no members"
        fix = "lpadmin -p MEMBER -v pullprint:/ -P /usr/share/ppd/pullprint/pullprint.ppd -E"
        return Finding(name, False, what, f"{fix} -c {pool}, or lpadmin -p MEMBER -r {pool}")
    return Finding(
        name, True, f"class of {len(members)} queues on pullprint:/: {', '.join(members)}"
    )


def check_queues(config: Config) -> list[Finding]:
    """Each configured queue exists in cupsd, uses pullprint:/ and accepts jobs (a class, a
    pool of queues: each of its members uses pullprint:/)."""
    from pullprint.cups.jobs import CupsJobs, CupsUnavailable

    cups = CupsJobs(config.node.cups_server)
    try:
        printers: dict[str, dict[str, Any]] = cups._call(lambda conn: conn.getPrinters())
        classes: dict[str, Any] = cups._call(lambda conn: conn.getClasses())
    except CupsUnavailable as exc:
        return [Finding("cupsd", False, str(exc), "start cupsd (systemctl start cups)")]
    out = [
        Finding("cupsd", True, f"answers at {config.node.cups_server or 'the default server'}"),
        check_cupsd_version(cupsd_version()),
    ]
    for queue in config.node.queues:
        attrs = printers.get(queue)
        name = f"queue {queue}"
        if isinstance(classes.get(queue), list):  # getPrinters lists classes too
            out.append(_check_pool(queue, [str(m) for m in classes[queue]], printers))
        elif attrs is None:
            fix = (
                f"lpadmin -p {queue} -v pullprint:/ -P /usr/share/ppd/pullprint/pullprint.ppd "
                "-E -o printer-error-policy=abort-job"
            )
            out.append(Finding(name, False, "does not exist", fix))
        elif attrs.get("device-uri") != "pullprint:/":
            out.append(
                Finding(
                    name,
                    False,
                    f"device is {attrs.get('device-uri')}",
                    f"lpadmin -p {queue} -v pullprint:/",
                )
            )
        elif not attrs.get("printer-is-accepting-jobs", True) or attrs.get("printer-state") == 5:
            out.append(
                Finding(
                    name,
                    False,
                    "stopped or rejecting jobs",
                    f"cupsenable {queue} && cupsaccept {queue}",
                )
            )
        else:
            out.append(Finding(name, True, "pullprint:/, accepting jobs"))
    return out


def check_cloud(config: Config) -> tuple[Finding, list[Any]]:
    """The release service answers, knows this node's token, and lists its printers."""
    from pullprint.cloudsync.client import CloudClient
    from pullprint.errors import CloudError, CloudUnavailable

    url = config.node.cloud_url
    with CloudClient(url, config.node.token, timeout=5, verify=config.node.cloud_verify) as cloud:
        if not cloud.health():
            return Finding(
                "cloud",
                False,
                f"{url} does not answer",
                "start the release service (pullprint server) or fix node.cloud_url",
            ), []
        try:
            printers = [p for p in cloud.list_printers() if p.node == config.node.name]
        except CloudUnavailable as exc:
            return Finding("cloud", False, str(exc), "check the release service's log"), []
        except CloudError as exc:
            return Finding(
                "cloud",
                False,
                f"refused node {config.node.name}: {exc}",
                "set node.token to this node's token from cloud.node_tokens",
            ), []
    return Finding("cloud", True, f"{url}, {len(printers)} printer(s) for this node"), printers


def check_printer(name: str, uri: str) -> Finding:
    """An IPP printer answers Get-Printer-Attributes; others accept a TCP connection."""
    check = f"printer {name}"
    parts = urlsplit(uri)
    if parts.scheme in ("ipp", "ipps"):
        from pullprint.errors import IPPError
        from pullprint.ipp.client import IppClient

        try:
            with IppClient(uri, timeout=5) as client:
                attrs = client.get_printer_attributes()
        except IPPError as exc:
            return Finding(check, False, f"{uri}: {exc}", "check the printer is on and the URI")
        reasons = [r for r in attrs.printer_state_reasons if r != "none"]
        state = {3: "idle", 4: "printing", 5: "stopped"}.get(attrs.printer_state, "unknown")
        detail = f"{uri}: {state}" + (f" ({', '.join(reasons)})" if reasons else "")
        if attrs.printer_state == 5:
            return Finding(check, False, detail, "clear the printer's problem at the device")
        return Finding(check, True, detail)
    port = parts.port or {"lpd": 515, "socket": 9100}.get(parts.scheme, 0)
    if not parts.hostname or not port:
        return Finding(
            check, False, f"cannot check {uri}", "use ipp://, ipps://, lpd:// or socket://"
        )
    try:
        with socket.create_connection((parts.hostname, port), timeout=5):
            pass
    except OSError as exc:
        return Finding(check, False, f"{uri}: {exc.strerror or exc}", "check the printer is on")
    return Finding(check, True, f"{uri}: accepts connections")


def run(config: Config, bindir: Path | None = None) -> list[Finding]:
    """Every check, in the order a job meets them."""
    bindir = bindir or serverbin()
    findings = [
        Finding("configuration", True, str(config.path or "embedded defaults")),
        check_spool(config),
        *check_queues(config),
        check_executable(bindir / "backend" / BACKEND, (0o700, 0o744, 0o755), "backend"),
        check_executable(bindir / "filter" / FILTER, (0o755,), "filter"),
    ]
    cloud, printers = check_cloud(config)
    findings.append(cloud)
    findings.extend(check_printer(p.name, p.uri) for p in printers)
    return findings


def report(config: Config, as_json: bool = False) -> tuple[int, str]:
    """Run the checks; (exit code, text): 0 when everything is well, 1 otherwise."""
    import json

    findings = run(config)
    code = 0 if all(f.ok for f in findings) else 1
    if as_json:
        return code, json.dumps([f.to_json() for f in findings], indent=2)
    lines = [f.line() for f in findings]
    bad = sum(not f.ok for f in findings)
    warned = sum(f.warning for f in findings)
    if bad:
        lines.append(f"{bad} problem(s) found")
    else:
        lines.append("all well" + (f" ({warned} warning(s) above)" if warned else ""))
    return code, "\n".join(lines)
