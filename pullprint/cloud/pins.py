"""PIN hashes: HMAC-SHA256 under a server key that the database never holds.

A PIN has 4 to 8 digits, so at most 10^8 values: no hash cost a release can pay keeps them from
someone who has the database and can compute the hash (argon2id at 8 MiB, ~7 ms a check here,
gives a 4-digit PIN away in about a minute of one core, a 6-digit one in a few hours). So a PIN's
hash is keyed instead: ``HMAC-SHA256(key, salt || PIN)`` with a random 256-bit key kept in a file
(``cloud.pin_key_file``, mode 0600, made at the first start). A copy of the database alone (a
backup, an injected query) then gives no PIN away, however much is computed; with the key file
too it does, as it would have with argon2. Guessing online is what the lockout stops. A check
costs microseconds, where argon2 cost ~7 ms of CPU and a hop to a hashing thread per release.
Passwords stay argon2id (pullprint.cloud.users): people reuse them, and they can be long.

Form: ``$pullprint-hmac-sha256$<key id>$<salt>$<mac>`` (key id: the first 8 hex digits of the
key's SHA-256; salt and mac in unpadded base64). A hash made under another key does not verify
(:class:`OtherKey`). Older PIN hashes (argon2id) still verify, in pullprint.cloud.users, and are
replaced by a keyed one at the user's next correct PIN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pullprint.config import ConfigError

PREFIX = "$pullprint-hmac-sha256$"
KEY_BYTES = 32
SALT_BYTES = 16


class OtherKey(Exception):
    """The hash was made under another key (another pin_key_file): it cannot be checked."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def is_keyed(digest: str) -> bool:
    return digest.startswith(PREFIX)


class PinHasher:
    """Makes and checks keyed PIN hashes. Pure: no I/O, safe from any thread."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a PIN key has at least {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def _mac(self, salt: bytes, pin: str) -> bytes:
        return hmac.new(self._key, salt + pin.encode("utf-8"), hashlib.sha256).digest()

    def hash(self, pin: str) -> str:
        """A new hash of ``pin`` (a fresh salt each time: equal PINs hash differently)."""
        salt = secrets.token_bytes(SALT_BYTES)
        return f"{PREFIX}{self.key_id}${_b64(salt)}${_b64(self._mac(salt, pin))}"

    def verify(self, digest: str, pin: str) -> bool:
        """True if ``pin`` matches ``digest`` (constant time in the PIN). Raises OtherKey for a
        hash made under another key, ValueError for one that is not a keyed PIN hash."""
        if not is_keyed(digest):
            raise ValueError("not a keyed PIN hash")
        key_id, salt, mac = digest[len(PREFIX) :].split("$")
        if key_id != self.key_id:
            raise OtherKey(f"made under key {key_id}, this server has key {self.key_id}")
        return hmac.compare_digest(self._mac(_unb64(salt), pin), _unb64(mac))


def load_key(path: Path) -> bytes:
    """The PIN key in ``path`` (hex), made there (random, mode 0600) when the file is missing.
    Several server processes starting at once make one key: the file appears whole, once.
    Raises ConfigError naming cloud.pin_key_file when the file cannot be used."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # whole or not at all; the first of several processes wins
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cloud.pin_key_file: cannot create {path}: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cloud.pin_key_file: cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"cloud.pin_key_file: {path} is mode {mode & 0o777:o}; it holds the PIN key, make "
            "it readable by the server only (chmod 600)"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ConfigError(
            f"cloud.pin_key_file: {path} does not hold a key of {KEY_BYTES} bytes in hex "
            f"(a new one: python3 -c 'import secrets; print(secrets.token_hex({KEY_BYTES}))')"
        )
    return key
