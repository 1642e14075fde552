"""TLS for ipps:// printers: verified against the system CAs, or against a certificate the
administrator pinned (SHA-256 fingerprint in ``node.tls_pins``), or trust on first use when the
administrator lists the printer in ``node.tls_tofu`` (the first certificate seen is pinned in
``spool_dir/tls-pins.json`` and every later one must match).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from pullprint.config import NodeConfig
from pullprint.errors import IPPError, PrinterUnavailable

log = logging.getLogger(__name__)

TOFU_FILE = "tls-pins.json"
_tofu_lock = threading.Lock()


def normalise_fingerprint(text: str) -> str:
    """``AB:CD:...`` or ``abcd...`` -> 64 lower-case hex digits. Raises ValueError. Pure."""
    hexed = text.replace(":", "").strip().lower()
    if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return hexed


class PinnedAdapter(HTTPAdapter):
    """An HTTPS adapter that accepts exactly the certificate with this SHA-256 fingerprint."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = normalise_fingerprint(fingerprint)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint
        kwargs["assert_hostname"] = False
        super().init_poolmanager(*args, **kwargs)


def peer_fingerprint(uri: str, timeout: float = 10.0) -> str:
    """The SHA-256 of the certificate the printer at ``uri`` presents now (not verified)."""
    parts = urlsplit(uri)
    host, port = parts.hostname or "", parts.port or 631
    try:
        pem = ssl.get_server_certificate((host, port), timeout=timeout)
    except OSError as exc:
        raise PrinterUnavailable(f"TLS to {host}:{port}: {exc}") from exc
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _tofu_pin(spool_dir: Path, printer: str, uri: str) -> str:
    path = spool_dir / TOFU_FILE
    with _tofu_lock:
        try:
            pins = json.loads(path.read_text())
        except FileNotFoundError:
            pins = {}
        except ValueError as exc:
            raise IPPError(f"{path}: unreadable pins: {exc}") from exc
        if printer in pins:
            return str(pins[printer])
        fp = peer_fingerprint(uri)
        pins[printer] = fp
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(pins, indent=2, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(path)
        log.warning("printer %s: trusted on first use, certificate sha256 %s pinned", printer, fp)
        return fp


def session_for(config: NodeConfig, printer: str, uri: str) -> tuple[requests.Session, bool]:
    """A session and ``verify`` value for the printer: (session, True) verifies against the system
    CAs; a pinned printer gets a session that checks the fingerprint (verify False: the pin
    replaces the CA chain). The caller closes the session."""
    session = requests.Session()
    if not uri.startswith("ipps://"):
        return session, True
    pin = config.tls_pins.get(printer)
    if pin is None and printer in config.tls_tofu:
        pin = _tofu_pin(config.spool_dir, printer, uri)
    if pin is None:
        return session, True
    session.mount("https://", PinnedAdapter(pin))
    return session, False
