"""A small client of the accounting API (``/api/v1/accounting``), for tests, tools and the CLI.

``session`` is injected or made here; only a session made here is closed by ``close``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests


class AccountingError(RuntimeError):
    """The accounting API answered another status than expected (message: status and body)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class AccountingClient:
    """``/api/v1/accounting`` at ``base_url`` with one bearer ``token``."""

    def __init__(self, base_url: str, token: str, session: requests.Session | None = None) -> None:
        self.base = f"{base_url.rstrip('/')}/api/v1/accounting"
        self._token = token
        self._own = session is None
        self.session = session if session is not None else requests.Session()

    def close(self) -> None:
        """Close the session if this client made it (idempotent)."""
        if self._own:
            self.session.close()

    def __enter__(self) -> AccountingClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """Send a request; AccountingError unless the status is ``expect``. JSON answers are
        parsed, others returned as text."""
        headers = {"Authorization": f"Bearer {self._token}"}
        answer = self.session.request(
            method, f"{self.base}{path}", timeout=15, headers=headers, **kwargs
        )
        with answer:
            if answer.status_code != expect:
                raise AccountingError(answer.status_code, answer.text)
            if answer.headers.get("content-type", "").startswith("application/json"):
                return answer.json()
            return answer.text

    def printout(self, uuid: str) -> dict[str, Any]:
        """The print-out view of a job: status, Printer Usage transaction, summary."""
        result = self.request("GET", f"/printouts/{uuid}")
        assert isinstance(result, dict)
        return result

    def wait_printout(
        self, uuid: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll the print-out view until ``ok(view)``; TimeoutError with the last view."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.printout(uuid)
            if ok(view):
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"print-out {uuid} still {view}")
            time.sleep(0.1)
