"""The hand-off from the CUPS filter and backend executables to ``pullprint submitd``, and the
Python shells' entry points.

The installed executables are the C program ``handoff.c`` (``pullprint.cups.install``), which
does this module's hand-off in ~1 ms and executes the Python shell (:func:`filter_main`,
:func:`backend_main`) only to run a job in-process, with ``PULLPRINT_SUBMIT_SOCKET=off``, its
argv[0] in ``PULLPRINT_ARGV0`` and, to finish a first run submitd took, ``PULLPRINT_RESUME=1``.
Where no C compiler was found the Python shell is the executable and does the hand-off below.

cupsd starts a filter and a backend process per job; starting Python with pikepdf, requests and
pydantic costs more than the work. So the executables start with this module only (standard
library, no ``site``: the generated shells run ``python3 -IS``; and of the standard library only
``os`` and the C modules ``_socket`` and ``_signal``: ``socket`` and ``signal`` pull in ``enum``
and ``selectors``, which doubled the interpreter's start, ~15 ms per process), connect to
submitd's UNIX socket and pass it the job's files (SCM_RIGHTS) and argv; submitd does the work
with warm imports and answers the status lines and the exit code, which the executable prints
and exits with.

Nothing depends on submitd running. Whenever the hand-off fails before submitd took the job (no
socket, refused, declined, an error), the executable imports the library and runs the job itself,
exactly as without submitd. When submitd took the job and went away before answering (a crash),
nothing is lost either: the filter spooled its input into a temp file first and runs in-process
from it (submitd writes the prepared PDF into a temp file the filter owns, copied to stdout only
after the answer); the backend spooled its document too and finishes the first run in-process
(:func:`pullprint.backend.hold.run_job` with ``resume=True``: an outbox entry left by submitd is
sent, a job submitd registered is not registered again).

Wire format (version 1): submitd greets ``READY <max_document_bytes>`` or ``REFUSED <why>``; the
client sends one request, ``<8 hex digits: length>`` then NUL-separated fields (protocol, op,
configuration path, argv count, argv..., env ``K=V``...), with its files attached; submitd
answers ``OK`` (it took the job) or ``DECLINED <why>``, then status lines, then ``EXIT <code>``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py without its enums; no stub
import _socket
import os
import sys

TYPE_CHECKING = False  # typing and collections.abc cost milliseconds here
if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SOCKET = "/run/pullprint/submit.sock"  # node.submit_socket's default
ENV_SOCKET = "PULLPRINT_SUBMIT_SOCKET"  # "" or "off": no hand-off
ENV_CONFIG = "PULLPRINT_CONFIG"  # pullprint.config.ENV_VAR
ENV_ARGV0 = "PULLPRINT_ARGV0"  # set by handoff.c: the argv[0] cupsd gave it
ENV_RESUME = "PULLPRINT_RESUME"  # "1" from handoff.c: finish the first run submitd took
DEFAULT_CONFIG = "/etc/pullprint/pullprint.toml"  # pullprint.config.DEFAULT_PATH
PROTOCOL = "pullprint-submit/1"
MAX_REQUEST = 1 << 20  # bytes of one request (argv + env); argv[5] of a real job is a few KB
BACKEND_ENV = ("PRINTER", "CLASS", "DEVICE_URI", "CONTENT_TYPE", "FINAL_CONTENT_TYPE")
CHUNK = 1 << 16
STOPPED = "pullprint: stopped while receiving; nothing was registered"
READ_WAIT = 2.0  # seconds a failed filter waits for cupsd to read its last lines (after_read)


class NotHandedOff(Exception):
    """submitd was not reached, refused the peer or declined the job: it did nothing with it."""


class Vanished(Exception):
    """submitd took the job and went away before it answered the exit code."""


def socket_path() -> str:
    """Where submitd listens: ``$PULLPRINT_SUBMIT_SOCKET`` (set by cupsd's ``SetEnv`` when
    ``node.submit_socket`` is not the default), else the default; "" when switched off."""
    path = os.environ.get(ENV_SOCKET, DEFAULT_SOCKET)
    return "" if path in ("", "off") else path


def config_path() -> str:
    """The configuration file the in-process backend would load (absolute)."""
    return os.path.realpath(os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


# -- the request ---------------------------------------------------------------------------------


def encode_request(op: str, config: str, argv: list[str], env: dict[str, str]) -> bytes:
    """One request as bytes. Raises ValueError for a NUL in a field or a request over the limit."""
    fields = [PROTOCOL, op, config, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    if any("\0" in field for field in fields):
        raise ValueError("a request field holds a NUL byte")
    body = "\0".join(fields).encode("utf-8", "surrogateescape")
    if len(body) > MAX_REQUEST:
        raise ValueError(f"request of {len(body)} bytes is over the limit of {MAX_REQUEST} bytes")
    return b"%08x" % len(body) + body


def decode_request(body: bytes) -> tuple[str, str, list[str], dict[str, str]]:
    """(op, config path, argv, env) of a request body (without its length prefix).
    Raises ValueError naming what is wrong."""
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    if len(fields) < 4 or fields[0] != PROTOCOL:
        raise ValueError(f"not a {PROTOCOL} request")
    try:
        count = int(fields[3])
    except ValueError:
        raise ValueError(f"argv count {fields[3]!r} is not a number") from None
    if not 0 <= count <= len(fields) - 4:
        raise ValueError(f"argv count {count} does not match the request")
    argv = fields[4 : 4 + count]
    env = dict(item.partition("=")[::2] for item in fields[4 + count :])
    return fields[1], fields[2], argv, env


# -- the client ----------------------------------------------------------------------------------


def connect(path: str, timeout: float = 2.0) -> tuple[_socket.socket, int]:
    """Connect to submitd and read its greeting; returns (socket, max document bytes).
    Raises NotHandedOff (no socket, refused, no greeting)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        greeting = _readline(sock)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        raise NotHandedOff(f"submitd at {path}: {exc.strerror or exc}") from None
    word, _, rest = greeting.partition(" ")
    if word != "READY" or not rest.isdigit():
        sock.close()
        raise NotHandedOff(f"submitd at {path}: {greeting or 'closed the connection'}")
    return sock, int(rest)


def _readline(sock: _socket.socket) -> str:
    """One line from ``sock`` (without its newline), "" at end of stream."""
    data = bytearray()
    while not data.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
    return data.decode("utf-8", "replace").rstrip("\n")


def send_fds(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """``data`` with ``fds`` attached (SCM_RIGHTS, an array of C ints), as socket.send_fds."""
    rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    if sent < len(data):
        sock.sendall(data[sent:])


def _lines(sock: _socket.socket) -> Iterator[bytes]:
    """The whole lines (with their newline) ``sock`` sends until it closes."""
    pending = b""
    while chunk := sock.recv(CHUNK):
        *whole, pending = (pending + chunk).split(b"\n")
        for line in whole:
            yield line + b"\n"


def submit(sock: _socket.socket, request: bytes, fds: list[int]) -> int:
    """Send the request with ``fds``, copy submitd's status lines to stderr, return its exit code.
    Raises NotHandedOff (declined, or gone before it took the job) or Vanished."""
    try:
        send_fds(sock, request, fds)
        answer = _readline(sock)
    except OSError as exc:
        raise NotHandedOff(f"submitd: {exc.strerror or exc}") from None
    if answer != "OK":
        raise NotHandedOff(f"submitd: {answer or 'closed the connection'}")
    err = sys.stderr
    try:
        for raw in _lines(sock):
            line = raw.decode("utf-8", "replace")
            if line.startswith("EXIT "):
                return int(line[5:])
            err.write(line)
            err.flush()
    except (OSError, ValueError):
        pass
    raise Vanished("submitd went away before it answered")


def temp_file() -> int:
    """An anonymous temp file in $TMPDIR (cupsd gives each job one), read-write; gone when
    closed, also after a crash."""
    folder = os.environ.get("TMPDIR") or "/tmp"
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:  # a file system without O_TMPFILE: a named file, unlinked at once
        path = os.path.join(folder, f".pullprint-{os.getpid()}-{id(folder)}")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.unlink(path)
        return fd


def spool_stdin(limit: int) -> int:
    """Copy stdin into a temp file, at most ``limit`` + 1 bytes (more is refused by submitd
    with the limit's message); returns the file, positioned at its start."""
    fd = temp_file()
    left = limit + 1
    while left > 0:
        chunk = os.read(0, min(CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def copy_out(fd: int) -> None:
    """Write the file ``fd`` from its start to stdout."""
    sys.stdout.flush()
    offset = 0
    while True:
        try:
            sent = os.sendfile(1, fd, offset, CHUNK * 16)
        except OSError:
            os.lseek(fd, offset, os.SEEK_SET)
            while chunk := os.read(fd, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(1, view) :]
            return
        if sent == 0:
            return
        offset += sent


def _debug(text: str) -> None:
    sys.stderr.write(f"DEBUG: pullprint: {' '.join(text.split())}\n")
    sys.stderr.flush()


def _in_process() -> None:
    """Make the whole library importable: the shells start without ``site`` (``-S``)."""
    if sys.flags.no_site:
        import site

        site.main()


def open_document(argv: list[str], limit: int) -> tuple[int, bool]:
    """The job's document as an open file: argv[6], else stdin spooled into a temp file (then
    the second item is True: the in-process run reads it back with :func:`_restore_stdin`)."""
    if len(argv) == 7:
        return os.open(argv[6], os.O_RDONLY), False
    return spool_stdin(limit), True


def _restore_stdin(fd: int) -> None:
    """Make the spooled temp file stdin again, from its start (for the in-process run)."""
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)


# -- the two executables ---------------------------------------------------------------------


def _from_handoff_c(argv: list[str]) -> bool:
    """Take what handoff.c passed when it executed this shell: argv[0] back in ``argv``;
    returns True when it asks to finish a first run submitd took (``resume``)."""
    argv0 = os.environ.pop(ENV_ARGV0, None)
    if argv0 is not None and argv:
        argv[0] = argv0
    return os.environ.pop(ENV_RESUME, "") == "1"


def _reach(argv: list[str]) -> tuple[_socket.socket, int] | None:
    """The connection to submitd for a job's argv, or None (no job, switched off, not there)."""
    path = socket_path()
    if not path or len(argv) not in (6, 7):
        return None
    try:
        return connect(path)
    except NotHandedOff as exc:
        _debug(f"running in-process: {exc}")
        return None


def after_read(code: int, wait: float = READ_WAIT) -> int:
    """A failed filter's exit code, once cupsd has read its status lines. cupsd shows the first
    ``ERROR:`` line it reads as the job's printer-state-message, unless it reaped the failed
    filter first: then "Filter failed" stands and the line that says why is only logged. So
    before a nonzero exit the filter waits (``wait`` seconds at most) until its stderr pipe is
    empty: cupsd parses all it read before it looks at exited children (handoff.c does the
    same)."""
    sys.stderr.flush()
    if code == 0:
        return code
    import fcntl
    import termios
    import time

    try:
        if os.fstat(2).st_mode & 0o170000 != 0o010000:  # not a pipe (stat.S_IFIFO)
            return code
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            unread = fcntl.ioctl(2, termios.FIONREAD, b"\0\0\0\0")
            if int.from_bytes(unread, sys.byteorder) <= 0:
                break
            time.sleep(0.002)
    except OSError:
        pass
    return code


def filter_main(argv: list[str] | None = None) -> int:
    """The filter executable ``pullprint-finish``: hand off to submitd, else run in-process."""
    return after_read(_filter(list(sys.argv if argv is None else argv)))


def _filter(argv: list[str]) -> int:
    _from_handoff_c(argv)
    spooled: int | None = None
    reached = _reach(argv)
    if reached is not None:
        sock, limit = reached
        try:
            source, from_stdin = open_document(argv, limit)
            spooled = source if from_stdin else None
            out = temp_file()
            code = submit(sock, encode_request("filter", "", argv, {}), [source, out])
        except (NotHandedOff, Vanished, OSError, ValueError) as exc:
            _debug(f"running in-process: {exc}")
        else:
            if code == 0:
                copy_out(out)
            return code
        finally:
            sock.close()
    if spooled is not None:
        _restore_stdin(spooled)
    _in_process()
    from pullprint.filters.finish import main

    return main(argv)


class _Stop(Exception):
    pass


def backend_main(argv: list[str] | None = None) -> int:
    """The backend executable ``pullprint``: hand a job's first run off to submitd, else run
    in-process (discovery, re-runs of held jobs, no submitd)."""
    argv = list(sys.argv if argv is None else argv)
    resume = _from_handoff_c(argv)
    spooled: int | None = None
    reached = None if resume else _reach(argv)
    if reached is not None:
        sock, limit = reached
        stopping = [False, True]  # [SIGTERM came, reading stdin (interruptible)]

        def on_term(_sig: int, _frame: object) -> None:
            stopping[0] = True
            if stopping[1]:
                raise _Stop

        _signal.signal(_signal.SIGTERM, on_term)
        try:
            document, from_stdin = open_document(argv, limit)
            spooled = document if from_stdin else None
            stopping[1] = False
            if stopping[0]:
                raise _Stop
            env = {k: os.environ[k] for k in BACKEND_ENV if k in os.environ}
            request = encode_request("backend", config_path(), argv, env)
            return submit(sock, request, [document])
        except _Stop:
            sys.stderr.write(f"INFO: {STOPPED}\n")
            return 1  # CUPS_BACKEND_FAILED, as the in-process backend
        except Vanished as exc:
            _debug(f"finishing in-process: {exc}")
            resume = True
        except (NotHandedOff, OSError, ValueError) as exc:
            _debug(f"running in-process: {exc}")
        finally:
            stopping[1] = False
            sock.close()
        _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    if spooled is not None:
        _restore_stdin(spooled)
    _in_process()
    from pullprint.backend.main import main

    return main(argv, resume=resume)
