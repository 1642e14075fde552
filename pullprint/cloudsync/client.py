"""The client of the cloud API (docs/api.md), used by the node daemon, the backend and the CLI.

Typed methods over ``requests``; every failure is a ``pullprint.errors.CloudError``: the cloud
did not answer (connection error, timeout, 5xx) -> CloudUnavailable, it refused -> a CloudRefused
child chosen by status, with the server's ``detail`` as message. Documents are streamed both
ways, never held whole in memory. The token is never logged.

Documents are downloaded through signed, single-use URLs: :meth:`CloudClient.claim` keeps the
``download_url`` of its answer for :meth:`CloudClient.download`, which asks for a fresh one
(``POST /jobs/{uuid}/download-url``) when it has none or the kept one is refused. HTTPS servers
are verified against ``verify`` (a CA bundle path, or True for the system's CAs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
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
from pullprint.model import (
    MAX_JOBS_PAGE,
    Discovered,
    Job,
    JobState,
    JobSubmission,
    NodeEvent,
    PlanStep,
    Printer,
    StorageKind,
)

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
    ``verify``: how an HTTPS server's certificate is checked: a CA bundle path (the cloud's own
    CA), or True for the system's CAs. Never False in production.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.verify = verify
        self._token = token
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        if self._own_session:
            # requests reads the environment (proxy variables, netrc, CA bundle variables) on
            # every request, a quarter of its cost on loopback, and a netrc entry would replace
            # the bearer token. Every request of this client goes to base_url: read it once.
            found = self.session.merge_environment_settings(self.base_url, {}, None, verify, None)
            self.session.proxies.update(found["proxies"])
            self.verify = verify if found["verify"] is None else found["verify"]
            self.session.trust_env = False
        self._download_urls: dict[str, str] = {}  # job uuid -> signed URL from its claim
        self._on_node: set[str] = set()  # jobs whose document stays on the node

    def __repr__(self) -> str:
        return f"CloudClient({self.base_url!r})"

    def close(self) -> None:
        """Close the session if this client made it (idempotent)."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Self:
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
        server_path: bool = False,
    ) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        url = f"{self.base_url}{path}" if server_path else self._url(path)
        path = path.split("?", 1)[0]  # a signed URL's query is a credential: never in messages
        try:
            response = self.session.request(
                method,
                url,
                verify=self.verify,
                json=json_body,
                data=data,
                params=params,
                headers=all_headers,
                timeout=timeout if timeout is not None else self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            detail = str(exc)
            if "?" in url:
                detail = detail.replace(url.split("?", 1)[1], "...")
            raise CloudUnavailable(f"{method} {path}: the cloud did not answer: {detail}") from exc
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
        """Register a job (node), held with a pending transaction; idempotent per uuid.

        If the cloud keeps the job's document on the node (``job.storage`` is node), a later
        :meth:`upload_document` of this client for it sends nothing."""
        job = Job.from_json(self._json("POST", "/jobs", json_body=submission.to_json()))
        if job.storage is StorageKind.NODE:
            self._on_node.add(job.uuid)
        return job

    def upload_document(self, uuid: str, path: Path) -> None:
        """Stream the file at ``path`` as the job's document (node); idempotent after success.

        Sends nothing for a job registered here whose document stays on the node."""
        if uuid in self._on_node:
            log.info("job %s keeps its document on this node; nothing uploaded", uuid)
            return
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

    def list_jobs(
        self,
        user: str | None = None,
        state: JobState | None = None,
        most: int | None = None,
        page: int | None = None,
    ) -> list[Job]:
        """Jobs newest first (admin), optionally of one owner and/or in one state: the first
        ``most``, or all without; asked ``page`` at a time (the cloud's default without)."""
        found: list[Job] = []
        after: str | None = None
        while most is None or len(found) < most:
            limit = page if most is None else min(most - len(found), page or MAX_JOBS_PAGE)
            jobs, after = self.list_jobs_page(user, state, limit=limit, after=after)
            found += jobs
            if after is None:
                break
        return found

    def list_jobs_page(
        self,
        user: str | None = None,
        state: JobState | None = None,
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page of :meth:`list_jobs` (``limit`` jobs, the cloud's default without), and
        the ``after`` of the next page (None on the last)."""
        params: dict[str, str] = {}
        if user is not None:
            params["user"] = user
        if state is not None:
            params["state"] = JobState(state).value
        if limit is not None:
            params["limit"] = str(limit)
        if after is not None:
            params["after"] = after
        data = self._json("GET", "/jobs", params=params)
        return [Job.from_json(j) for j in data["jobs"]], data.get("next") or None

    def release(
        self,
        uuid: str,
        user: str,
        pin: str,
        printer: str,
        options: dict[str, str] | None = None,
        account: str | None = None,
    ) -> Job:
        """Release a held job to ``printer`` for ``user`` (its owner or a delegate) with their
        PIN (admin; a signed-in session passes empty ``user`` and ``pin``). ``options``:
        release changes; ``account``: the owner's choice of shared account (a delegate's
        release is charged as the delegation says)."""
        body: dict[str, Any] = {"printer": printer, "options": dict(options or {})}
        if user:  # a signed-in client's session says who releases: no user, no PIN
            body["user"] = user
        if pin:
            body["pin"] = pin
        if account is not None:
            body["account"] = account
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
        """Claim a job released to one of this node's printers; Conflict if not (any more).

        The answer's signed ``download_url`` is kept for :meth:`download`."""
        job = Job.from_json(self._json("POST", f"/jobs/{_q(uuid)}/claim", json_body={}))
        if job.download_url:
            self._download_urls[uuid] = job.download_url
        return job

    def download_url(self, uuid: str) -> str:
        """A fresh signed, single-use URL (path and query) for the claimed job's document."""
        data = self._json("POST", f"/jobs/{_q(uuid)}/download-url", json_body={})
        return str(data["download_url"])

    def download(self, uuid: str, dest: Path, url: str | None = None) -> int:
        """Stream the claimed job's document to ``dest`` (temp file in the same folder, then
        renamed over ``dest``); returns the number of bytes. ``dest`` is untouched on failure.

        Uses ``url``, else the URL kept from the claim, else a fresh one; a kept URL that is
        refused (expired, used) is replaced by a fresh one once."""
        kept = url or self._download_urls.pop(uuid, None)
        if kept is None:
            return self._download(self.download_url(uuid), dest)
        try:
            return self._download(kept, dest)
        except Forbidden:
            if url is not None:
                raise
            log.info("job %s: the kept download URL was refused; asking for a fresh one", uuid)
            return self._download(self.download_url(uuid), dest)

    def _download(self, url: str, dest: Path) -> int:
        path = url.split("?", 1)[0]
        response = self._request("GET", url, stream=True, server_path=True)
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

    def report_discovered(self, found: Sequence[Discovered]) -> None:
        """Tell the cloud which IPP printers this node finds announced on its network."""
        body = {"printers": [d.to_json() for d in found]}
        self._request("PUT", "/node/discovered", json_body=body).close()

    def report_plan(self, uuid: str, steps: Sequence[PlanStep]) -> Job:
        """Keep the finishing plan made for the printer with the job (node)."""
        body = {"steps": [s.to_json() for s in steps]}
        return Job.from_json(self._json("PUT", f"/jobs/{_q(uuid)}/finishing", json_body=body))

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


class AdminClient(CloudClient):
    """Admin-only calls for release modes, authentication at printers, groups, delegation and
    retention (the admin token)."""

    def set_release_mode(
        self,
        scope: str,
        name: str,
        mode: str,
        printer: str | None = None,
        direct_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Set the release mode of a queue (``scope="queue"``) or printer (``"printer"``)."""
        body: dict[str, Any] = {"mode": mode}
        if printer is not None:
            body["printer"] = printer
        if direct_seconds is not None:
            body["direct_seconds"] = direct_seconds
        where = "queues" if scope == "queue" else "printers"
        result: dict[str, Any] = self._json(
            "PUT", f"/{where}/{_q(name)}/release-mode", json_body=body
        )
        return result

    def authenticate(
        self, printer: str, user: str, pin: str, release_all: bool = False
    ) -> tuple[list[Job], list[Job]]:
        """A user authenticates at ``printer``: returns (released jobs, jobs still held).
        ``release_all``: release every held job of the user (fast release)."""
        action = "release-all" if release_all else "authenticate"
        data = self._json(
            "POST", f"/printers/{_q(printer)}/{action}", json_body={"user": user, "pin": pin}
        )
        return (
            [Job.from_json(j) for j in data["released"]],
            [Job.from_json(j) for j in data["held"]],
        )

    def put_group(self, name: str, members: list[str]) -> list[str]:
        """Create a group or replace its members; returns them sorted."""
        data = self._json("PUT", f"/groups/{_q(name)}", json_body={"members": members})
        return [str(m) for m in data["members"]]

    def delegate(self, owner: str, kind: str, delegate: str, account: str = "") -> None:
        """``owner`` lets a user or group (``kind``) release their jobs, charged to ``account``
        (empty: the owner's personal account)."""
        body = {"kind": kind, "delegate": delegate, "account": account}
        self._json("PUT", f"/users/{_q(owner)}/delegations", json_body=body)

    def run_retention(self) -> dict[str, int]:
        """Run the retention sweep now; returns what it did."""
        data = self._json("POST", "/admin/retention/run", json_body={})
        return {str(k): int(v) for k, v in data.items()}

    # -- sessions and my account (a signed-in user's session token) ---------------------------

    def sign_in(self, name: str, password: str) -> dict[str, Any]:
        """Open a session for ``name`` with their password (no token needed): the answer's
        ``token`` (``pps_...``), ``user``, ``role`` and ``expires_at``. A wrong password is a
        Forbidden and counts towards the user's lockout."""
        data: dict[str, Any] = self._json(
            "POST", "/sessions", json_body={"name": name, "password": password}
        )
        return data

    def sign_out(self) -> None:
        """End this client's session (its token stops working)."""
        self._request("DELETE", "/sessions/current").close()

    def me(self) -> dict[str, Any]:
        """The signed-in user: name, role, groups, cards..."""
        data: dict[str, Any] = self._json("GET", "/me")
        return data

    def upload_job(self, body: Any, size: int, title: str) -> Job:
        """Put a PDF, PNG or JPEG into the signed-in user's queue (``POST /jobs/upload``):
        ``body`` is a readable binary file of ``size`` bytes, streamed. Returns the held job."""
        response = self._request(
            "POST",
            "/jobs/upload",
            data=body,
            params={"title": title},
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=(self.timeout, max(self.timeout, 300.0)),
        )
        try:
            return Job.from_json(response.json())
        except ValueError as exc:
            raise CloudUnavailable("POST /jobs/upload: the cloud answered non-JSON") from exc
        finally:
            response.close()

    # -- users, cards and groups --------------------------------------------------------------

    def list_users(self) -> list[dict[str, Any]]:
        """Every user (admin, operator; a user gets only themself)."""
        return list(self._json("GET", "/users")["users"])

    def get_user(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", f"/users/{_q(name)}")
        return data

    def create_user(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create a user (admin): ``pin`` and/or ``password``, ``role``, ``display_name``,
        ``email``; Conflict if the name exists. Returns the stored user."""
        self._json("POST", "/users", json_body={"name": name, **fields})
        return self.get_user(name)

    def put_user(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create or change a user (admin): only the ``fields`` given change (role, pin,
        password, display_name, email, disabled). Returns the stored user."""
        data: dict[str, Any] = self._json("PUT", f"/users/{_q(name)}", json_body=fields)
        return data

    def add_card(self, name: str, card: str) -> dict[str, Any]:
        """Register card ``card`` (hex or decimal as read) for user ``name``, approved (admin)."""
        data: dict[str, Any] = self._json(
            "POST", f"/users/{_q(name)}/cards", json_body={"card": card}
        )
        return data

    def get_group(self, name: str) -> list[str]:
        """The members of group ``name``; NotFound if there is none."""
        return [str(m) for m in self._json("GET", f"/groups/{_q(name)}")["members"]]

    def list_groups(self) -> dict[str, list[str]]:
        """Every group that has members, with its members sorted: read from the users'
        ``groups`` (the API has no list of groups)."""
        groups: dict[str, list[str]] = {}
        for user in self.list_users():
            for group in user.get("groups", []):
                groups.setdefault(str(group), []).append(str(user["name"]))
        return {name: sorted(members) for name, members in sorted(groups.items())}

    def delete_group(self, name: str) -> None:
        self._request("DELETE", f"/groups/{_q(name)}").close()

    # -- terminals ----------------------------------------------------------------------------

    def list_terminals(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/terminals")["terminals"])

    def add_terminal(self, name: str, printer: str, methods: list[str]) -> dict[str, Any]:
        """Register a terminal bound to ``printer``; the answer's ``token`` is its secret,
        shown only this once."""
        body = {"name": name, "printer": printer, "methods": methods}
        data: dict[str, Any] = self._json("POST", "/terminals", json_body=body)
        return data

    def delete_terminal(self, name: str) -> None:
        self._request("DELETE", f"/terminals/{_q(name)}").close()

    # -- prices and reports -------------------------------------------------------------------

    def get_prices(self, printer: str) -> dict[str, Any]:
        """A printer's price list: unit, papercut flag and entries (media, color, sides,
        price as a decimal string)."""
        data: dict[str, Any] = self._json("GET", f"/accounting/printers/{_q(printer)}/prices")
        return data

    def put_prices(
        self, printer: str, unit: str, prices: list[dict[str, str]], papercut: bool = False
    ) -> dict[str, Any]:
        """Replace a printer's price list (an empty ``prices`` removes it)."""
        body = {"unit": unit, "prices": prices, "papercut": papercut}
        data: dict[str, Any] = self._json(
            "PUT", f"/accounting/printers/{_q(printer)}/prices", json_body=body
        )
        return data

    def report(self, params: dict[str, str]) -> dict[str, Any]:
        """Printer Usage sums (``group``, ``period`` and the filters user, printer, account,
        since, until in ``params``) with the ids of the transactions they sum."""
        data: dict[str, Any] = self._json("GET", "/accounting/reports", params=params)
        return data

    def transactions(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Printer Usage transactions with their details (filters as in :meth:`report`)."""
        return list(self._json("GET", "/accounting/transactions", params=params)["transactions"])

    def csv(self, what: str, params: dict[str, str]) -> str:
        """``what`` (``reports`` or ``transactions``) as the cloud's CSV text."""
        response = self._request(
            "GET",
            f"/accounting/{what}",
            params={**params, "format": "csv"},
            headers={"Accept": "text/csv"},
        )
        try:
            return response.text
        finally:
            response.close()


# -- the command line's saved sign-in -------------------------------------------------------------

SESSION_ENV = "PULLPRINT_SESSION"


@dataclass(frozen=True)
class SavedSession:
    """A session token kept by ``pullprint login`` for later commands: which cloud, who."""

    url: str
    token: str
    user: str
    role: str
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedSession:
        return cls(
            url=str(data["url"]),
            token=str(data["token"]),
            user=str(data["user"]),
            role=str(data.get("role", "")),
            expires_at=float(data.get("expires_at", 0)),
        )


def session_path() -> Path:
    """Where the saved session lives: ``$PULLPRINT_SESSION``, else
    ``$XDG_CONFIG_HOME/pullprint/session`` (``~/.config/pullprint/session``)."""
    if os.environ.get(SESSION_ENV):
        return Path(os.environ[SESSION_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pullprint" / "session"


def save_session(session: SavedSession, path: Path | None = None) -> Path:
    """Write ``session`` to ``path`` (default :func:`session_path`), mode 0600, atomically
    (temp file in the same folder, then renamed); creates the folder 0700. Returns the path."""
    target = path or session_path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".session.", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(session.to_json(), fh)
        Path(tmp_name).replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return target


def load_session(path: Path | None = None) -> SavedSession | None:
    """The saved session, or None when there is none (or it cannot be read as one)."""
    target = path or session_path()
    try:
        return SavedSession.from_json(json.loads(target.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_session(path: Path | None = None) -> bool:
    """Delete the saved session; True if there was one. Idempotent."""
    try:
        (path or session_path()).unlink()
    except FileNotFoundError:
        return False
    return True
