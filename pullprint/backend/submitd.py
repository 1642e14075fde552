"""``pullprint submitd``: the resident helper the CUPS filter and backend hand jobs to.

Per job, cupsd starts the filter ``pullprint-finish`` and the backend ``pullprint``; as full
Python programs each spends longer importing pikepdf, requests and pydantic than working. With
submitd running, both executables start with the standard library only
(:mod:`pullprint.cups.handoff`), pass their files over this UNIX socket (SCM_RIGHTS) with argv,
and print what submitd answers. submitd keeps the imports warm and reuses keep-alive HTTP
sessions to the cloud, and does exactly what the executables do in-process:

- ``filter``: :func:`pullprint.filters.finish.run` (sanitise, lay out, count), reading the
  client's input file and writing the prepared PDF into the client's output file;
- ``backend``: the first run of a job, :func:`pullprint.backend.hold.run_job` (spool, inspect,
  outbox, register), answered as soon as the job is registered: the backend exits 3 and cupsd
  holds the job. Its document is uploaded after the answer by one uploader thread, holding the
  outbox entry's lock until it is done; an upload that fails (or a submitd that stopped first)
  leaves the entry to the node's outbox loop. A release that comes before the upload waits
  for it in the cloud (``jobs.DOCUMENT_WAIT_SECONDS``). Re-runs of a held job (a
  release) are declined: the backend runs them in-process, so a job's records and outbox
  semantics are the backend's own.

Peers are authenticated by their credentials (SO_PEERCRED): root (the backend), ``lp`` (the
filter, cupsd's ``User``) and submitd's own user; anyone else is refused, with the reason logged.
submitd runs as the owner of ``node.spool_dir`` (the system user ``pullprint``), never needing
root: the files it gets are already open. Its socket is mode 0666 in a folder of its own
(``/run/pullprint``, systemd's RuntimeDirectory); the credentials check is the access control.
A connection error before submitd took the job, or submitd going away after, makes the
executable run the job itself (see :mod:`pullprint.cups.handoff`): no job depends on it.

Test hook: with ``PULLPRINT_FAULT`` set to one of :data:`FAULT_STEPS`, submitd kills itself
with SIGKILL at that step (after taking a filter or backend job, after registering it, before
answering the exit code, before uploading a held job's document).
"""

from __future__ import annotations

import logging
import os
import pwd
import queue
import signal
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pullprint import config as configmod
from pullprint import startup
from pullprint.backend.hold import BackendContext, Cloud, UploadLater, cups_job_uuid, run_job
from pullprint.backend.spool import Spool
from pullprint.cloudsync.client import CloudClient
from pullprint.cloudsync.outbox import Claim, Outbox, OutboxEntry
from pullprint.cups import handoff
from pullprint.cups.protocol import CancelFlag, StatusWriter, parse_job_args, queue_of
from pullprint.daemon.journal import fault_point
from pullprint.errors import CloudError
from pullprint.filters import finish
from pullprint.model import Job, JobSubmission

log = logging.getLogger(__name__)

FAULT_STEPS = (
    "submitd-filter-accepted",
    "submitd-filter-answered",
    "submitd-backend-accepted",
    "submitd-registered",
    "submitd-backend-answered",
    "submitd-uploading",
)
UPLOADS_DRAIN_SECONDS = 30.0  # close() waits this long for queued uploads; the rest stay queued
# in the outbox, for the node's outbox loop
MAX_QUEUED_UPLOADS = 64  # past this many waiting uploads (a slow cloud), a job uploads before
# its answer again: each queued one holds its entry's lock (an open file)
MAX_SOCKET_PATH = 107  # bytes of sun_path on Linux, less the final NUL
REQUEST_SECONDS = 3600.0  # a client has this long to send its request after the greeting: a
# backend sends it once it has spooled its whole input, i.e. after the filters (a 1 GB PDF: ~60 s)
_PEERCRED = struct.Struct("3i")


class SubmitdError(Exception):
    """submitd cannot start (the message names the key or file to fix)."""


class Declined(Exception):
    """This request is not submitd's to run (the client runs it in-process)."""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def allowed_peers() -> dict[int, str]:
    """The uids that may hand off jobs: root (the backend), lp (the filter) and ourselves."""
    peers = {0: "root", os.geteuid(): _user(os.geteuid())}
    try:
        peers[pwd.getpwnam("lp").pw_uid] = "lp"
    except KeyError:
        pass
    return peers


def check_setup(node: configmod.NodeConfig) -> Path:
    """The socket path, after checking the configuration and the spool's owner.
    Raises SubmitdError naming the key to fix."""
    if not node.submit_socket:
        raise SubmitdError("node.submit_socket is empty: submitd is switched off")
    path = Path(node.submit_socket)
    if not path.is_absolute():
        raise SubmitdError(f"node.submit_socket: expected an absolute path, got {str(path)!r}")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SubmitdError(
            f"node.submit_socket: {len(os.fsencode(path))} bytes, over the limit of "
            f"{MAX_SOCKET_PATH} bytes of a UNIX socket path"
        )
    try:
        owner = node.spool_dir.stat().st_uid
    except FileNotFoundError:
        return path  # made by us on the first job, then owned by us
    if owner != os.geteuid():
        raise SubmitdError(
            f"node.spool_dir {node.spool_dir} is owned by {_user(owner)}, submitd runs as "
            f"{_user(os.geteuid())}: run submitd as the spool's owner (the unit "
            "pullprint-submitd.service runs it as pullprint)"
        )
    return path


class _Probe(Exception):
    """The peer closed the connection without a request."""


class _FaultCloud:
    """The cloud of one job, with the test hook after the registration."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def register(self, submission: JobSubmission) -> Job:
        job = self.cloud.register(submission)
        fault_point("submitd-registered")
        return job

    def upload_document(self, uuid: str, path: Path) -> None:
        self.cloud.upload_document(uuid, path)

    def get_job(self, uuid: str) -> Job:
        return self.cloud.get_job(uuid)

    def operator_release(self, uuid: str, printer: str, operator: str) -> Job:
        return self.cloud.operator_release(uuid, printer, operator)


@dataclass(frozen=True)
class _Upload:
    """A held job's document to upload, with the lock on its outbox entry."""

    outbox: Outbox
    claim: Claim
    entry: OutboxEntry


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the jobs being handled
    request_queue_size = 64

    def __init__(self, path: Path, submitd: Submitd) -> None:
        self.submitd = submitd
        super().__init__(str(path), _Handler, bind_and_activate=False)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.submitd.handle(self.request)


class Submitd:
    """The server. ``start()`` binds the socket, ``serve_forever()`` serves until
    ``shutdown()`` (from another thread), ``close()`` waits for running jobs and removes the
    socket."""

    def __init__(self, config: configmod.Config) -> None:
        self.node = config.node
        self.config_path = os.path.realpath(config.path or configmod.DEFAULT_PATH)
        self.path = check_setup(self.node)
        self.peers = allowed_peers()
        self.tmpdir = os.environ.get("TMPDIR") or None
        self._clients: queue.SimpleQueue[CloudClient] = queue.SimpleQueue()
        self._server: _Server | None = None
        self._uploads: queue.SimpleQueue[_Upload | None] = queue.SimpleQueue()
        self._uploader: threading.Thread | None = None

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> Submitd:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._remove_stale_socket()
        server = _Server(self.path, self)
        try:
            server.server_bind()
            self.path.chmod(0o666)  # who may hand off is checked by credentials
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._uploader = threading.Thread(
            target=self._upload_loop,
            name="uploader",
            daemon=True,  # close() waits for it
        )
        self._uploader.start()
        names = ", ".join(f"{name} ({uid})" for uid, name in sorted(self.peers.items()))
        log.info("submitd listening on %s for %s", self.path, names)
        return self

    def _remove_stale_socket(self) -> None:
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise SubmitdError(f"node.submit_socket: {self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)  # left by a submitd that died
            return
        finally:
            probe.close()
        raise SubmitdError(f"node.submit_socket: another submitd listens on {self.path}")

    def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        self._server.serve_forever(poll_interval=0.5)

    def shutdown(self) -> None:
        """Stop taking connections (call from another thread than serve_forever)."""
        if self._server is not None:
            self._server.shutdown()

    def close(self) -> None:
        """Wait for the jobs being handled, remove the socket, finish the queued uploads (for
        at most UPLOADS_DRAIN_SECONDS), close the cloud sessions."""
        if self._server is not None:
            self._server.server_close()
            self._server = None
            self.path.unlink(missing_ok=True)
        if self._uploader is not None:
            self._uploads.put(None)
            self._uploader.join(UPLOADS_DRAIN_SECONDS)
            if self._uploader.is_alive():
                log.warning(
                    "uploads still queued after %.0f s; the node's outbox loop sends them",
                    UPLOADS_DRAIN_SECONDS,
                )
            self._uploader = None
        while True:
            try:
                self._clients.get_nowait().close()
            except queue.Empty:
                break

    @contextmanager
    def _cloud(self) -> Iterator[CloudClient]:
        """A keep-alive cloud session for one job (one per concurrent job, reused)."""
        try:
            client = self._clients.get_nowait()
        except queue.Empty:
            node = self.node
            client = CloudClient(
                node.cloud_url, node.token, timeout=node.register_timeout, verify=node.cloud_verify
            )
        try:
            yield client
        finally:
            self._clients.put(client)

    # -- uploads after the answer --------------------------------------------------------------
    def upload_later(self, later: list[_Upload]) -> UploadLater | None:
        """What a first run hands its upload to (collected in ``later``, queued after the
        answer), or None when MAX_QUEUED_UPLOADS wait already: the run uploads before it
        answers, which slows the queue down to what the cloud takes."""
        if self._uploads.qsize() >= MAX_QUEUED_UPLOADS:
            log.info("%d uploads wait: this job uploads before it is held", MAX_QUEUED_UPLOADS)
            return None
        return lambda outbox, claim, entry: later.append(_Upload(outbox, claim, entry))

    def _upload_loop(self) -> None:
        """Upload the documents of held jobs, in the order they were held, until None."""
        while (item := self._uploads.get()) is not None:
            uuid = item.entry.submission.uuid
            try:
                fault_point("submitd-uploading")
                with self._cloud() as cloud:
                    item.outbox.upload(item.claim.path, item.entry, cloud)
            except CloudError as exc:
                log.warning(
                    "job %s: document not uploaded (%s); it waits in the outbox for the node",
                    uuid,
                    exc,
                )
            except Exception:
                log.exception("job %s: upload failed; it waits in the outbox for the node", uuid)
            finally:
                item.claim.release()

    # -- one connection -----------------------------------------------------------------------
    def handle(self, conn: socket.socket) -> None:
        later: list[_Upload] = []
        try:
            self._handle(conn, later)
        finally:
            for item in later:  # after the answer: the upload does not delay the hold
                self._uploads.put(item)

    def _handle(self, conn: socket.socket, later: list[_Upload]) -> None:
        pid, uid, gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid not in self.peers:
            allowed = ", ".join(f"{name} ({n})" for n, name in sorted(self.peers.items()))
            reason = f"uid {uid} may not hand off jobs (only {allowed} may)"
            log.warning(
                "refused a connection from pid %d (uid %d, gid %d): %s", pid, uid, gid, reason
            )
            _send(conn, f"REFUSED {reason}")
            return
        _send(conn, f"READY {self.node.max_document_bytes}")
        fds: list[int] = []
        try:
            op, config, argv, env, fds = self._receive(conn)
            started = time.monotonic()
            if op == "filter":
                code = self._filter(conn, argv, fds)
            elif op == "backend" and uid != 0:
                # cupsd runs the backend (0700) as root only; lp runs filters. A backend run names
                # the job's owner, so a process of lp (another queue's filter) must not forge one.
                log.warning("refused a backend request from pid %d (uid %d): not root", pid, uid)
                raise Declined(f"a backend run is handed off by root only, not uid {uid}")
            elif op == "backend":
                code = self._backend(conn, config, argv, env, fds, later)
            else:
                raise Declined(f"unknown request {op!r}")
        except _Probe:
            return  # connected and closed (a readiness check)
        except Declined as exc:
            log.info("declined a request from pid %d (uid %d): %s", pid, uid, exc)
            try:
                _send(conn, f"DECLINED {exc}")
            except OSError:
                pass
            return
        except OSError as exc:
            log.warning("connection from pid %d (uid %d) failed: %s", pid, uid, exc)
            return
        except Exception:
            # The client finishes the job in-process (it sees no exit code).
            log.exception("%s request of pid %d failed; the client runs it in-process", op, pid)
            return
        finally:
            for fd in fds:
                _close(fd)
        fault_point(f"submitd-{op}-answered")
        ms = (time.monotonic() - started) * 1000
        on = f" on {env['PRINTER']}" if env.get("PRINTER") else ""  # a class's member
        log.info("%s job %s of pid %d%s: exit %d in %.0f ms", op, argv[1], pid, on, code, ms)
        _send(conn, f"EXIT {code}")

    def _receive(
        self, conn: socket.socket
    ) -> tuple[str, str, list[str], dict[str, str], list[int]]:
        conn.settimeout(REQUEST_SECONDS)
        data, fds, flags, _ = socket.recv_fds(conn, 1 << 16, 4)
        try:
            if flags & socket.MSG_CTRUNC:
                raise Declined("too many files attached")
            if not data:
                raise _Probe
            if len(data) < 8:
                raise Declined("no request")
            try:
                length = int(data[:8], 16)
            except ValueError:
                raise Declined("no request length") from None
            if length > handoff.MAX_REQUEST:
                raise Declined(
                    f"request of {length} bytes, over the limit of {handoff.MAX_REQUEST}"
                )
            body = bytearray(data[8:])
            while len(body) < length:
                more = conn.recv(length - len(body))
                if not more:
                    raise Declined("request cut short")
                body += more
            try:
                op, config, argv, env = handoff.decode_request(bytes(body))
            except ValueError as exc:
                raise Declined(str(exc)) from None
        except BaseException:
            for fd in fds:
                _close(fd)
            raise
        conn.settimeout(None)
        return op, config, argv, env, fds

    def _filter(self, conn: socket.socket, argv: list[str], fds: list[int]) -> int:
        if len(fds) != 2 or len(argv) not in (6, 7):
            raise Declined("a filter request has argv of 6 or 7 and two files (input, output)")
        source, target = os.fdopen(fds[0], "rb"), os.fdopen(fds[1], "wb")
        fds.clear()  # closed with the file objects
        with source, target, conn.makefile("w", encoding="utf-8", errors="replace") as lines:
            _send(conn, "OK")
            fault_point("submitd-filter-accepted")
            target.truncate(0)
            # argv[6], CUPS's spool file, may not be readable here: the input is the open file.
            status = StatusWriter(lines)
            code = finish.run(argv, source, target, status, self.tmpdir, opened=True, direct=True)
            return int(code)

    def _backend(
        self,
        conn: socket.socket,
        config: str,
        argv: list[str],
        env: dict[str, str],
        fds: list[int],
        later: list[_Upload],
    ) -> int:
        if len(fds) != 1:
            raise Declined("a backend request has one file (the document)")
        if os.path.realpath(config) != self.config_path:
            raise Declined(f"the backend uses {config}, submitd {self.config_path}")
        try:
            args = parse_job_args(argv)
        except ValueError as exc:
            raise Declined(str(exc)) from None
        queue_name = queue_of(env)
        spool = Spool(self.node.spool_dir).ensure()
        record = spool.load_record(cups_job_uuid(args, queue_name))
        if record is not None and record.stage == "held":
            raise Declined(f"CUPS job {args.job_id} was held before: the backend runs its re-run")
        source: BinaryIO = os.fdopen(fds.pop(), "rb")
        with source, conn.makefile("w", encoding="utf-8", errors="replace") as lines:
            _send(conn, "OK")
            fault_point("submitd-backend-accepted")
            with self._cloud() as cloud:
                ctx = BackendContext(
                    config=self.node,
                    queue=queue_name,
                    status=StatusWriter(lines),
                    cancel=CancelFlag(),
                    cloud=_FaultCloud(cloud),
                    upload_later=self.upload_later(later),
                )
                return int(run_job(ctx, args, source))


def _send(conn: socket.socket, line: str) -> None:
    conn.sendall(f"{' '.join(line.split())}\n".encode())


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def serve(config: configmod.Config) -> None:
    """Run submitd until SIGTERM or SIGINT; then finish the jobs being handled and exit."""
    submitd = Submitd(config).start()
    startup.freeze()

    def stop(_sig: int, _frame: object) -> None:
        threading.Thread(target=submitd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        submitd.serve_forever()
    finally:
        submitd.close()
        log.info("submitd stopped")
