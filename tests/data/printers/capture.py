"""Capture the Get-Printer-Attributes answers of real ippeveprinter instances as fixtures.

Run as root on a machine with cups-ipp-utils, after starting dbus and avahi (ENVIRONMENT.md):
``python tests/data/printers/capture.py``. Writes ``<profile>.ipp`` (the raw answer bytes, exactly
as the printer sent them) and ``<profile>.txt`` (ipptool's reading of the same printer, for humans).
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pullprint.filters.ippattrs import decode_message, encode_get_printer_attributes  # noqa: E402
from pullprint.peers.ports import free_port, wait_listening  # noqa: E402

# profile name -> ippeveprinter arguments (-f formats, -2 duplex, -s speed[,color speed])
PROFILES: dict[str, list[str]] = {
    "ipp-pdf-duplex-color": [
        "-f",
        "application/pdf,image/pwg-raster,image/jpeg",
        "-2",
        "-s",
        "20,10",
    ],
    "ipp-pdf-simplex-color": ["-f", "application/pdf,image/jpeg", "-s", "20,10"],
    "ipp-pdf-duplex-mono": ["-f", "application/pdf,image/pwg-raster", "-2", "-s", "30"],
    "ipp-pwg-only-duplex-color": ["-f", "image/pwg-raster", "-2", "-s", "20,10"],
    "ipp-ps-only-mono": ["-f", "application/postscript", "-s", "25"],
}


def capture(profile: str, args: list[str]) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                "ippeveprinter",
                "-p",
                str(port),
                "-n",
                "localhost",
                "-d",
                tmp,
                "-K",
                tmp,
                "-m",
                profile,
                *args,
                f"pullprint {profile}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, timeout=10)
            time.sleep(0.3)
            uri = f"ipp://localhost:{port}/ipp/print"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(
                "POST",
                "/ipp/print",
                body=encode_get_printer_attributes(uri),
                headers={"Content-Type": "application/ipp"},
            )
            answer = conn.getresponse().read()
            conn.close()
            decode_message(answer)  # must decode
            (HERE / f"{profile}.ipp").write_bytes(answer)
            text = subprocess.run(
                ["ipptool", "-tv", uri, "get-printer-attributes.test"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            (HERE / f"{profile}.txt").write_text(text)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    for name, argv in PROFILES.items():
        capture(name, argv)
        print("captured", name)
