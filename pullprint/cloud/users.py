"""People who release jobs: name, role, hashed PIN and password, RFID cards, source.

A user comes from the admin (``local``), the directory (``ldap``) or single sign-on (``oidc``).
PINs and passwords are never stored or logged, only their hashes: a password's argon2id, a PIN's
HMAC under a key kept outside the database (:mod:`pullprint.cloud.pins`). A disabled user (one the
directory no longer lists) keeps their jobs and transactions but cannot sign in or release.
Cards are kept by their canonical key (:func:`pullprint.identity.cards.card_key`), so one card
matches one user whatever form a reader types it in.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pullprint.cloud import pins
from pullprint.cloud.db import group_members, user_aliases, user_cards, users
from pullprint.cloud.pins import PinHasher
from pullprint.errors import Conflict, NotFound, WrongSecret

log = logging.getLogger(__name__)

# Passwords: argon2id with the OWASP minimum (19 MiB, 2 passes, 1 lane), ~25-40 ms a check here.
# PINs: HMAC-SHA256 under a key outside the database (pullprint.cloud.pins, which says why).
# PIN_HASHER is the argon2id the PINs had before (8 MiB, 1 pass): such hashes still verify, and
# are replaced by a keyed one at the next correct PIN. Hashes carry their parameters.
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
PIN_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

# Every argon2 hash and check runs on these few threads, whichever request thread asks. argon2 is
# CPU-bound: more at once than cores gains nothing. And each one allocates its 8 or 19 MiB buffer;
# glibc keeps a freed buffer in the arena of the thread that used it, so 40 request threads
# hashing at once left a server 200-300 MB larger for good (the soak's growth). On a few threads
# at most a few buffers exist, reused from check to check (no fresh pages to fault in).
HASHING_THREADS = min(os.cpu_count() or 2, 8)
# Built once: SQLAlchemy's construction and cache key cost more than the query (every request
# of a signed-in user and every registration asks for a role).
_ROLE_OF = sa.select(users.c.role, users.c.disabled).where(users.c.name == sa.bindparam("b_name"))
_USER_OF_ALIAS = sa.select(user_aliases.c.user).where(
    user_aliases.c.alias == sa.bindparam("b_alias")
)
_HASHING = ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="argon2")


_warmed = threading.Event()


def warm_hashing_threads() -> None:
    """Start every hashing thread and give each one its argon2 buffers (one PIN and one
    password check), so that the first releases after a start do not pay for them (fresh
    pages, new arenas). Once per process; later calls return at once."""
    if _warmed.is_set():
        return
    barrier = threading.Barrier(HASHING_THREADS)
    digests = [(hasher, hasher.hash("warm-up")) for hasher in (PIN_HASHER, PASSWORD_HASHER)]

    def warm() -> None:
        for hasher, digest in digests:
            hasher.verify(digest, "warm-up")
        barrier.wait(timeout=30)  # each task on its own thread

    for future in [_HASHING.submit(warm) for _ in range(HASHING_THREADS)]:
        future.result()
    _warmed.set()


def _verify(hasher: PasswordHasher, digest: str, secret: str) -> bool:
    """``hasher.verify`` on the hashing threads. Raises as it does."""
    return bool(_HASHING.submit(hasher.verify, digest, secret).result())


def _hash_secret(hasher: PasswordHasher, secret: str) -> str:
    """``hasher.hash`` on the hashing threads."""
    return _HASHING.submit(hasher.hash, secret).result()


class UserRole(enum.StrEnum):
    """What a signed-in person may do: their own jobs (user), any held job (operator), all."""

    USER = "user"
    OPERATOR = "operator"
    ADMIN = "admin"


@dataclass(frozen=True)
class Card:
    key: str
    source: str
    approved: bool

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "approved": self.approved}


@dataclass(frozen=True)
class User:
    """A user as the API shows them (never a hash)."""

    name: str
    role: UserRole
    display_name: str
    email: str
    source: str
    disabled: bool
    has_pin: bool
    has_password: bool
    groups: tuple[str, ...] = ()
    cards: tuple[Card, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "display_name": self.display_name,
            "email": self.email,
            "source": self.source,
            "disabled": self.disabled,
            "has_pin": self.has_pin,
            "has_password": self.has_password,
            "groups": list(self.groups),
            "cards": [c.to_json() for c in self.cards],
        }


class UserDirectory:
    """The ``users`` and ``user_cards`` tables."""

    def __init__(
        self,
        engine: Engine,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
        pin_key: bytes | None = None,
    ) -> None:
        """``pin_key``: the key of PIN hashes (pins.load_key of cloud.pin_key_file); None: a
        random one for this object only (tests). ``hasher``: the argon2 of passwords (and of
        PIN hashes made before PINs were keyed)."""
        self._engine = engine
        self._pins = PinHasher(pin_key or secrets.token_bytes(pins.KEY_BYTES))
        self._hashers = {
            "pin_hash": hasher or PIN_HASHER,
            "password_hash": hasher or PASSWORD_HASHER,
        }
        self._clock = clock
        # Verified against for unknown users, so an unknown name costs the same time.
        self._dummy = {
            "pin_hash": self._pins.hash("00000000"),
            "password_hash": _hash_secret(self._hashers["password_hash"], "00000000"),
        }
        warm_hashing_threads()

    # -- writing ----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        pin: str | None,
        *,
        password: str | None = None,
        role: UserRole = UserRole.USER,
        display_name: str = "",
        email: str = "",
    ) -> None:
        """Create a local user; Conflict (409) if the name exists."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(users).values(
                        name=name,
                        pin_hash=self._hash(pin, "pin_hash"),
                        password_hash=self._hash(password, "password_hash"),
                        role=role.value,
                        display_name=display_name,
                        email=email,
                        source="local",
                        disabled=False,
                        created_at=self._clock(),
                    )
                )
        except IntegrityError as exc:
            raise Conflict(409, f"user {name} already exists") from exc
        log.info("added user %s (%s)", name, role.value)

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
    ) -> bool:
        """Create or update a user (directory sync, single sign-on). Only the PIN, password and
        role given are changed; a None keeps what is stored. True if the user was created.
        Idempotent."""
        values: dict[str, Any] = {
            "display_name": display_name,
            "email": email,
            "source": source,
            "disabled": disabled,
        }
        if role is not None:
            values["role"] = UserRole(role).value
        if pin is not None:
            values["pin_hash"] = self._hash(pin, "pin_hash")
        if password is not None:
            values["password_hash"] = self._hash(password, "password_hash")
        with self._engine.begin() as conn:
            done = conn.execute(sa.update(users).where(users.c.name == name).values(**values))
            if done.rowcount == 1:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(users).values(
                            name=name,
                            created_at=self._clock(),
                            **{"role": UserRole.USER.value, **values},
                        )
                    )
            except IntegrityError:  # created meanwhile by another process: update it
                conn.execute(sa.update(users).where(users.c.name == name).values(**values))
                return False
        log.info("created user %s from %s", name, source)
        return True

    def set_pin(self, name: str, pin: str) -> None:
        """Replace the user's PIN (NotFound if there is no such user)."""
        self._set(name, pin_hash=self._hash(pin, "pin_hash"))
        log.info("user %s set a new PIN", name)

    def set_password(self, name: str, password: str) -> None:
        """Replace the user's password (NotFound if there is no such user)."""
        self._set(name, password_hash=self._hash(password, "password_hash"))
        log.info("user %s set a new password", name)

    def set_role(self, name: str, role: UserRole) -> None:
        self._set(name, role=role.value)
        log.info("user %s is now %s", name, role.value)

    def disable(self, name: str, disabled: bool = True) -> None:
        """Disable (or enable again) the user: their jobs stay, they cannot sign in."""
        self._set(name, disabled=disabled)
        log.info("user %s %s", name, "disabled" if disabled else "enabled")

    def _set(self, name: str, **values: Any) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(sa.update(users).where(users.c.name == name).values(**values))
        if done.rowcount != 1:
            raise NotFound(404, f"no user {name}")

    def add_card(
        self, name: str, key: str, *, source: str = "local", approved: bool = True
    ) -> Card:
        """Register the card (a canonical key) for the user. Conflict (409) if another user has
        it; the same user again updates its approval. Idempotent."""
        self._require(name)
        with self._engine.begin() as conn:
            holder = conn.execute(
                sa.select(user_cards.c.user).where(user_cards.c.card_key == key)
            ).scalar_one_or_none()
            if holder is not None and holder != name:
                raise Conflict(409, "this card is registered to another user")
            if holder is None:
                conn.execute(
                    sa.insert(user_cards).values(
                        card_key=key,
                        user=name,
                        source=source,
                        approved=approved,
                        created_at=self._clock(),
                    )
                )
            else:
                conn.execute(
                    sa.update(user_cards)
                    .where(user_cards.c.card_key == key)
                    .values(approved=approved, source=source)
                )
        log.info("card registered for user %s (%s)", name, "approved" if approved else "pending")
        return Card(key, source, approved)

    def approve_card(self, key: str) -> str:
        """Approve a pending card; returns its user. NotFound if no such card."""
        with self._engine.begin() as conn:
            user = conn.execute(
                sa.select(user_cards.c.user).where(user_cards.c.card_key == key)
            ).scalar_one_or_none()
            if user is None:
                raise NotFound(404, "no such card")
            conn.execute(
                sa.update(user_cards).where(user_cards.c.card_key == key).values(approved=True)
            )
        log.info("card of user %s approved", user)
        return str(user)

    def remove_card(self, name: str, key: str) -> bool:
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.delete(user_cards).where(user_cards.c.card_key == key, user_cards.c.user == name)
            )
        return bool(done.rowcount)

    def set_cards(self, name: str, card_keys: list[str], source: str) -> None:
        """Make the cards of ``source`` for the user exactly ``card_keys`` (directory sync); a
        card another user holds is skipped and logged. Idempotent."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(user_cards).where(
                    user_cards.c.user == name,
                    user_cards.c.source == source,
                    user_cards.c.card_key.not_in(card_keys),
                )
            )
        for key in card_keys:
            try:
                self.add_card(name, key, source=source, approved=True)
            except Conflict:
                log.warning("directory card of user %s is registered to another user", name)

    def set_aliases(self, name: str, aliases: list[str], source: str) -> None:
        """Make the aliases of ``source`` for the user exactly ``aliases`` (lower case); an
        alias that is a user's own name, or another user's alias, is skipped and logged.
        Idempotent."""
        wanted = sorted({a.lower() for a in aliases} - {name})
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(user_aliases).where(
                    user_aliases.c.user == name,
                    user_aliases.c.source == source,
                    user_aliases.c.alias.not_in(wanted),
                )
            )
            for alias in wanted:
                holder = conn.execute(
                    sa.select(user_aliases.c.user).where(user_aliases.c.alias == alias)
                ).scalar_one_or_none()
                taken = conn.execute(sa.select(users.c.name).where(users.c.name == alias)).first()
                if holder == name:
                    continue
                if holder is not None or taken is not None:
                    log.warning("alias %s of user %s is another user's name or alias", alias, name)
                    continue
                conn.execute(sa.insert(user_aliases).values(alias=alias, user=name, source=source))

    def resolve(self, claimed: str) -> str | None:
        """The enabled user a name from CUPS stands for: the user of that name, else the user
        whose alias it is (case-insensitive); None if neither. Changes nothing."""
        if self.exists(claimed):
            return claimed
        with self._engine.connect() as conn:
            found = conn.execute(_USER_OF_ALIAS, {"b_alias": claimed.lower()}).scalar_one_or_none()
        return str(found) if found is not None and self.exists(str(found)) else None

    # -- reading ----------------------------------------------------------------------------

    def verify(self, name: str, pin: str) -> bool:
        """True if ``pin`` is the PIN of the enabled user ``name``; an unknown user costs the
        same time. Changes nothing, except that a PIN hash of before PINs were keyed is replaced
        by a keyed one when the PIN is right."""
        return self._check(name, "pin_hash", pin)

    def verify_password(self, name: str, password: str) -> bool:
        """True if ``password`` is the password of the enabled user ``name``. Changes nothing."""
        return self._check(name, "password_hash", password)

    def check_password(
        self, name: str, password: str, wrong: str = "user name or password"
    ) -> None:
        """WrongSecret 403 ("wrong ``wrong``") unless ``password`` is the password of the
        enabled user ``name``. Changes nothing."""
        if not self.verify_password(name, password):
            raise WrongSecret(403, f"wrong {wrong}")

    def pin_hash(self, conn: Connection, name: str) -> str | None:
        """The PIN hash of the enabled user ``name`` (None: no such user, disabled, or no PIN),
        read in ``conn``: for ``verify_hash`` once the connection is given back (the hash
        takes milliseconds; no connection waits for it). Changes nothing."""
        return self._stored(conn, name, "pin_hash")

    def verify_hash(self, stored: str | None, pin: str, name: str) -> bool:
        """True if ``pin`` matches ``stored`` (from ``pin_hash`` of user ``name``); None costs
        the same time. An argon2 hash that matches is replaced by a keyed one (as ``verify``)."""
        return self._matches("pin_hash", stored, pin, name)

    @staticmethod
    def _stored(conn: Connection, name: str, column: str) -> str | None:
        row = conn.execute(
            sa.select(users.c[column], users.c.disabled).where(users.c.name == name)
        ).first()
        return row[0] if row is not None and not row.disabled else None

    def _check(self, name: str, column: str, secret: str) -> bool:
        with self._engine.connect() as conn:
            stored = self._stored(conn, name, column)
        return self._matches(column, stored, secret, name)

    def _matches(self, column: str, stored: str | None, secret: str, name: str) -> bool:
        digest = stored or self._dummy[column]
        if column == "pin_hash" and pins.is_keyed(digest):
            try:
                ok = self._pins.verify(digest, secret)
            except (pins.OtherKey, ValueError) as exc:
                log.warning("the PIN hash of user %s cannot be checked: %s", name, exc)
                ok = False
            return ok and stored is not None
        try:
            ok = _verify(self._hashers[column], digest, secret)
        except (VerificationError, InvalidHashError):
            ok = False
        if ok and stored is not None and column == "pin_hash":
            self._set(name, pin_hash=self._pins.hash(secret))  # keyed from now on
            log.info("the PIN hash of user %s is keyed now", name)
        return ok and stored is not None

    def by_card(self, key: str) -> str | None:
        """The enabled user whose approved card this is, else None."""
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(users.c.name)
                .select_from(user_cards.join(users, users.c.name == user_cards.c.user))
                .where(
                    user_cards.c.card_key == key,
                    user_cards.c.approved.is_(True),
                    users.c.disabled.is_(False),
                )
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def role_of(self, name: str) -> UserRole | None:
        """The enabled user's role; None if unknown or disabled."""
        with self._engine.connect() as conn:
            row = conn.execute(_ROLE_OF, {"b_name": name}).first()
        if row is None or row.disabled:
            return None
        return UserRole(row.role)

    def exists(self, name: str) -> bool:
        """True if an enabled user of that name exists."""
        return self.role_of(name) is not None

    def get(self, name: str) -> User:
        """The user with their groups and cards; NotFound if there is none."""
        found = self._users(sa.select(users).where(users.c.name == name))
        if not found:
            raise NotFound(404, f"no user {name}")
        return found[0]

    def all(self) -> list[User]:
        return self._users(sa.select(users).order_by(users.c.name))

    def names(self, source: str | None = None) -> list[str]:
        """User names, optionally of one source, sorted."""
        query = sa.select(users.c.name).order_by(users.c.name)
        if source is not None:
            query = query.where(users.c.source == source)
        with self._engine.connect() as conn:
            return [str(n) for n in conn.execute(query).scalars()]

    def _require(self, name: str) -> None:
        with self._engine.connect() as conn:
            if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first() is None:
                raise NotFound(404, f"no user {name}")

    def _users(self, query: sa.Select[Any]) -> list[User]:
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            names = [r["name"] for r in rows]
            groups: dict[str, list[str]] = {}
            for member in conn.execute(
                sa.select(group_members.c.user, group_members.c.group_name)
                .where(group_members.c.user.in_(names))
                .order_by(group_members.c.group_name)
            ):
                groups.setdefault(member.user, []).append(member.group_name)
            cards: dict[str, list[Card]] = {}
            for card in conn.execute(
                sa.select(user_cards)
                .where(user_cards.c.user.in_(names))
                .order_by(user_cards.c.card_key)
            ):
                cards.setdefault(card.user, []).append(
                    Card(card.card_key, card.source, bool(card.approved))
                )
        return [
            User(
                name=r["name"],
                role=UserRole(r["role"]),
                display_name=r["display_name"],
                email=r["email"],
                source=r["source"],
                disabled=bool(r["disabled"]),
                has_pin=r["pin_hash"] is not None,
                has_password=r["password_hash"] is not None,
                groups=tuple(groups.get(r["name"], ())),
                cards=tuple(cards.get(r["name"], ())),
            )
            for r in rows
        ]

    def _hash(self, secret: str | None, column: str) -> str | None:
        if secret is None:
            return None
        if column == "pin_hash":
            return self._pins.hash(secret)
        return _hash_secret(self._hashers[column], secret)
