"""Waking long-polls: a waiting ``GET /node/events`` returns within ms of a new event.

:class:`Notifier` is the interface the API uses; :class:`LocalNotifier` implements it in-process
with one ``asyncio.Condition`` per app (one server process); :class:`PgNotifier` adds PostgreSQL
``LISTEN/NOTIFY`` so a release in one server process wakes the long-polls in every other one.

The protocol, which loses no wake-up: read ``generation(node)``, query the database, and only
if it had nothing ``await wait(node, generation, timeout)``; a ``notify(node)`` after the
database commit bumps the generation, so an event committed between the query and the wait
still ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Protocol

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Tells waiting long-polls of a node that it has new events."""

    async def start(self) -> None:
        """Bind to the running event loop (called once by the app's lifespan)."""

    async def stop(self) -> None:
        """Wake every waiter for good; later waits return at once."""

    def close_threadsafe(self) -> None:
        """Like :meth:`stop`, callable from any thread or a signal handler."""

    def generation(self, node: str) -> int:
        """The node's wake-up counter now (read it before querying the database)."""

    def notify(self, node: str) -> None:
        """Wake the node's waiters (after the commit). Callable from any thread."""

    @property
    def commit_channel(self) -> str | None:
        """The database channel to ``NOTIFY`` with a node's name inside the transaction that
        adds its event (``events.append_released(..., notify=...)``): the other server
        processes are woken when (and only if) it commits. None: nothing to notify in the
        database (one process). Call ``notify_committed`` after the commit; the two together
        do what ``notify`` does, without a transaction of their own."""

    def notify_committed(self, node: str) -> None:
        """After a commit that notified ``commit_channel``: wake this process's waiters."""

    async def wait(self, node: str, generation: int, timeout: float) -> bool:
        """Wait until the node's counter differs from ``generation``, or ``timeout`` seconds.

        Returns True when woken, False on timeout or when the notifier is closed.
        """


class LocalNotifier:
    """In-process notifier: a counter per node and one condition on the app's event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond: asyncio.Condition | None = None
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._closed = False

    async def start(self) -> None:
        """Bind to the running loop; changes nothing else (idempotent)."""
        self._loop = asyncio.get_running_loop()
        self._cond = asyncio.Condition()
        self._closed = False

    async def stop(self) -> None:
        """Mark closed and wake every waiter."""
        self._closed = True
        await self._wake_all()

    def close_threadsafe(self) -> None:
        """Mark closed and wake every waiter from any thread (e.g. a SIGTERM handler)."""
        self._closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(self._wake_all()))

    def generation(self, node: str) -> int:
        with self._lock:
            return self._generations.get(node, 0)

    def notify(self, node: str) -> None:
        """Bump the node's counter and wake waiters on the loop; safe from worker threads."""
        with self._lock:
            self._generations[node] = self._generations.get(node, 0) + 1
        self._schedule()

    @property
    def commit_channel(self) -> str | None:
        """None: in one process ``notify_committed`` wakes every waiter."""
        return None

    def notify_committed(self, node: str) -> None:
        LocalNotifier.notify(self, node)

    def _schedule(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self._wake_all())
        else:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._wake_all()))

    async def _wake_all(self) -> None:
        cond = self._cond
        if cond is None:
            return
        async with cond:
            cond.notify_all()

    async def wait(self, node: str, generation: int, timeout: float) -> bool:
        cond = self._cond
        if cond is None:
            raise RuntimeError("LocalNotifier.wait before start()")
        if timeout <= 0 or self._closed:
            return False

        def changed() -> bool:
            return self._closed or self.generation(node) != generation

        try:
            async with cond:
                await asyncio.wait_for(cond.wait_for(changed), timeout)
        except TimeoutError:
            return False
        return not self._closed


CHANNEL = "pullprint_events"
_NOTIFY_SQL = sa.text("SELECT pg_notify(:channel, :node)")
LISTEN_START_SECONDS = 10.0


class PgNotifier(LocalNotifier):
    """Wake-ups across server processes through PostgreSQL ``LISTEN/NOTIFY``.

    ``notify(node)`` wakes this process's waiters at once and sends ``NOTIFY pullprint_events,
    node`` on the database; one listening connection per process (an async psycopg
    connection on the app's loop) bumps the node's counter when any process notifies. After
    the listening connection is (re)made every waiter is woken, since notifications sent while
    it was down are lost; waiters then query the database again, so nothing is missed.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._epoch = 0  # bumped when the listening connection is (re)made: wakes every node

    async def start(self) -> None:
        """Bind to the loop and start listening (waits until the LISTEN is in place)."""
        await super().start()
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._ready.wait(), LISTEN_START_SECONDS)
        except TimeoutError:
            log.error("LISTEN %s did not start within %s s", CHANNEL, LISTEN_START_SECONDS)

    async def stop(self) -> None:
        """Stop listening, then wake every waiter for good."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    def notify(self, node: str) -> None:
        """Wake local waiters, then every process's (NOTIFY after the caller's commit)."""
        super().notify(node)
        try:
            with self._engine.connect() as conn:
                conn.execute(_NOTIFY_SQL, {"channel": CHANNEL, "node": node})
                conn.commit()
        except SQLAlchemyError as exc:
            log.warning("NOTIFY for node %s failed (its long-polls wake on timeout): %s", node, exc)

    @property
    def commit_channel(self) -> str | None:
        """``NOTIFY`` in the caller's transaction, in the statement that adds the event:
        PostgreSQL delivers it at the commit (and drops it on a rollback), with no connection
        or round trip of its own."""
        return CHANNEL

    def generation(self, node: str) -> int:
        with self._lock:
            return self._generations.get(node, 0) + (self._epoch << 40)

    def _bump_all(self) -> None:
        with self._lock:
            self._epoch += 1
        self._schedule()

    async def _listen(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if self._ready is not None:
                        self._ready.set()
                    self._bump_all()
                    delay = 0.1
                    async for note in conn.notifies():
                        LocalNotifier.notify(self, note.payload)
            except psycopg.Error as exc:
                log.warning("LISTEN %s: connection lost (%s); again in %.1f s", CHANNEL, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
