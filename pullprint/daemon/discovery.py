"""Finding printers and asking them what they can do.

:func:`browse` lists the IPP printers announced on the node's network with DNS-SD
(``_ipp._tcp`` and ``_ipps._tcp``) by running Avahi's ``avahi-browse -rtpk`` once per service
type, and turns each resolved announcement into a URI an admin can add. :func:`probe` asks one
printer from here: IPP Get-Printer-Attributes (state, reasons, formats, colour, sides, copies),
or a TCP connection for ``lpd://`` and ``socket://`` (``doctor.check_printer``). Both only read.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pullprint.model import Discovered as Discovered  # defined with the shared model

log = logging.getLogger(__name__)

SERVICE_TYPES = ("_ipp._tcp", "_ipps._tcp")
BROWSE_SECONDS = 10.0
STATES = {3: "idle", 4: "printing", 5: "stopped"}


class DiscoveryUnavailable(RuntimeError):
    """DNS-SD browsing cannot run here (no avahi-browse, or the Avahi daemon does not answer)."""


def _unescape(text: str) -> str:
    """avahi-browse -p escapes bytes as ``\\DDD`` (decimal) and ``.``/``\\`` with a backslash."""
    return re.sub(r"\\(\d{3}|.)", lambda m: chr(int(m[1])) if m[1].isdigit() else m[1], text)


def _txt(records: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in re.findall(r'"((?:[^"\\]|\\.)*)"', records):
        key, _, value = _unescape(item).partition("=")
        found.setdefault(key.lower(), value)
    return found


def parse_browse(text: str) -> list[Discovered]:
    """The resolved (``=``) lines of ``avahi-browse -rtpk`` output as printers, one per
    service name and type (the first address wins; IPv4 before IPv6 as avahi lists them).
    Pure function."""
    found: dict[tuple[str, str], Discovered] = {}
    for line in text.splitlines():
        parts = line.split(";", 9)
        if len(parts) < 10 or parts[0] != "=" or parts[4] not in SERVICE_TYPES:
            continue
        name, service, host, address, port_text = (
            _unescape(parts[3]),
            parts[4],
            parts[6],
            parts[7],
            parts[8],
        )
        if not port_text.isdigit() or (name, service) in found:
            continue
        txt = _txt(parts[9])
        path = txt.get("rp", "ipp/print").lstrip("/")
        scheme = "ipps" if service == "_ipps._tcp" else "ipp"
        where = f"[{address}]" if ":" in address else address
        found[(name, service)] = Discovered(
            name=name,
            uri=f"{scheme}://{where}:{int(port_text)}/{path}",
            host=host,
            address=address,
            port=int(port_text),
            service=service,
            make_and_model=txt.get("ty", ""),
            location=txt.get("note", ""),
        )
    return sorted(found.values(), key=lambda d: (d.name.lower(), d.service))


def browse(timeout: float = BROWSE_SECONDS) -> list[Discovered]:
    """The IPP printers announced on this host's networks (``avahi-browse -rtpk`` per service
    type, each given ``timeout`` seconds). DiscoveryUnavailable when Avahi cannot be asked."""
    program = shutil.which("avahi-browse")
    if program is None:
        raise DiscoveryUnavailable("avahi-browse is not installed (apt install avahi-utils)")
    text = []
    for service in SERVICE_TYPES:
        try:
            done = subprocess.run(
                [program, "-rtpk", service],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DiscoveryUnavailable(f"avahi-browse did not finish within {timeout} s") from exc
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise DiscoveryUnavailable(f"avahi-browse failed: {why[0]} (is avahi-daemon running?)")
        text.append(done.stdout)
    found = parse_browse("\n".join(text))
    log.info("DNS-SD: %d printer(s) announced", len(found))
    return found


@dataclass(frozen=True)
class Probe:
    """What a printer said when asked from here."""

    printer: str
    uri: str
    ok: bool
    detail: str
    state: str = ""
    reasons: tuple[str, ...] = ()
    accepting: bool | None = None
    formats: tuple[str, ...] = ()
    color_modes: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    copies_max: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("reasons", "formats", "color_modes", "sides"):
            data[key] = list(data[key])
        return data

    def text(self) -> str:
        """Lines for a terminal."""
        lines = [f"{'ok  ' if self.ok else 'FAIL'} printer {self.printer}: {self.detail}"]
        for label, values in (
            ("formats", self.formats),
            ("colour", self.color_modes),
            ("sides", self.sides),
        ):
            if values:
                lines.append(f"     {label}: {', '.join(values)}")
        if self.copies_max is not None:
            lines.append(f"     copies: up to {self.copies_max}")
        return "\n".join(lines)


def probe(name: str, uri: str, timeout: float = 5.0) -> Probe:
    """Ask printer ``name`` at ``uri``: IPP Get-Printer-Attributes, else a TCP connect. Never
    raises for an unreachable printer (``ok`` is False and ``detail`` says why)."""
    from pullprint.doctor import check_printer

    if urlsplit(uri).scheme not in ("ipp", "ipps"):
        finding = check_printer(name, uri)
        return Probe(name, uri, finding.ok, finding.detail)
    from pullprint.errors import IPPError
    from pullprint.ipp.client import IppClient

    try:
        with IppClient(uri, timeout=timeout) as client:
            attrs = client.get_printer_attributes()
    except IPPError as exc:
        return Probe(name, uri, False, f"{uri}: {exc}")
    reasons = tuple(r for r in attrs.printer_state_reasons if r != "none")
    state = STATES.get(attrs.printer_state, "unknown")
    detail = f"{uri}: {state}" + (f" ({', '.join(reasons)})" if reasons else "")
    if attrs.printer_state_message:
        detail += f": {attrs.printer_state_message}"
    copies = attrs.copies_supported
    return Probe(
        printer=name,
        uri=uri,
        ok=attrs.printer_state != 5,
        detail=detail,
        state=state,
        reasons=reasons,
        accepting=attrs.is_accepting_jobs,
        formats=attrs.document_format_supported,
        color_modes=attrs.print_color_mode_supported,
        sides=attrs.sides_supported,
        copies_max=copies.upper if copies is not None else None,
        extra={"printer-name": attrs.printer_name} if attrs.printer_name else {},
    )
