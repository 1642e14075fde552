"""Users and groups synced from an LDAP directory, scheduled and on demand.

:func:`read_directory` binds with ``[directory]`` (``pullprint.config.DirectoryConfig``) and reads
users and groups with paged searches (RFC 2696, ldap3) into a typed :class:`DirectorySnapshot`;
it changes nothing. Card numbers are turned into card keys (``identity.cards.card_key``) as they
are read, so a card typed in hex or in decimal is one key. :func:`apply_snapshot` writes a
snapshot into the cloud's users and groups (source ``"ldap"``) and disables, never deletes, the
directory users that are gone: their jobs and transactions stay. :class:`DirectorySync` runs
both on a schedule (``sync_seconds``) on an injected clock, or on demand.

The bind password is never logged, nor are PINs; errors are :class:`DirectoryError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pullprint.config import DirectoryConfig
from pullprint.errors import NotFound, PullprintError
from pullprint.identity.cards import CardError, card_key

log = logging.getLogger(__name__)

SOURCE = "ldap"
MAX_NAME = 64
_PIN = re.compile(r"[0-9]{4,8}")


class DirectoryError(PullprintError):
    """The directory could not be read (unreachable, bind refused, bad search), or a snapshot
    may not be applied. The message never holds the bind password."""


# -- what the directory holds ------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryUser:
    name: str
    display_name: str
    email: str
    cards: tuple[str, ...]  # card keys (identity.cards.card_key), sorted, unique
    pin: str | None  # 4 to 8 digits, or None when the directory holds none (or a bad one)
    groups: tuple[str, ...]  # the groups (of this snapshot) the user is a member of, sorted
    dn: str = ""
    aliases: tuple[str, ...] = ()  # other names (alias_attribute), lower-case, sorted, unique


@dataclass(frozen=True)
class DirectoryGroup:
    name: str
    members: tuple[str, ...]  # user names (of this snapshot's users), sorted
    dn: str = ""


@dataclass(frozen=True)
class DirectorySnapshot:
    users: tuple[DirectoryUser, ...]
    groups: tuple[DirectoryGroup, ...]
    skipped: tuple[str, ...] = ()  # entries or values left out, and why (no secrets)

    def user(self, name: str) -> DirectoryUser:
        """The user ``name``; KeyError if the snapshot has none."""
        for user in self.users:
            if user.name == name:
                return user
        raise KeyError(name)


@dataclass(frozen=True)
class SyncResult:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    disabled: tuple[str, ...]
    groups: tuple[str, ...]  # the groups written (created or members replaced)
    skipped: tuple[str, ...] = ()  # users not written, and why (e.g. a local user of that name)
    unchanged: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "updated": list(self.updated),
            "disabled": list(self.disabled),
            "groups": list(self.groups),
            "skipped": list(self.skipped),
            "unchanged": self.unchanged,
        }


# -- reading (ldap3) ---------------------------------------------------------------------------


def _norm_dn(dn: str) -> str:
    """A DN for comparison: lower case, no spaces around ``,`` and ``=``."""
    return ",".join(
        "=".join(part.strip() for part in rdn.split("=", 1)) for rdn in dn.lower().split(",")
    )


def _values(attributes: dict[str, list[str]], name: str) -> list[str]:
    return attributes.get(name.lower(), []) if name else []


def _first(attributes: dict[str, list[str]], name: str) -> str:
    found = _values(attributes, name)
    return found[0].strip() if found else ""


def _decoded(raw: Any) -> dict[str, list[str]]:
    """raw_attributes (bytes values) -> lower-cased name -> UTF-8 values."""
    out: dict[str, list[str]] = {}
    for key, values in dict(raw).items():
        items = values if isinstance(values, list | tuple) else [values]
        out[str(key).lower()] = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items
        ]
    return out


def _connect(cfg: DirectoryConfig) -> Any:
    """An open, bound, read-only ldap3 connection; DirectoryError if it cannot be had."""
    import ldap3
    from ldap3.core.exceptions import LDAPException

    conn: Any = None
    try:
        # ldap3's default Tls() checks no certificate: require one, and the host name.
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.tls_ca_file or None)
        server = ldap3.Server(
            cfg.url, get_info=ldap3.NONE, connect_timeout=cfg.timeout_seconds, tls=tls
        )
        conn = ldap3.Connection(
            server,
            user=cfg.bind_dn or None,
            password=cfg.bind_password or None,
            read_only=True,
            raise_exceptions=True,
            receive_timeout=max(1, math.ceil(cfg.timeout_seconds)),  # ldap3 wants an int
            auto_bind=ldap3.AUTO_BIND_NONE,
        )
        conn.open()
        if cfg.start_tls:
            conn.start_tls()
        conn.bind()
    except (LDAPException, ssl.SSLError, OSError) as exc:
        if conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()  # close the socket now, not at garbage collection
        who = cfg.bind_dn or "anonymous"
        raise DirectoryError(
            f"directory {cfg.url}: cannot bind as {who}: {type(exc).__name__}: {exc}"
        ) from exc
    return conn


def _search(
    conn: Any, cfg: DirectoryConfig, base: str, query: str, attributes: list[str]
) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """(dn, attributes) of each entry under ``base`` matching ``query``, page by page."""
    import ldap3
    from ldap3.core.exceptions import LDAPException

    try:
        for entry in conn.extend.standard.paged_search(
            search_base=base,
            search_filter=query,
            search_scope=ldap3.SUBTREE,
            attributes=sorted(set(attributes)),
            paged_size=cfg.page_size,
            generator=True,
        ):
            if entry.get("type") == "searchResEntry":
                yield str(entry["dn"]), _decoded(entry.get("raw_attributes", {}))
    except LDAPException as exc:
        raise DirectoryError(
            f"directory {cfg.url}: search {query} under {base} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= MAX_NAME and name.isprintable() and "/" not in name


def read_directory(cfg: DirectoryConfig) -> DirectorySnapshot:
    """Bind and read the users (``user_filter`` under ``base_dn``) and groups (``group_filter``
    under ``group_base`` or ``base_dn``) with paged searches. Changes nothing. Entries without a
    usable name, bad card numbers and bad PINs are left out and listed in ``skipped`` (a PIN's
    value never is). DirectoryError if the directory cannot be bound or searched."""
    if not cfg.url:
        raise DirectoryError("directory.url is empty: directory sync is off")
    user_attrs = [
        a
        for a in (
            cfg.name_attribute,
            cfg.display_name_attribute,
            cfg.email_attribute,
            cfg.card_attribute,
            cfg.pin_attribute,
            cfg.alias_attribute,
        )
        if a
    ]
    group_attrs = [cfg.group_name_attribute, *cfg.member_attributes]
    skipped: list[str] = []
    by_name: dict[str, dict[str, Any]] = {}
    dn_to_name: dict[str, str] = {}
    conn = _connect(cfg)
    try:
        for dn, attrs in _search(conn, cfg, cfg.base_dn, cfg.user_filter, user_attrs):
            name = _first(attrs, cfg.name_attribute)
            if not _valid_name(name):
                skipped.append(f"{dn}: no usable {cfg.name_attribute}")
                continue
            if name in by_name:
                skipped.append(f"{dn}: {cfg.name_attribute} {name} is taken by another entry")
                continue
            cards: set[str] = set()
            for raw in _values(attrs, cfg.card_attribute):
                try:
                    cards.add(card_key(raw))
                except CardError as exc:
                    skipped.append(f"{dn}: card number left out: {exc}")
            pin = _first(attrs, cfg.pin_attribute) or None
            if pin is not None and not _PIN.fullmatch(pin):
                skipped.append(f"{dn}: PIN left out (not 4 to 8 digits)")
                pin = None
            by_name[name] = {
                "name": name,
                "display_name": _first(attrs, cfg.display_name_attribute),
                "email": _first(attrs, cfg.email_attribute),
                "cards": tuple(sorted(cards)),
                "pin": pin,
                "dn": dn,
                "aliases": tuple(
                    sorted(
                        {
                            a.strip().lower()
                            for a in _values(attrs, cfg.alias_attribute)
                            if _valid_name(a.strip()) and a.strip().lower() != name
                        }
                    )
                ),
            }
            dn_to_name[_norm_dn(dn)] = name
        groups: list[DirectoryGroup] = []
        base = cfg.group_base or cfg.base_dn
        for dn, attrs in _search(conn, cfg, base, cfg.group_filter, group_attrs):
            gname = _first(attrs, cfg.group_name_attribute)
            if not _valid_name(gname):
                skipped.append(f"{dn}: no usable {cfg.group_name_attribute}")
                continue
            members: set[str] = set()
            for attr in cfg.member_attributes:
                for value in _values(attrs, attr):
                    member = dn_to_name.get(_norm_dn(value)) if "=" in value else value.strip()
                    if member in by_name:
                        members.add(member)
            groups.append(DirectoryGroup(gname, tuple(sorted(members)), dn))
    finally:
        conn.unbind()
    member_of: dict[str, set[str]] = {}
    for group in groups:
        for member in group.members:
            member_of.setdefault(member, set()).add(group.name)
    users = tuple(
        DirectoryUser(groups=tuple(sorted(member_of.get(n, ()))), **fields)
        for n, fields in sorted(by_name.items())
    )
    log.info(
        "directory %s: %d users, %d groups, %d left out",
        cfg.url,
        len(users),
        len(groups),
        len(skipped),
    )
    for why in skipped:
        log.warning("directory: %s", why)
    return DirectorySnapshot(users, tuple(sorted(groups, key=lambda g: g.name)), tuple(skipped))


# -- writing into the cloud --------------------------------------------------------------------


class UserStore(Protocol):
    """What :func:`apply_snapshot` needs of ``pullprint.cloud.users.UserDirectory``."""

    def upsert(
        self,
        name: str,
        *,
        display_name: str = "",
        email: str = "",
        source: str = "local",
        role: str | None = None,
        pin: str | None = None,
        password: str | None = None,
        disabled: bool = False,
    ) -> bool: ...

    def set_cards(self, name: str, card_keys: list[str], source: str) -> None: ...

    def set_aliases(self, name: str, aliases: list[str], source: str) -> None: ...

    def names(self, source: str | None = None) -> list[str]: ...

    def disable(self, name: str, disabled: bool = True) -> None: ...

    def verify(self, name: str, pin: str) -> bool: ...

    def get(self, name: str) -> Any: ...


class GroupStore(Protocol):
    """What :func:`apply_snapshot` needs of ``pullprint.cloud.groups.Groups``."""

    def put(self, name: str, members: list[str]) -> list[str]: ...


def _stored(users: UserStore, name: str) -> Any | None:
    try:
        return users.get(name)
    except NotFound:
        return None


def apply_snapshot(
    users: UserStore,
    groups: GroupStore,
    snapshot: DirectorySnapshot,
    *,
    disable_missing: bool = True,
    source: str = SOURCE,
) -> SyncResult:
    """Write ``snapshot`` into the cloud: create or update each user as ``source`` (display
    name, email, enabled; the PIN when the directory holds one and it differs; the cards of
    ``source`` made exactly the snapshot's), replace each group's members, and with
    ``disable_missing`` disable the users of ``source`` the snapshot no longer has (never
    deleted: their jobs and transactions stay). A user of that name from another source (a
    local user) is not touched and is listed in ``skipped``. Idempotent: a second run with the
    same snapshot changes nothing. DirectoryError (before any change) for an empty snapshot
    while users of ``source`` exist: a wrong filter must not disable everyone."""
    known = set(users.names(source=source))
    if disable_missing and not snapshot.users and known:
        raise DirectoryError(
            f"the directory returned no users; refusing to disable the {len(known)} "
            f"users synced from it (check directory.base_dn and directory.user_filter)"
        )
    added: list[str] = []
    updated: list[str] = []
    skipped: list[str] = []
    unchanged = 0
    written: set[str] = set()
    for du in snapshot.users:
        old = _stored(users, du.name)
        if old is not None and old.source != source:
            skipped.append(f"{du.name}: a {old.source} user of that name exists")
            continue
        pin = du.pin
        if pin is not None and old is not None and old.has_pin and not old.disabled:
            if users.verify(du.name, pin):
                pin = None  # already this PIN: no new hash, no change
        old_cards = (
            sorted(c.key for c in old.cards if c.source == source) if old is not None else []
        )
        changed = (
            old is None
            or (old.display_name, old.email, old.disabled) != (du.display_name, du.email, False)
            or pin is not None
            or old_cards != sorted(du.cards)
        )
        if changed:
            created = users.upsert(
                du.name,
                display_name=du.display_name,
                email=du.email,
                source=source,
                pin=pin,
                disabled=False,
            )
            users.set_cards(du.name, list(du.cards), source)
            (added if created else updated).append(du.name)
        else:
            unchanged += 1
        users.set_aliases(du.name, list(du.aliases), source)
        written.add(du.name)
    group_names: list[str] = []
    for group in snapshot.groups:
        groups.put(group.name, [m for m in group.members if m in written])
        group_names.append(group.name)
    disabled: list[str] = []
    if disable_missing:
        for name in sorted(known - {u.name for u in snapshot.users}):
            old = _stored(users, name)
            if old is not None and not old.disabled:
                users.disable(name)
                disabled.append(name)
    result = SyncResult(
        tuple(added),
        tuple(updated),
        tuple(disabled),
        tuple(group_names),
        tuple(skipped),
        unchanged,
    )
    log.info(
        "directory sync: %d added, %d updated, %d disabled, %d unchanged, %d groups, %d skipped",
        len(added),
        len(updated),
        len(disabled),
        unchanged,
        len(group_names),
        len(skipped),
    )
    return result


def cleartext_bind(cfg: DirectoryConfig) -> bool:
    """True if a password would cross the network unencrypted (plain ldap:// without
    StartTLS, to a host that is not loopback)."""
    if not cfg.bind_password or cfg.start_tls or not cfg.url.lower().startswith("ldap://"):
        return False
    host = cfg.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host.split("]")[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
    return not (host in ("localhost", "::1") or host.startswith("127."))


# -- schedule ----------------------------------------------------------------------------------


@dataclass
class SyncStatus:
    last_run: float | None = None  # clock time of the last finished attempt
    last_result: SyncResult | None = None
    last_error: str = ""
    next_due: float = 0.0
    runs: int = 0  # finished attempts (succeeded or failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "last_run": self.last_run,
            "last_result": self.last_result.to_json() if self.last_result else None,
            "last_error": self.last_error,
            "next_due": self.next_due,
            "runs": self.runs,
        }


class DirectorySync:
    """Runs read + apply on demand (:meth:`run_once`) and on a schedule (:meth:`tick`, called
    often by a loop; it runs only when due, on the injected clock). One run at a time."""

    RETRY_SECONDS = 60.0  # after a failed scheduled run, try again this soon (or sync_seconds)

    def __init__(
        self,
        cfg: DirectoryConfig,
        users: UserStore,
        groups: GroupStore,
        clock: Callable[[], float] = time.time,
        reader: Callable[[DirectoryConfig], DirectorySnapshot] = read_directory,
    ) -> None:
        self.cfg = cfg
        self._users = users
        self._groups = groups
        self._clock = clock
        self._reader = reader
        self._lock = threading.RLock()  # run_once inside tick's check
        self.status = SyncStatus(next_due=clock())
        if cleartext_bind(cfg):
            log.warning(
                "directory.url %s sends the bind password unencrypted: use ldaps:// or "
                "directory.start_tls",
                cfg.url,
            )

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.url)

    def run_once(self) -> SyncResult:
        """Read the directory and apply it now; the next scheduled run is ``sync_seconds``
        from now. DirectoryError if the directory is off, unreadable, or the snapshot refused."""
        if not self.enabled:
            raise DirectoryError("directory sync is off (directory.url is empty)")
        with self._lock:
            now = self._clock()
            try:
                snapshot = self._reader(self.cfg)
                result = apply_snapshot(self._users, self._groups, snapshot)
            except DirectoryError as exc:
                self.status.last_error = str(exc)
                self.status.next_due = now + min(
                    self.RETRY_SECONDS, float(self.cfg.sync_seconds or self.RETRY_SECONDS)
                )
                self.status.last_run = now
                self.status.runs += 1
                raise
            self.status.last_error = ""
            self.status.last_result = result
            self.status.next_due = now + self.cfg.sync_seconds
            self.status.last_run = now
            self.status.runs += 1  # last: a reader that sees the count sees the rest
            return result

    def due(self) -> bool:
        """True if a scheduled run is due now (never when off or ``sync_seconds`` is 0)."""
        return self.enabled and self.cfg.sync_seconds > 0 and self._clock() >= self.status.next_due

    def tick(self) -> SyncResult | None:
        """Run if due; a failure is logged (and retried later), not raised. The result, or
        None when nothing ran or it failed."""
        with self._lock:  # two loops (or processes' threads) ticking at once run it once
            if not self.due():
                return None
            try:
                return self.run_once()
            except DirectoryError as exc:
                log.error("scheduled directory sync failed: %s", exc)
                return None
