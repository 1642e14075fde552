"""pullprint's own IPP/1.1 client layer (RFC 8010 encoding, RFC 8011 operations).

- :mod:`pullprint.ipp.encoding`: pure encode/decode functions and the typed message model.
- :mod:`pullprint.ipp.client`: :class:`IppClient` over an injectable ``requests.Session``.
- :mod:`pullprint.ipp.errors`: the IPP errors, all children of :class:`pullprint.errors.IPPError`.
"""

from __future__ import annotations

from pullprint.ipp.client import IppClient, IppJobState, JobStatus, PrinterAttributes
from pullprint.ipp.encoding import (
    GroupTag,
    IppAttribute,
    IppCollection,
    IppMessage,
    IppRange,
    IppResolution,
    Operation,
    Tag,
    decode_message,
    encode_message,
    encode_request,
)
from pullprint.ipp.errors import (
    IppCanceled,
    IppDecodeError,
    IppEncodeError,
    IppPrinterBusy,
    IppStatusError,
)

__all__ = [
    "GroupTag",
    "IppAttribute",
    "IppCanceled",
    "IppClient",
    "IppCollection",
    "IppDecodeError",
    "IppEncodeError",
    "IppJobState",
    "IppMessage",
    "IppPrinterBusy",
    "IppRange",
    "IppResolution",
    "IppStatusError",
    "JobStatus",
    "Operation",
    "PrinterAttributes",
    "Tag",
    "decode_message",
    "encode_message",
    "encode_request",
]
