"""Mapping a CUPS ``job-originating-user-name`` (only a claim) to a pullprint user name.

Rules apply in order: strip a Windows or Kerberos domain (``DOM\\alice``, ``alice@REALM``), lower
case, then the alias table. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NameRules:
    strip_domain: bool = True
    lower_case: bool = True
    aliases: dict[str, str] = field(default_factory=dict)  # mapped name -> pullprint user


def map_user_name(claimed: str, rules: NameRules) -> str:
    """The pullprint user name for a CUPS job's user name under ``rules``."""
    name = claimed.strip()
    if rules.strip_domain:
        name = name.rsplit("\\", 1)[-1].split("@", 1)[0]
    if rules.lower_case:
        name = name.lower()
    return rules.aliases.get(name, name)
