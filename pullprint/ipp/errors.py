"""The IPP layer's errors: children of :class:`pullprint.errors.IPPError` (one base to catch)."""

from __future__ import annotations

from pullprint.errors import IPPError, PrinterUnavailable


class IppDecodeError(IPPError):
    """Bytes that are not a well-formed IPP message (truncated, hostile or not IPP at all)."""


class IppEncodeError(IPPError):
    """A value that cannot be put into an IPP request (wrong type, out of range, too long)."""


class IppStatusError(IPPError):
    """The printer answered with a non-successful IPP status code.

    ``status_code`` is the number, ``status_name`` its RFC 8011 keyword (e.g.
    ``client-error-not-found``) and ``status_message`` the printer's own ``status-message`` text.
    """

    def __init__(self, status_code: int, status_name: str, status_message: str = "") -> None:
        text = f"{status_name} (0x{status_code:04x})"
        if status_message:
            text += f": {status_message}"
        super().__init__(text)
        self.status_code = status_code
        self.status_name = status_name
        self.status_message = status_message


class IppPrinterBusy(IppStatusError, PrinterUnavailable):
    """A non-successful status that means "try again later" (busy, not accepting jobs, ...)."""


class IppCanceled(IPPError):
    """The caller's cancel event was set while a document was being sent."""
