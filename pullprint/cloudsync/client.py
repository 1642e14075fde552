"""The client of the cloud API (docs/api.md), used by the node daemon, the backend and the CLI.

Typed methods over ``requests``; every failure is a ``pullprint.errors.CloudError``: the cloud
did not answer (connection error, timeout, 5xx) -> CloudUnavailable, it refused -> a CloudRefused
child chosen by status, with the server's ``detail`` as message. Documents are streamed both
ways, never held whole in memory. The token is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

from pullprint.errors import (
    CloudRefused,
    CloudUnavailable,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from pullprint.model import Job, JobState, JobSubmission, NodeEvent, Printer

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
_REFUSALS: dict[int, type[CloudRefused]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
}


class CloudClient:
    """A session with the cloud at ``base_url`` using one bearer ``token``.

    ``session`` is injected or made here; only a session made here is closed by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"CloudClient({self.base_url!r})"

    def close(self) -> None:
        """Close the session if this client made it (idempotent)."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        try:
            response = self.session.request(
                method,
                self._url(path),
                json=json_body,
                data=data,
                params=params,
                headers=all_headers,
                timeout=timeout if timeout is not None else self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise CloudUnavailable(f"{method} {path}: the cloud did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                _raise_for(method, path, response)
            finally:
                response.close()
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise CloudUnavailable(f"{method} {path}: the cloud answered non-JSON") from exc
        finally:
            response.close()

    # -- API ---------------------------------------------------------------------------------

    def health(self) -> bool:
        """True if the cloud answers ``{"status": "ok"}``; never raises."""
        try:
            return bool(self._json("GET", "/health").get("status") == "ok")
        except (CloudUnavailable, CloudRefused, AttributeError):
            return False

    def add_user(self, name: str, pin: str) -> None:
        """Create a user with a PIN (admin). Conflict if the name exists."""
        self._json("POST", "/users", json_body={"name": name, "pin": pin})

    def add_printer(self, printer: Printer) -> Printer:
        """Create or replace a printer by name (admin); idempotent."""
        return Printer.from_json(self._json("POST", "/printers", json_body=printer.to_json()))

    def list_printers(self) -> list[Printer]:
        """Every printer the cloud knows."""
        data = self._json("GET", "/printers")
        return [Printer.from_json(p) for p in data["printers"]]

    def register(self, submission: JobSubmission) -> Job:
        """Register a job (node), held with a pending transaction; idempotent per uuid."""
        return Job.from_json(self._json("POST", "/jobs", json_body=submission.to_json()))

    def upload_document(self, uuid: str, path: Path) -> None:
        """Stream the file at ``path`` as the job's document (node); idempotent after success."""
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            response = self._request(
                "PUT",
                f"/jobs/{_q(uuid)}/document",
                data=fh,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            )
            response.close()

    def get_job(self, uuid: str) -> Job:
        """The job with its transaction."""
        return Job.from_json(self._json("GET", f"/jobs/{_q(uuid)}"))

    def list_jobs(self, user: str | None = None, state: JobState | None = None) -> list[Job]:
        """Jobs newest first (admin), optionally of one owner and/or in one state."""
        params: dict[str, str] = {}
        if user is not None:
            params["user"] = user
        if state is not None:
            params["state"] = JobState(state).value
        data = self._json("GET", "/jobs", params=params)
        return [Job.from_json(j) for j in data["jobs"]]

    def release(
        self,
        uuid: str,
        user: str,
        pin: str,
        printer: str,
        options: dict[str, str] | None = None,
    ) -> Job:
        """Release a held job to ``printer`` for ``user`` with their PIN (admin)."""
        body = {"user": user, "pin": pin, "printer": printer, "options": dict(options or {})}
        return Job.from_json(self._json("POST", f"/jobs/{_q(uuid)}/release", json_body=body))

    def operator_release(self, uuid: str, printer: str, operator: str) -> Job:
        """Pass on an operator's "Release Job" in CUPS (the job's origin node; no PIN)."""
        body = {"printer": printer, "operator": operator}
        path = f"/jobs/{_q(uuid)}/operator-release"
        return Job.from_json(self._json("POST", path, json_body=body))

    def cancel(self, uuid: str, user: str | None = None, reason: str = "") -> Job:
        """Cancel a job (as ``user`` if given: only the owner may); 200 if already canceled."""
        body = {"user": user, "reason": reason}
        return Job.from_json(self._json("POST", f"/jobs/{_q(uuid)}/cancel", json_body=body))

    def events(self, after: int, timeout: float) -> tuple[list[NodeEvent], int]:
        """The node's events after cursor ``after``, waiting up to ``timeout`` s for one.

        Returns (events, new cursor). The read timeout is ``timeout`` + 5 s.
        """
        data = self._json(
            "GET",
            "/node/events",
            params={"after": str(int(after)), "timeout": repr(float(timeout))},
            timeout=(self.timeout, float(timeout) + 5.0),
        )
        found = [NodeEvent.from_json(e) for e in data["events"]]
        return found, int(data["cursor"])

    def claim(self, uuid: str) -> Job:
        """Claim a job released to one of this node's printers; Conflict if not (any more)."""
        return Job.from_json(self._json("POST", f"/jobs/{_q(uuid)}/claim", json_body={}))

    def download(self, uuid: str, dest: Path) -> int:
        """Stream the claimed job's document to ``dest`` (temp file in the same folder, then
        renamed over ``dest``); returns the number of bytes. ``dest`` is untouched on failure."""
        path = f"/jobs/{_q(uuid)}/document"
        response = self._request("GET", path, stream=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        total = 0
        try:
            with response, os.fdopen(fd, "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    total += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) != total:
                raise CloudUnavailable(f"GET {path}: got {total} of {expected} bytes")
            tmp.replace(dest)
        except requests.RequestException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise CloudUnavailable(f"GET {path}: the download broke off: {exc}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return total

    def progress(
        self,
        uuid: str,
        state: JobState,
        impressions: int | None = None,
        sheets: int | None = None,
        reason: str = "",
    ) -> Job:
        """Report how printing goes (node): printing, completed, canceled or failed."""
        body = {
            "state": JobState(state).value,
            "impressions": impressions,
            "sheets": sheets,
            "reason": reason,
        }
        return Job.from_json(self._json("POST", f"/jobs/{_q(uuid)}/progress", json_body=body))


def _q(part: str) -> str:
    return quote(part, safe="")


def _raise_for(method: str, path: str, response: requests.Response) -> None:
    """Raise the error for a 4xx/5xx answer, with the server's ``detail`` as message."""
    status = response.status_code
    detail = ""
    try:
        data = response.json()
        if isinstance(data, dict):
            detail = str(data.get("detail") or "")
    except (ValueError, json.JSONDecodeError):
        detail = ""
    if not detail:
        detail = f"{method} {path}: HTTP {status} {response.reason}"
    if status >= 500:
        raise CloudUnavailable(f"{method} {path}: the cloud failed (HTTP {status}): {detail}")
    cls = _REFUSALS.get(status, CloudRefused)
    raise cls(status, detail)
