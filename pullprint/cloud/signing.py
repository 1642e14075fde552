"""Signed, time-limited, single-use download URLs, bound to one job and one node.

A URL carries ``node``, ``expires`` (epoch seconds), a random ``nonce`` and ``sig`` = HMAC-SHA256
over the job's uuid, the node, the expiry and the nonce. The server checks the signature in
constant time, the expiry against its clock, that the path's job and the calling node are the ones
signed, and then uses the nonce up (a row in ``download_nonces``; a second use is a replay).
Every refusal is logged with its reason, never with the signature.

The key is ``cloud.download_signing_key`` or, when that is empty, one made once and kept in the
database (``settings``), so every server process on the database signs alike.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud.db import download_nonces, settings
from pullprint.errors import Forbidden

log = logging.getLogger(__name__)

_KEY_SETTING = "download_signing_key"
_PARAMS = ("node", "expires", "nonce", "sig")


@dataclass(frozen=True)
class SignedParams:
    node: str
    expires: int
    nonce: str
    sig: str


def load_key(engine: Engine, configured: str) -> bytes:
    """The signing key: ``configured`` if set, else the one kept in the database (made and
    stored on first use, race-free across processes)."""
    if configured:
        return configured.encode()
    for _attempt in range(3):
        with engine.connect() as conn:
            found = conn.execute(
                sa.select(settings.c.value).where(settings.c.name == _KEY_SETTING)
            ).scalar_one_or_none()
        if found:
            return bytes.fromhex(found)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.insert(settings).values(name=_KEY_SETTING, value=secrets.token_hex(32))
                )
        except IntegrityError:
            continue
    raise RuntimeError("could not read or create the download signing key")


class UrlSigner:
    """Makes and checks download URLs (paths with a query, relative to the server)."""

    def __init__(
        self, engine: Engine, key: bytes, ttl: int, clock: Callable[[], float], prefix: str
    ) -> None:
        self._engine = engine
        self._key = key
        self.ttl = ttl
        self._clock = clock
        self._prefix = prefix

    def _mac(self, uuid: str, node: str, expires: int, nonce: str) -> str:
        message = f"{uuid}\n{node}\n{expires}\n{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, uuid: str, node: str) -> str:
        """A fresh URL path for job ``uuid`` and node ``node``, valid ``ttl`` seconds, once."""
        expires = int(self._clock()) + self.ttl
        nonce = secrets.token_urlsafe(18)
        query = urlencode(
            {
                "node": node,
                "expires": str(expires),
                "nonce": nonce,
                "sig": self._mac(uuid, node, expires, nonce),
            }
        )
        return f"{self._prefix}/jobs/{quote(uuid, safe='')}/document?{query}"

    @staticmethod
    def params(query: Mapping[str, str]) -> SignedParams | None:
        """The signature parameters of a request's query, None if any is missing or malformed."""
        values = [query.get(k) for k in _PARAMS]
        node, expires, nonce, sig = values
        if node is None or expires is None or nonce is None or sig is None:
            return None
        if not expires.isdigit() or len(expires) > 12 or not 1 <= len(nonce) <= 64:
            return None
        if len(sig) != 64:
            return None
        return SignedParams(node, int(expires), nonce, sig)

    def check(self, uuid: str, caller_node: str, params: SignedParams | None) -> None:
        """Accept the URL once, or raise Forbidden (403) and log why. Uses the nonce up."""
        reason = self._reason(uuid, caller_node, params)
        if reason is None:
            assert params is not None
            now = self._clock()
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        sa.insert(download_nonces).values(
                            nonce=params.nonce,
                            job_uuid=uuid,
                            node=caller_node,
                            expires_at=float(params.expires),
                            used_at=now,
                        )
                    )
                return
            except IntegrityError:
                reason = "replayed (the URL was used already)"
        log.warning("refused a download of job %s by node %s: %s", uuid, caller_node or "-", reason)
        raise Forbidden(403, f"the download URL is not valid: {reason}")

    def _reason(self, uuid: str, caller_node: str, params: SignedParams | None) -> str | None:
        if params is None:
            return (
                "a signed URL is needed (the claim answers with download_url; "
                "POST /jobs/{uuid}/download-url gives a fresh one)"
            )
        expected = self._mac(uuid, params.node, params.expires, params.nonce)
        if not hmac.compare_digest(expected, params.sig):
            return "bad signature (forged, or signed for another job)"
        if params.node != caller_node:
            return f"signed for node {params.node}, not for this node"
        if params.expires < self._clock():
            return "expired"
        return None

    def prune(self, now: float) -> int:
        """Forget used nonces whose URLs have expired (they fail on expiry anyway)."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.delete(download_nonces).where(download_nonces.c.expires_at < now)
            )
        return int(done.rowcount or 0)
