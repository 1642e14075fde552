from __future__ import annotations

import logging

import pytest

from pullprint.identity.cards import CardError, card_key
from pullprint.identity.lockout import Lockout, LockoutPolicy
from pullprint.identity.names import NameRules, map_user_name


def test_one_card_one_key_in_every_form() -> None:
    uid = bytes.fromhex("04a3b2c1")
    forms = [
        "04A3B2C1",
        "04:a3:b2:c1",
        "0x04a3b2c1",
        "C1B2A304",  # the other byte order
        str(int.from_bytes(uid, "big")),  # decimal, big-endian
        str(int.from_bytes(uid, "little")),  # decimal, little-endian
        " 04-A3-B2-C1 ",
    ]
    assert len({card_key(form) for form in forms}) == 1
    assert card_key("04A3B2C1") != card_key("04A3B2C2")


@pytest.mark.parametrize("raw", ["", "xyz", "12;rm -rf /", "f" * 40])
def test_bad_card_numbers(raw: str) -> None:
    with pytest.raises(CardError):
        card_key(raw)


def test_user_name_rules() -> None:
    rules = NameRules(aliases={"administrator": "root"})
    assert map_user_name("CORP\\Alice", rules) == "alice"
    assert map_user_name("alice@EXAMPLE.ORG", rules) == "alice"
    assert map_user_name("Administrator", rules) == "root"
    assert map_user_name("Bob", NameRules(lower_case=False)) == "Bob"


def test_lockout_on_an_injected_clock(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    lockout = Lockout(LockoutPolicy(max_failures=5, lock_seconds=900), clock=lambda: now[0])
    for _ in range(4):
        assert lockout.failure("alice") == 0
    lockout.success("alice")  # a success starts the count again
    for _ in range(4):
        lockout.failure("alice")
    with caplog.at_level(logging.WARNING):
        assert lockout.failure("alice") == 900
    assert "alice locked" in caplog.text
    now[0] += 899
    assert lockout.locked_for("alice") == pytest.approx(1)
    now[0] += 2
    assert lockout.locked_for("alice") == 0


def test_noisy_terminal_is_slowed_down() -> None:
    lockout = Lockout(LockoutPolicy(max_failures=1000, terminal_free_failures=3))
    for i in range(3):
        lockout.failure(f"user{i}", terminal="t1")
    assert lockout.terminal_delay("t1") == 0
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 1.0
    for _ in range(10):
        lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 30.0
    assert lockout.terminal_delay("t2") == 0


def test_a_quiet_terminal_is_forgiven_on_the_clock() -> None:
    now = [0.0]
    lockout = Lockout(
        LockoutPolicy(max_failures=1000, terminal_free_failures=1, terminal_quiet_seconds=600),
        clock=lambda: now[0],
    )
    for _ in range(4):
        lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 4.0
    now[0] += 599
    assert lockout.terminal_delay("t1") == 4.0  # still noisy
    lockout.failure("x", terminal="t1")
    now[0] += 600  # ten quiet minutes after its last failure
    assert lockout.terminal_delay("t1") == 0
    lockout.failure("x", terminal="t1")
    assert lockout.terminal_delay("t1") == 0  # counting starts again
