from __future__ import annotations

import pytest

from pullprint.identity.cards import CardError, card_key
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
