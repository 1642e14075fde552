"""Capture raw IPP answers of a real ippeveprinter as test fixtures (the bytes exactly as sent).

Run as root on a machine with cups-ipp-utils: ``.venv/bin/python tests/data/ipp/capture.py``.
Writes ``get-printer-attributes.bin``, ``print-job.bin``, ``get-job-attributes.bin`` (a completed
3-page job printed with copies=2), ``get-jobs.bin`` and ``get-job-attributes-not-found.bin``.
"""

from __future__ import annotations

import http.client
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pullprint.ipp.encoding import (  # noqa: E402
    IppAttribute,
    Operation,
    decode_message,
    encode_request,
    job_attributes,
)
from pullprint.peers.documents import make_pdf  # noqa: E402
from pullprint.peers.ippeve import IppEvePrinter  # noqa: E402


def post(port: int, body: bytes) -> bytes:
    """POST one IPP request and return the raw answer body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/ipp/print", body=body, headers={"Content-Type": "application/ipp"})
        answer = conn.getresponse().read()
    finally:
        conn.close()
    decode_message(answer)  # must decode
    return answer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, IppEvePrinter(Path(tmp), name="capture") as printer:
        uri = printer.uri
        base = [
            IppAttribute.uri("printer-uri", uri),
            IppAttribute.name_("requesting-user-name", "alice"),
        ]
        fixtures: dict[str, bytes] = {}
        fixtures["get-printer-attributes"] = post(
            printer.port,
            encode_request(
                Operation.GET_PRINTER_ATTRIBUTES,
                1,
                [*base, IppAttribute.keyword("requested-attributes", "all", "media-col-database")],
            ),
        )
        document = make_pdf(Path(tmp) / "three.pdf", 3).read_bytes()
        header = encode_request(
            Operation.PRINT_JOB,
            2,
            [
                *base,
                IppAttribute.name_("job-name", "capture-job"),
                IppAttribute.mime("document-format", "application/pdf"),
            ],
            job_attributes({"copies": 2, "sides": "two-sided-long-edge"}),
        )
        fixtures["print-job"] = post(printer.port, header + document)
        job_id = decode_message(fixtures["print-job"]).first("job-id")
        assert isinstance(job_id, int)
        time.sleep(1.5)
        fixtures["get-job-attributes"] = post(
            printer.port,
            encode_request(
                Operation.GET_JOB_ATTRIBUTES,
                3,
                [*base, IppAttribute.integer("job-id", job_id)],
            ),
        )
        fixtures["get-jobs"] = post(
            printer.port,
            encode_request(
                Operation.GET_JOBS,
                4,
                [
                    *base,
                    IppAttribute.keyword("which-jobs", "all"),
                    IppAttribute.keyword("requested-attributes", "all"),
                ],
            ),
        )
        fixtures["get-job-attributes-not-found"] = post(
            printer.port,
            encode_request(
                Operation.GET_JOB_ATTRIBUTES, 5, [*base, IppAttribute.integer("job-id", 999)]
            ),
        )
        for name, data in fixtures.items():
            (HERE / f"{name}.bin").write_bytes(data)
            print(f"captured {name}.bin ({len(data)} bytes)")


if __name__ == "__main__":
    main()
