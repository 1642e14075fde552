"""Configuration: one typed dataclass per component, loaded from one TOML file.

The file is ``/etc/pullprint/pullprint.toml`` unless ``PULLPRINT_CONFIG`` or an explicit path names
another. Every value is checked at load time; an error names the offending key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

# Defined with the hand-off, which the CUPS executables import before anything else (it may
# import the standard library only, not this module).
from pullprint.cups.handoff import DEFAULT_CONFIG, DEFAULT_SOCKET, ENV_CONFIG

DEFAULT_PATH = Path(DEFAULT_CONFIG)
ENV_VAR = ENV_CONFIG


class ConfigError(ValueError):
    """The configuration is missing, unreadable or has a bad value (the message names the key)."""


@dataclass(frozen=True)
class CloudConfig:
    """The release service."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8631
    database_url: str = "sqlite:////var/lib/pullprint/cloud.db"
    storage_dir: Path = Path("/var/lib/pullprint/documents")
    # The key PIN hashes are made with (HMAC-SHA256; made, mode 0600, at the first start). Never
    # in the database; every server process of one database needs the same file.
    pin_key_file: Path = Path("/var/lib/pullprint/pin.key")
    admin_token: str = ""
    node_tokens: dict[str, str] = field(default_factory=dict)  # node name -> token
    currency: str = "EUR"
    long_poll_seconds: float = 25.0
    # Release and documents (issue 4).
    storage_mode: str = "cloud"  # "cloud": encrypted in storage_dir; "node": stays on the node;
    # "s3": encrypted in the s3_bucket (below)
    download_url_seconds: int = 60  # lifetime of a signed download URL
    download_signing_key: str = ""  # HMAC key for download URLs; empty: one kept in the database
    expire_seconds: int = 3 * 24 * 3600  # unprinted jobs expire after this long
    keep_printed_seconds: int = 0  # printed documents are deleted after this long (0: at once)
    retention_sweep_seconds: float = 60.0  # how often the server runs the retention sweep
    tls_cert: str = ""  # PEM certificate (chain) file: serve HTTPS when set with tls_key
    tls_key: str = ""  # PEM private key file
    # S3-compatible object storage (issue 10), storage_mode = "s3": each document is encrypted
    # with its own key (as in "cloud" mode) before it is uploaded.
    s3_endpoint_url: str = ""  # e.g. "http://127.0.0.1:8333"; empty: AWS's own endpoint
    s3_bucket: str = "pullprint-documents"  # created at start if it is missing
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "site1/"
    s3_region: str = "us-east-1"
    s3_access_key: str = ""  # empty: boto3's credential chain (environment, files, role)
    s3_secret_key: str = ""
    # Identity (issue 3).
    session_seconds: int = 8 * 3600  # a signed-in user's session lasts this long
    terminal_session_seconds: int = 120  # a session at a terminal (the kiosk's auto sign-out)
    card_registration: str = "approve"  # self-registered cards: "auto", "approve" (admin), "off"
    lockout_failures: int = 5  # wrong PINs, cards or passwords in a row before a lockout
    lockout_seconds: int = 15 * 60  # how long the user's PIN/card/password login stays locked
    unknown_user: str = "refuse"  # a job whose owner is no enabled user: "refuse" or "hold"


@dataclass(frozen=True)
class NodeConfig:
    """The node daemon and the CUPS backend on the same print server."""

    name: str = "node1"
    cloud_url: str = "http://127.0.0.1:8631"
    token: str = ""
    cloud_ca: str = ""  # PEM bundle the cloud's HTTPS certificate is checked against ("" = system)
    spool_dir: Path = Path("/var/spool/pullprint")
    cups_server: str = ""  # a socket path or host:port; empty means the system default
    queues: tuple[str, ...] = ("PullPrint",)
    poll_timeout: float = 25.0
    register_timeout: float = 5.0
    outbox_retry_seconds: float = 2.0
    max_document_bytes: int = 512 * 1024 * 1024
    release_printer: str = ""  # printer for an operator's "Release Job" in the CUPS web UI
    # The UNIX socket of `pullprint submitd`, which the filter and backend hand jobs to. They
    # find it here by default, else at $PULLPRINT_SUBMIT_SOCKET (cupsd's SetEnv). "": off.
    submit_socket: str = DEFAULT_SOCKET
    # Delivery (issue 6). Printer names are the cloud's printer names.
    retry_window_seconds: float = 600.0  # keep retrying an unreachable printer this long
    retry_max_backoff: float = 30.0  # longest pause between two tries
    drain_seconds: float = 60.0  # on SIGTERM: how long printing jobs may take to finish
    tls_pins: dict[str, str] = field(default_factory=dict)  # printer -> sha256 of its cert
    tls_tofu: tuple[str, ...] = ()  # printers whose first certificate is pinned (trust on use)
    raw_profiles: dict[str, str] = field(default_factory=dict)  # lpd/socket printer -> profile
    snmp: dict[str, str] = field(default_factory=dict)  # printer -> "host:port" of its SNMP agent
    snmp_community: str = "public"
    snmp_settle_seconds: float = 5.0  # the page counter must stay still this long
    snmp_wait_seconds: float = 120.0  # give up waiting for the page counter after this long
    metrics_port: int = 0  # Prometheus /metrics on 127.0.0.1:PORT; 0: off
    discovery_seconds: int = 300  # browse DNS-SD for IPP printers and report them; 0: off
    log_format: str = "text"  # "text", "kv" (key=value) or "json" (one object a line)
    # The CUPS job's user name -> the pullprint user (pullprint.identity.names).
    user_strip_domain: bool = True  # DOM\\alice, alice@REALM -> alice
    user_lower_case: bool = True
    user_aliases: dict[str, str] = field(default_factory=dict)  # CUPS name -> pullprint user

    @property
    def cloud_verify(self) -> bool | str:
        """What the node, backend and command line check the cloud's certificate against."""
        return self.cloud_ca or True


@dataclass(frozen=True)
class DirectoryConfig:
    """Users and groups synced from an LDAP directory (``pullprint.identity.directory``)."""

    url: str = ""  # ldap://host[:port] or ldaps://host[:port]; empty: no directory sync
    bind_dn: str = ""  # empty: anonymous bind
    bind_password: str = ""  # never logged
    base_dn: str = ""  # where users are searched (subtree)
    user_filter: str = "(objectClass=inetOrgPerson)"
    group_base: str = ""  # where groups are searched; empty: base_dn
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=posixGroup))"
    name_attribute: str = "uid"  # the pullprint user name
    display_name_attribute: str = "cn"
    email_attribute: str = "mail"
    card_attribute: str = ""  # card numbers (hex or decimal, one a value); empty: none
    pin_attribute: str = ""  # a PIN (4 to 8 digits); empty: none
    # other names of the user as CUPS sees them (job-originating-user-name), e.g.
    # sAMAccountName or a Kerberos principal; they map to the user at registration; empty: none
    alias_attribute: str = ""
    group_name_attribute: str = "cn"
    member_attributes: tuple[str, ...] = ("member", "uniqueMember", "memberUid")
    start_tls: bool = False
    tls_ca_file: str = ""  # CA certificates (PEM) for ldaps/StartTLS; empty: the system's
    timeout_seconds: float = 10.0
    page_size: int = 500  # paged search (RFC 2696) page size
    sync_seconds: int = 3600  # scheduled sync every this many seconds; 0: on demand only


@dataclass(frozen=True)
class OidcConfig:
    """Single sign-on: OpenID Connect, authorization code + PKCE (``pullprint.identity.oidc``)."""

    issuer: str = ""  # e.g. https://idp.example/realms/x; empty: single sign-on off
    client_id: str = ""
    client_secret: str = ""  # never logged
    redirect_uri: str = ""  # https://pullprint.example/api/v1/sso/callback
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    username_claim: str = "preferred_username"
    groups_claim: str = ""  # a claim listing the user's groups; empty: groups not taken
    link_sources: tuple[str, ...] = ("ldap",)  # existing users (other than "oidc") SSO may sign in
    login_seconds: int = 600  # a started login must finish within this long
    leeway_seconds: int = 60  # clock skew allowed on exp/iat
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Config:
    cloud: CloudConfig = field(default_factory=CloudConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    oidc: OidcConfig = field(default_factory=OidcConfig)
    path: Path | None = None


def _typed(section: str, key: str, value: Any, default: Any) -> Any:
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{name}: must not be negative, got {value}")
        return value
    if isinstance(default, float):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name}: expected a positive number, got {value!r}")
        return float(value)
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{name}: expected a table of strings, got {value!r}")
        return dict(value)
    if isinstance(default, Decimal):
        try:
            return Decimal(str(value))
        except InvalidOperation as exc:
            raise ConfigError(f"{name}: expected a decimal number, got {value!r}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def _section(cls: type[Any], section: str, data: Any) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a table")
    defaults = cls()
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key")
    values = {k: _typed(section, k, v, getattr(defaults, k)) for k, v in data.items()}
    return cls(**values)


def parse(data: dict[str, Any], path: Path | None = None) -> Config:
    """Build a checked Config from parsed TOML (pure; raises ConfigError naming the key)."""
    unknown = sorted(set(data) - {"cloud", "node", "directory", "oidc"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section")
    return Config(
        cloud=_section(CloudConfig, "cloud", data.get("cloud")),
        node=_section(NodeConfig, "node", data.get("node")),
        directory=check_directory(_section(DirectoryConfig, "directory", data.get("directory"))),
        oidc=check_oidc(_section(OidcConfig, "oidc", data.get("oidc"))),
        path=path,
    )


def check_directory(cfg: DirectoryConfig) -> DirectoryConfig:
    """``cfg`` if its values fit together (an empty url turns the sync off); else ConfigError
    naming the key."""
    if not cfg.url:
        return cfg
    scheme = cfg.url.partition("://")[0].lower()
    if scheme not in ("ldap", "ldaps") or "://" not in cfg.url:
        raise ConfigError(
            f"directory.url: expected ldap://HOST[:PORT] or ldaps://..., got {cfg.url!r}"
        )
    if not cfg.base_dn:
        raise ConfigError("directory.base_dn: needed when directory.url is set")
    if cfg.bind_password and not cfg.bind_dn:
        raise ConfigError("directory.bind_dn: needed when directory.bind_password is set")
    for key in ("user_filter", "group_filter"):
        value = getattr(cfg, key)
        if not (value.startswith("(") and value.endswith(")")):
            raise ConfigError(f"directory.{key}: an LDAP filter in parentheses, got {value!r}")
    if not cfg.name_attribute:
        raise ConfigError("directory.name_attribute: must not be empty")
    if cfg.page_size < 1:
        raise ConfigError("directory.page_size: must be at least 1")
    return cfg


def check_oidc(cfg: OidcConfig) -> OidcConfig:
    """``cfg`` if its values fit together (an empty issuer turns single sign-on off); else
    ConfigError naming the key. The issuer must be https (plain http only on loopback)."""
    if not cfg.issuer:
        return cfg
    for key in ("issuer", "redirect_uri"):
        value = getattr(cfg, key)
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        loopback = host in ("localhost", "[::1]") or host.startswith("127.")
        if scheme != "https" and not (scheme == "http" and loopback):
            raise ConfigError(f"oidc.{key}: expected an https:// URL, got {value!r}")
    if not cfg.client_id:
        raise ConfigError("oidc.client_id: needed when oidc.issuer is set")
    if "openid" not in cfg.scopes:
        raise ConfigError("oidc.scopes: must include openid")
    if not cfg.username_claim:
        raise ConfigError("oidc.username_claim: must not be empty")
    if cfg.login_seconds < 1:
        raise ConfigError("oidc.login_seconds: must be at least 1")
    return cfg


def load(path: str | Path | None = None) -> Config:
    """Load the configuration from ``path``, ``$PULLPRINT_CONFIG`` or the default path.

    A missing default file gives the embedded defaults; a missing named file is an error.
    """
    named = path or os.environ.get(ENV_VAR)
    target = Path(named) if named else DEFAULT_PATH
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{target}: configuration file not found") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{target}: not valid TOML: {exc}") from exc
    return parse(data, target)


def dump(config: Config) -> str:
    """Render a Config as TOML (for generated test and demo configurations)."""
    out: list[str] = []
    for section in ("cloud", "node", "directory", "oidc"):
        obj = getattr(config, section)
        out.append(f"[{section}]")
        for key in obj.__dataclass_fields__:
            out.append(f"{key} = {_toml_value(getattr(obj, key))}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return _toml_str(str(value))


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
