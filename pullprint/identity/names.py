"""Mapping a CUPS ``job-originating-user-name`` (only a claim) to a pullprint user name.

Rules apply in order: an alias for the whole claim (``EXAMPLE\\jdoe`` -> ``john``), strip a
Windows or Kerberos domain (``DOM\\alice``, ``alice@REALM``), lower case, then an alias for the
result. Pure functions; the node's backend applies them before it registers a job, and the cloud
then checks that the result is a known, enabled user (``cloud.unknown_user`` says what happens
when it is not).

The alias table comes from the configuration (``node.user_aliases``). A directory attribute (an
LDAP ``sAMAccountName`` or ``userPrincipalName`` that differs from the pullprint name) is not
read here yet: the directory sync can fill the same table later, from the attribute it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class NameRules:
    strip_domain: bool = True
    lower_case: bool = True
    aliases: dict[str, str] = field(default_factory=dict)  # claim or mapped name -> pullprint user


class _NameSettings(Protocol):
    @property
    def user_strip_domain(self) -> bool: ...

    @property
    def user_lower_case(self) -> bool: ...

    @property
    def user_aliases(self) -> Mapping[str, str]: ...


def rules_from(config: _NameSettings) -> NameRules:
    """The rules a node's configuration sets (``node.user_strip_domain``, ``user_lower_case``,
    ``user_aliases``). Alias keys are matched as written and, with ``user_lower_case``, in
    lower case."""
    aliases = dict(config.user_aliases)
    if config.user_lower_case:
        aliases = {**{k.lower(): v for k, v in aliases.items()}, **aliases}
    return NameRules(config.user_strip_domain, config.user_lower_case, aliases)


def strip_domain(name: str) -> str:
    """``DOM\\alice`` and ``alice@REALM`` -> ``alice``; a name that would become empty is kept."""
    bare = name.rsplit("\\", 1)[-1].split("@", 1)[0]
    return bare or name


def map_user_name(claimed: str, rules: NameRules) -> str:
    """The pullprint user name for a CUPS job's user name under ``rules``. Idempotent for a
    name that is already a mapped one (no domain, lower case, not an alias key)."""
    name = claimed.strip()
    for key in (name, name.lower()) if rules.lower_case else (name,):
        if key in rules.aliases:
            return rules.aliases[key]
    if rules.strip_domain:
        name = strip_domain(name)
    if rules.lower_case:
        name = name.lower()
    return rules.aliases.get(name, name)
