"""A real OpenLDAP server for tests, started from Debian's ``slapd`` on a free loopback port.

``Slapd()`` writes a private ``slapd.conf`` under a fresh temp folder (mdb backend, suffix
``dc=pullprint,dc=test``, its own rootdn/rootpw, the core, cosine, inetorgperson and nis schemas),
loads LDIF with ``slapadd`` before it starts, listens on ``ldap://127.0.0.1:PORT`` only, and
``stop()`` ends it and removes the folder. The entries change while it runs through ``ldapmodify``
(ldap-utils), as an administrator would change them.

A read-only service account ``cn=sync,ou=services,SUFFIX`` gets at most ``SOFT_SIZE_LIMIT``
entries from a plain search, so a client that does not page (RFC 2696) sees an incomplete
directory. Anything that goes wrong raises RuntimeError with slapd's output: tests fail, never
skip. The root and service passwords are random per server and never logged.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pullprint.peers.ports import free_port, stop_process, wait_listening
from pullprint.peers.tls import make_tls_files

log = logging.getLogger(__name__)

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SLAPPASSWD = Path("/usr/sbin/slappasswd")
LDAPMODIFY = Path("/usr/bin/ldapmodify")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SUFFIX = "dc=pullprint,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
SYNC_DN = f"cn=sync,ou=services,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SOFT_SIZE_LIMIT = 3  # entries a non-paged search by the sync account may get


def _need(path: Path) -> Path:
    if not path.exists():
        raise RuntimeError(
            f"{path} not found: apt-get install slapd ldap-utils (DEBIAN_FRONTEND=noninteractive)"
        )
    return path


def person_ldif(
    uid: str,
    cn: str,
    mail: str = "",
    card: str | None = None,
    pin: str | None = None,
) -> str:
    """The LDIF of one ``inetOrgPerson`` under ou=people (``employeeNumber`` holds cards and
    ``departmentNumber`` the PIN, as a site would map them)."""
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {cn}",
        f"sn: {cn.split()[-1] if cn.split() else uid}",
    ]
    if mail:
        lines.append(f"mail: {mail}")
    if card is not None:
        lines.append(f"employeeNumber: {card}")  # single-valued in inetOrgPerson
    if pin is not None:
        lines.append(f"departmentNumber: {pin}")
    return "\n".join(lines) + "\n"


def group_of_names_ldif(cn: str, member_uids: list[str]) -> str:
    """The LDIF of a ``groupOfNames`` under ou=groups whose members are people's DNs."""
    lines = [f"dn: cn={cn},{GROUPS}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: uid={uid},{PEOPLE}" for uid in member_uids] or [f"member: {ROOT_DN}"]
    return "\n".join(lines) + "\n"


def posix_group_ldif(cn: str, gid: int, member_uids: list[str]) -> str:
    """The LDIF of a ``posixGroup`` under ou=groups whose members are uids (memberUid)."""
    lines = [
        f"dn: cn={cn},{GROUPS}",
        "objectClass: posixGroup",
        f"cn: {cn}",
        f"gidNumber: {gid}",
    ]
    lines += [f"memberUid: {uid}" for uid in member_uids]
    return "\n".join(lines) + "\n"


class Slapd:
    """One private slapd on ldap://127.0.0.1:``port`` with suffix ``SUFFIX``; with ``tls``
    also on ldaps://127.0.0.1:``tls_port`` (and StartTLS), its certificate signed by a private
    CA whose certificate is ``ca_file``."""

    def __init__(self, tls: bool = False, cert_host: str = "127.0.0.1") -> None:
        for tool in (SLAPD, SLAPADD, SLAPPASSWD, LDAPMODIFY):
            _need(tool)
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls = tls
        self.cert_host = cert_host  # the name in the server certificate (tests of a mismatch)
        self.tls_port = free_port() if tls else 0
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else ""
        self.suffix = SUFFIX
        self.root_dn = ROOT_DN
        self.root_password = secrets.token_urlsafe(16)
        self.sync_dn = SYNC_DN
        self.sync_password = secrets.token_urlsafe(16)
        self.folder = Path(tempfile.mkdtemp(prefix="pullprint-slapd-"))
        self.conf = self.folder / "slapd.conf"
        self.data = self.folder / "data"
        self.log_path = self.folder / "slapd.log"
        self.ca_file = self.folder / "ca.pem"
        self._proc: subprocess.Popen[bytes] | None = None

    def _hash(self, password: str) -> str:
        done = subprocess.run(
            [str(SLAPPASSWD), "-T", "/dev/stdin"],
            input=password,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"slappasswd failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _write_conf(self) -> None:
        schemas = "\n".join(
            f"include {SCHEMA_DIR / name}.schema"
            for name in ("core", "cosine", "inetorgperson", "nis")
        )
        tls = ""
        if self.tls:
            ca, cert, key = make_tls_files(self.folder, self.cert_host)
            tls = f"TLSCACertificateFile {ca}\nTLSCertificateFile {cert}\n"
            tls += f"TLSCertificateKeyFile {key}\n"
        self.conf.write_text(
            f"""{schemas}
{tls}pidfile {self.folder / "slapd.pid"}
argsfile {self.folder / "slapd.args"}
modulepath {MODULE_DIR}
moduleload back_mdb
loglevel stats

database mdb
maxsize 67108864
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {self._hash(self.root_password)}
directory {self.data}
index objectClass eq
index uid eq
limits dn.exact="{SYNC_DN}" size.soft={SOFT_SIZE_LIMIT} size.hard={SOFT_SIZE_LIMIT}
  size.pr=unlimited size.prtotal=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="{SYNC_DN}" read by self read by * none
""",
            encoding="utf-8",
        )
        self.conf.chmod(0o600)

    def base_ldif(self) -> str:
        """The suffix, ou=people, ou=groups, ou=services and the sync account."""
        top = SUFFIX.split(",")[0].split("=")[1]
        return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: {top}
o: pullprint test

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SYNC_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sync
userPassword: {self._hash(self.sync_password)}
"""

    def start(self, ldif: str = "") -> Slapd:
        """Write the configuration, load the base entries and ``ldif`` offline (slapadd), start
        slapd in the foreground on 127.0.0.1 and wait until it accepts connections."""
        self.folder.chmod(0o700)
        self.data.mkdir()
        self._write_conf()
        entries = self.base_ldif() + ("\n" + ldif if ldif.strip() else "")
        done = subprocess.run(
            [str(SLAPADD), "-f", str(self.conf), "-q"],
            input=entries,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"slapadd failed ({done.returncode}): {done.stderr.strip()}")
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    str(SLAPD),
                    "-f",
                    str(self.conf),
                    "-h",
                    " ".join(f"{u}/" for u in (self.url, self.ldaps_url) if u),
                    "-d",
                    "stats",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            for port in (self.port, self.tls_port):
                if port:
                    wait_listening(port, timeout=15)
        except TimeoutError as exc:
            code = self._proc.poll()
            raise RuntimeError(f"slapd did not listen (exit {code}):\n{self.log_tail()}") from exc
        log.info("slapd up on %s", self.url)
        return self

    def modify(self, ldif: str) -> None:
        """Apply change records (``changetype: add|modify|delete``) as the rootdn, through
        ldapmodify over the network, as an administrator would."""
        pwfile = self.folder / "rootpw"
        pwfile.write_text(self.root_password, encoding="utf-8")
        pwfile.chmod(0o600)
        try:
            done = subprocess.run(
                [
                    str(LDAPMODIFY),
                    "-x",
                    "-H",
                    self.url,
                    "-D",
                    ROOT_DN,
                    "-y",
                    str(pwfile),
                ],
                input=ldif,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"ldapmodify failed ({done.returncode}): {done.stderr.strip()}")

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL after 10 s) and remove its folder. Idempotent."""
        proc, self._proc = self._proc, None
        stop_process(proc, "slapd", 10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Slapd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
