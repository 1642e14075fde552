"""One exception tree for pullprint. Edges (executables, HTTP handlers) turn these into exit
codes or HTTP answers; library code raises them with ``raise ... from exc``."""

from __future__ import annotations


class PullprintError(Exception):
    """Base of every pullprint error."""


class DocumentError(PullprintError):
    """A document cannot be accepted: unreadable, too large, not a PDF (message names the limit)."""


class CloudError(PullprintError):
    """Talking to the cloud release service failed."""


class CloudUnavailable(CloudError):
    """The cloud did not answer (connection refused, timeout, 5xx): retry later."""


class CloudRefused(CloudError):
    """The cloud answered and refused the request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unauthorized(CloudRefused):
    """401: missing or wrong token."""


class Forbidden(CloudRefused):
    """403: e.g. a wrong PIN, or not the owner."""


class WrongSecret(Forbidden):
    """403: a wrong PIN, password or card (counts towards the user's lockout)."""


class NotFound(CloudRefused):
    """404: no such job, user or printer."""


class Conflict(CloudRefused):
    """409: the job is not in a state that allows this (e.g. already claimed)."""


class InvalidRequest(CloudRefused):
    """400/413/422: the request itself is malformed or over a limit."""


class IPPError(PullprintError):
    """An IPP exchange failed (transport, encoding or a non-successful status)."""


class PrinterUnavailable(IPPError):
    """The printer did not answer or refused the connection: retry later."""
