"""Writing the backend and filter executables into a CUPS ServerBin folder.

Each is two programs: the hand-off to submitd in C (``handoff.c``, compiled here with the
system's C compiler, once per process), which starts in ~1 ms where Python took ~20, and a thin
Python shell over the library in ``<ServerBin>/pullprint/``, which the C program executes to run
the job in-process (when submitd is not there, declines, or went away). Without a C compiler the
Python shell is the executable itself (it does the same hand-off, slower); a warning says so.
Permissions follow the CUPS contract: the backend is 0700 root (so cupsd runs it as root and it
can write the spool), the filter 0755 (runs as lp).
"""

from __future__ import annotations

import compileall
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# ``-IS``: no site, no user paths; the package's own folder is put on sys.path, so that the
# hand-off to submitd starts with the standard library only (pullprint.cups.handoff loads the
# rest, with site, only when it runs the job in-process).
BACKEND_SHELL = """#!{python} -IS
# pullprint CUPS backend (generated). Device URI: pullprint:/
import sys
sys.path.insert(0, {root!r})
from pullprint.cups.handoff import backend_main
sys.exit(backend_main())
"""

FILTER_SHELL = """#!{python} -IS
# pullprint CUPS filter pullprint-finish (generated).
import sys
sys.path.insert(0, {root!r})
from pullprint.cups.handoff import filter_main
sys.exit(filter_main())
"""

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding pullprint/
# What the executables import before the hand-off (the rest only when they run a job in-process).
STARTUP_MODULES = (
    "pullprint/__init__.py",
    "pullprint/cups/__init__.py",
    "pullprint/cups/handoff.py",
)


def readable_bytecode(root: str = PACKAGE_ROOT) -> None:
    """Byte-compile the modules the executables import at start, and let every user read that
    byte-code. The filter runs as lp; a ``__pycache__`` the backend made (root, under cupsd's
    umask 077) is root's alone, so lp compiled them from source at every job: the filter took
    26.5 ms to get to the hand-off instead of 15.6 (measured as lp). Idempotent; a folder we
    may not write (a packaged install, compiled by its package) is left as it is."""
    for rel in STARTUP_MODULES:
        source = Path(root) / rel
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            compileall.compile_file(str(source), quiet=2)
            for path, mode in ((cached.parent, 0o755), (cached, 0o644)):
                if path.stat().st_uid == os.geteuid():
                    path.chmod(path.stat().st_mode & 0o7777 | mode)
        except OSError:
            continue


def _write(path: Path, data: str | bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.chmod(mode)
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    tmp.replace(path)


HANDOFF_SOURCE = Path(__file__).with_name("handoff.c")
SHELLS = "pullprint"  # <ServerBin>/pullprint/{backend,filter}: the Python shells (handoff.c)
CFLAGS = (
    *("-std=gnu11", "-O2", "-Wall", "-Wextra"),
    *("-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"),
)
ROLES = ("backend", "filter")
_built: dict[str, bytes | None] = {}


class BuildError(Exception):
    """The C compiler failed on handoff.c (its message is in the error)."""


def c_compiler() -> list[str] | None:
    """``$CC``, else ``cc`` or ``gcc`` on PATH; None when there is none."""
    named = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return shlex.split(named) if named else None


def compile_handoff(role: str, output: Path) -> None:
    """Compile handoff.c for ``role`` (backend or filter) into ``output``. The program finds the
    Python shell it executes, <ServerBin>/pullprint/<role>, from its own path (the .deb compiles
    the shell's path in instead: ``-DPULLPRINT_FALLBACK`` in debian/rules). Raises BuildError
    (with the compiler's message) or FileNotFoundError (no compiler)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    cc = c_compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler (cc, gcc or $CC)")
    defines = ["-DPULLPRINT_BACKEND"] if role == "backend" else []
    command = [*cc, *CFLAGS, *defines, "-o", str(output), str(HANDOFF_SOURCE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BuildError(f"{shlex.join(command)}: exit {done.returncode}: {done.stderr.strip()}")


def handoff_executable(role: str) -> bytes | None:
    """The compiled hand-off for ``role`` (built once per process), or None without a working
    C compiler (logged)."""
    if role not in _built:
        with tempfile.TemporaryDirectory(prefix="pullprint-handoff-") as work:
            output = Path(work) / role
            try:
                compile_handoff(role, output)
                _built[role] = output.read_bytes()
            except (FileNotFoundError, BuildError) as exc:
                log.warning("the %s runs as Python, slower (~20 ms a job): %s", role, exc)
                _built[role] = None
    return _built[role]


def _write_executable(path: Path, role: str, shell: str, mode: int) -> None:
    """``path`` becomes the compiled hand-off, with ``shell`` (the Python shell it executes)
    in <ServerBin>/pullprint/<role>; without a C compiler, ``shell`` itself."""
    binary = handoff_executable(role)
    if binary is None:
        _write(path, shell, mode)
        return
    shells = path.parent.parent / SHELLS
    shells.mkdir(exist_ok=True)
    shells.chmod(0o755)  # lp runs the filter's shell
    _write(shells / role, shell, mode)
    _write(path, binary, mode)


def write_backend(path: Path, python: str | None = None) -> None:
    """Write the backend executable at ``path`` (mode 0700, root), in <ServerBin>/backend/.
    Idempotent."""
    text = BACKEND_SHELL.format(python=python or sys.executable, root=PACKAGE_ROOT)
    _write_executable(path, "backend", text, 0o700)


def write_filter(path: Path, python: str | None = None) -> None:
    """Write the filter executable at ``path`` (mode 0755, root), in <ServerBin>/filter/, and
    make the byte-code its Python shell starts with readable to lp, who runs it (the backend
    runs as root). Idempotent."""
    text = FILTER_SHELL.format(python=python or sys.executable, root=PACKAGE_ROOT)
    _write_executable(path, "filter", text, 0o755)
    readable_bytecode()


# -- an authenticated queue (docs/identity.md) ------------------------------------------------

AUTH_POLICY = "pullprint-authenticated"
_BEGIN = "# pullprint: authenticated queue {queue} (begin; written by pullprint, do not edit)"
_END = "# pullprint: authenticated queue {queue} (end)"

_POLICY_BLOCK = """\
{begin}
<Policy {policy}>
  JobPrivateAccess default
  JobPrivateValues default
  SubscriptionPrivateAccess default
  SubscriptionPrivateValues default
  <Limit Create-Job Print-Job Print-URI Validate-Job>
    AuthType {auth_type}
    Require valid-user
    Order deny,allow
  </Limit>
  <Limit Send-Document Send-URI Hold-Job Release-Job Restart-Job Purge-Jobs \
Set-Job-Attributes Create-Job-Subscription Renew-Subscription Cancel-Subscription \
Get-Notifications Reprocess-Job Cancel-Current-Job Suspend-Current-Job Resume-Job Cancel-My-Jobs \
Close-Job CUPS-Move-Job CUPS-Get-Document Cancel-Job CUPS-Authenticate-Job>
    AuthType {auth_type}
    Require user @OWNER @SYSTEM
    Order deny,allow
  </Limit>
  <Limit CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class \
CUPS-Set-Default CUPS-Get-Devices Pause-Printer Resume-Printer Enable-Printer Disable-Printer \
Pause-Printer-After-Current-Job Hold-New-Jobs Release-Held-New-Jobs Deactivate-Printer \
Activate-Printer Restart-Printer Shutdown-Printer Startup-Printer Promote-Job Schedule-Job-After \
Cancel-Jobs CUPS-Accept-Jobs CUPS-Reject-Jobs>
    AuthType Default
    Require user @SYSTEM
    Order deny,allow
  </Limit>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
<Location /printers/{queue}>
  AuthType {auth_type}
  Require valid-user
  Order allow,deny
  Allow all
</Location>
{end}
"""

AUTH_TYPES = ("Basic", "Negotiate")  # Basic: PAM (user name + password); Negotiate: Kerberos


def auth_policy_block(queue: str, auth_type: str = "Basic", policy: str = AUTH_POLICY) -> str:
    """The ``cupsd.conf`` text that makes submitting to ``queue`` need a valid user: a
    ``<Policy>`` whose Create-Job/Print-Job/Validate-Job need ``Require valid-user`` (checked
    by cupsd: Basic against PAM, Negotiate against Kerberos), and a ``<Location
    /printers/QUEUE>`` that needs the same. cupsd then records the authenticated name as the
    job's ``job-originating-user-name``, whatever ``-U`` or requesting-user-name claims."""
    if auth_type not in AUTH_TYPES:
        raise ValueError(f"auth_type: expected one of {', '.join(AUTH_TYPES)}, got {auth_type!r}")
    return _POLICY_BLOCK.format(
        begin=_BEGIN.format(queue=queue),
        end=_END.format(queue=queue),
        policy=policy,
        queue=queue,
        auth_type=auth_type,
    )


def install_auth_policy(
    cupsd_conf: Path, queue: str, auth_type: str = "Basic", policy: str = AUTH_POLICY
) -> bool:
    """Add (or replace) the authenticated-queue block for ``queue`` in ``cupsd_conf``,
    atomically, keeping the file's mode and owner. Idempotent: returns False when the file
    already had exactly this block. cupsd reads it when it (re)starts or gets SIGHUP."""
    text = cupsd_conf.read_text()
    block = auth_policy_block(queue, auth_type, policy)
    begin, end = _BEGIN.format(queue=queue), _END.format(queue=queue)
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        new = head + block.rstrip("\n") + tail
    else:
        new = text.rstrip("\n") + "\n" + block
    if new == text:
        return False
    stat = cupsd_conf.stat()
    tmp = cupsd_conf.with_name(f".{cupsd_conf.name}.tmp")
    tmp.write_text(new)
    tmp.chmod(stat.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(tmp, stat.st_uid, stat.st_gid)
    tmp.replace(cupsd_conf)
    return True


def authenticated_queue_args(
    queue: str, policy: str = AUTH_POLICY, auth_info_required: str = ""
) -> list[str]:
    """The ``lpadmin`` command that puts ``queue`` under ``policy`` (``printer-op-policy``).
    ``auth_info_required`` (``username,password`` or ``negotiate``) also advertises it to
    print dialogs, which then ask for credentials before sending; note that cupsd then hands
    those credentials to the backend (AUTH_USERNAME/AUTH_PASSWORD), which pullprint ignores."""
    args = ["lpadmin", "-p", queue, "-o", f"printer-op-policy={policy}"]
    if auth_info_required:
        args += ["-o", f"auth-info-required={auth_info_required}"]
    return args


def main(argv: list[str] | None = None) -> int:
    """``python3 -m pullprint.cups.install authenticated-queue QUEUE [--negotiate] [--conf
    PATH]``: write the policy block into cupsd.conf and print what to run next (restart cupsd,
    then put the queue under the policy). Exit 0 done, 2 bad usage or an unreadable file."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python3 -m pullprint.cups.install")
    sub = parser.add_subparsers(dest="command", required=True)
    auth = sub.add_parser("authenticated-queue", help="make submitting to QUEUE need a valid user")
    auth.add_argument("queue", nargs="?", default="PullPrint")
    auth.add_argument("--conf", type=Path, default=Path("/etc/cups/cupsd.conf"))
    auth.add_argument("--negotiate", action="store_true", help="Kerberos instead of PAM (Basic)")
    args = parser.parse_args(argv)
    auth_type = "Negotiate" if args.negotiate else "Basic"
    try:
        changed = install_auth_policy(args.conf, args.queue, auth_type)
    except OSError as exc:
        print(f"{args.conf}: {exc.strerror}", file=sys.stderr)
        return 2
    state = "written to" if changed else "already in"
    print(f"the {auth_type} policy {AUTH_POLICY} for queue {args.queue} is {state} {args.conf}")
    info = "negotiate" if args.negotiate else ""
    print("next: restart cupsd (systemctl restart cups), then run:")
    print("  " + shlex.join(authenticated_queue_args(args.queue, auth_info_required=info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
