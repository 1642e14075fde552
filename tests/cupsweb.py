"""The CUPS web UI, used as an operator uses it: the "Cancel Job" form POST on /jobs/."""

from __future__ import annotations

import requests


def web_cancel(base_url: str, job_id: int, queue: str, auth: tuple[str, str]) -> str:
    """Cancel a job through the CUPS web interface; returns the page's text."""
    with requests.Session() as session:
        session.get(f"{base_url}/jobs/", timeout=10).raise_for_status()
        sid = session.cookies.get("org.cups.sid")
        assert sid, "CUPS web UI set no org.cups.sid cookie"
        answer = session.post(
            f"{base_url}/jobs/",
            data={
                "org.cups.sid": sid,
                "OP": "cancel-job",
                "job_id": str(job_id),
                "job_printer_uri": f"/printers/{queue}",
            },
            auth=auth,
            timeout=10,
        )
        answer.raise_for_status()
        return answer.text
