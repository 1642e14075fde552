"""What the node needs to know about a printer before sending: its protocol (from the URI
scheme), its capabilities (Get-Printer-Attributes for IPP, the administrator's profile for LPR
and raw 9100), and how to fetch a claimed job's document.

Protocols: ``ipp://`` and ``ipps://`` -> "ipp"; ``lpd://host[:port]/queue`` -> "lpr";
``socket://host[:port]`` -> "socket" (the finishing plan's transport names).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pullprint.cloudsync.client import CloudClient
from pullprint.config import ConfigError
from pullprint.errors import IPPError, PrinterUnavailable
from pullprint.filters.capabilities import (
    PrinterCapabilities,
    RawPrinterSpec,
    capabilities_from_response,
    raw_capabilities,
)
from pullprint.filters.plan import Transport
from pullprint.ipp.client import CONTENT_TYPE, http_url
from pullprint.ipp.encoding import IppAttribute, Operation, encode_request
from pullprint.model import Job

log = logging.getLogger(__name__)

SCHEMES: dict[str, Transport] = {"ipp": "ipp", "ipps": "ipp", "lpd": "lpr", "socket": "socket"}
_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def protocol_of(uri: str) -> Transport:
    """The transport for a printer URI. Pure; raises IPPError for an unknown scheme."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in SCHEMES:
        raise IPPError(f"no delivery for printer URI scheme {scheme!r} ({uri})")
    return SCHEMES[scheme]


def parse_profile(text: str, key: str = "node.raw_profiles") -> RawPrinterSpec:
    """A raw/LPR printer profile, e.g. ``"formats=application/pdf application/postscript,
    duplex=yes, color=no, pjl=yes, media=iso_a4_210x297mm"``. Pure; ConfigError names the key."""
    spec = RawPrinterSpec()
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise ConfigError(f"{key}: expected name=value, got {part!r}")
        if name in ("duplex", "color", "pjl"):
            if value.lower() not in _YES:
                raise ConfigError(f"{key}: {name} must be yes or no, got {value!r}")
            values[name] = _YES[value.lower()]
        elif name == "formats":
            values["document_formats"] = tuple(value.split())
        elif name == "media":
            values["media"] = tuple(value.split())
        else:
            raise ConfigError(f"{key}: unknown profile item {name!r}")
    return RawPrinterSpec(**{**spec.__dict__, **values})


def raw_printer_capabilities(profiles: dict[str, str], printer: str) -> PrinterCapabilities:
    """The profile of an LPR or raw printer from the node config; PDF with PJL by default."""
    text = profiles.get(printer)
    spec = RawPrinterSpec() if text is None else parse_profile(text, f"node.raw_profiles.{printer}")
    return raw_capabilities(spec, printer)


def ipp_capabilities(
    uri: str, name: str, session: requests.Session, verify: bool | str = True
) -> PrinterCapabilities:
    """Get-Printer-Attributes (all) -> capabilities. Changes nothing. Raises
    PrinterUnavailable when the printer does not answer, IPPError when it refuses."""
    body = encode_request(
        Operation.GET_PRINTER_ATTRIBUTES,
        1,
        [
            IppAttribute.uri("printer-uri", uri),
            IppAttribute.name_("requesting-user-name", "pullprint"),
            IppAttribute.keyword("requested-attributes", "all", "media-col-database"),
        ],
    )
    try:
        response = session.post(
            http_url(uri),
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
            timeout=30,
            verify=verify,
        )
    except requests.exceptions.SSLError as exc:
        raise IPPError(f"Get-Printer-Attributes to {uri}: TLS failed: {exc}") from exc
    except requests.RequestException as exc:
        raise PrinterUnavailable(f"Get-Printer-Attributes to {uri}: {exc}") from exc
    with response:
        if response.status_code != 200:
            raise PrinterUnavailable(
                f"Get-Printer-Attributes to {uri}: HTTP {response.status_code}"
            )
        data = response.content
    try:
        return capabilities_from_response(data, name=name)
    except (ValueError, KeyError) as exc:
        raise IPPError(f"Get-Printer-Attributes to {uri}: bad answer: {exc}") from exc


def download_document(cloud: CloudClient, job: Job, dest: Path, *, fresh: bool = False) -> int:
    """Stream the claimed job's document to ``dest`` (atomically); returns its size.

    The client uses the signed URL kept from the claim, or a fresh one (after a restart the
    claim's single-use URL is gone: ``fresh`` asks for a new one at once). Raises CloudError.
    """
    if fresh:
        return cloud.download(job.uuid, dest, cloud.download_url(job.uuid))
    return cloud.download(job.uuid, dest, job.download_url)
