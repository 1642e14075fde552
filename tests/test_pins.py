"""Keyed PIN hashes (pullprint.cloud.pins): HMAC-SHA256 under a key file that the database never
holds; older argon2id PIN hashes still verify and become keyed at the next correct PIN."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from pullprint.cloud import db, pins
from pullprint.cloud.users import PIN_HASHER, UserDirectory
from pullprint.config import ConfigError


def test_a_keyed_hash_checks_the_pin_and_nothing_else() -> None:
    hasher = pins.PinHasher(b"k" * 32)
    first, second = hasher.hash("1234"), hasher.hash("1234")
    assert first != second  # a salt of its own each time
    assert first.startswith(f"$pullprint-hmac-sha256${hasher.key_id}$")
    assert "1234" not in first
    assert hasher.verify(first, "1234") and hasher.verify(second, "1234")
    assert not hasher.verify(first, "1235") and not hasher.verify(first, "")
    with pytest.raises(pins.OtherKey):
        pins.PinHasher(b"o" * 32).verify(first, "1234")
    with pytest.raises(ValueError):
        hasher.verify(PIN_HASHER.hash("1234"), "1234")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        pins.PinHasher(b"short")


def test_the_key_file_is_made_once_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pin.key"
    key = pins.load_key(path)
    assert len(key) == pins.KEY_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    assert pins.load_key(path) == key  # kept
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"cloud.pin_key_file: .* is mode 640.*chmod 600"):
        pins.load_key(path)
    path.chmod(0o600)
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="does not hold a key of 32 bytes"):
        pins.load_key(path)


def test_processes_starting_at_once_make_one_key(tmp_path: Path) -> None:
    path = tmp_path / "pin.key"
    code = (
        "import sys; from pathlib import Path; from pullprint.cloud import pins\n"
        "print(pins.load_key(Path(sys.argv[1])).hex())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert keys == {pins.load_key(path).hex()}
    assert [p.name for p in tmp_path.iterdir()] == ["pin.key"]  # no temp file left


def _stored(engine: sa.Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.select(db.users.c.pin_hash).where(db.users.c.name == name)).scalar_one()
        )


def test_an_argon2_pin_hash_verifies_and_becomes_keyed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    db.upgrade(engine)
    key = pins.load_key(tmp_path / "pin.key")
    users = UserDirectory(engine, pin_key=key)
    users.add("alice", "1234")
    assert pins.is_keyed(_stored(engine, "alice"))
    with engine.begin() as conn:  # a PIN hash from before PINs were keyed
        conn.execute(
            sa.update(db.users)
            .where(db.users.c.name == "alice")
            .values(pin_hash=PIN_HASHER.hash("1234"))
        )
    assert not users.verify("alice", "1235")
    assert _stored(engine, "alice").startswith("$argon2id$")  # a wrong PIN changes nothing
    assert users.verify("alice", "1234")
    upgraded = _stored(engine, "alice")
    assert pins.is_keyed(upgraded)
    assert users.verify("alice", "1234") and not users.verify("alice", "0000")
    assert _stored(engine, "alice") == upgraded
    assert not users.verify("nobody", "1234")

    # The database without its key file checks no PIN: another key gives False, and says why.
    other = UserDirectory(engine, pin_key=b"x" * 32)
    with caplog.at_level(logging.WARNING, logger="pullprint.cloud.users"):
        assert not other.verify("alice", "1234")
    assert "the PIN hash of user alice cannot be checked: made under key" in caplog.text
    assert UserDirectory(engine, pin_key=pins.load_key(tmp_path / "pin.key")).verify(
        "alice", "1234"
    )
