"""Waking waiters with LISTEN/NOTIFY: a delivered signal or a cancellation reaches a
workflow waiting in any process within a round trip, not at its next poll.

One connection per store and event loop listens on the schema's channel; a write that
should wake a run's waiters (``add_signal``, ``request_cancel``) calls ``pg_notify``
in its own statement, so the notification is sent when, and only if, it commits.
Notifications only wake: the engine reads the store after every wake-up, so a lost
or extra one costs a poll interval at worst. When the listening connection cannot be
opened or is cut, waiters fall back to polling (and the next wait listens again).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .connections import Conn, Connector, terminate

log = logging.getLogger("durable.postgres")

#: NOTIFY payloads must stay under 8000 bytes: longer run ids are sent as a digest.
_LONGEST_PAYLOAD = 1000


def channel(schema: str) -> str:
    return f"durable:{schema}"


def wake_key(run_id: str) -> str:
    """The payload that names ``run_id`` in a notification."""
    if len(run_id.encode()) <= _LONGEST_PAYLOAD:
        return run_id
    return "#" + hashlib.sha256(run_id.encode()).hexdigest()


class Listener:
    """Waits for a run's notifications on one listening connection."""

    def __init__(self, connector: Connector, schema: str) -> None:
        self._connector = connector
        self._channel = channel(schema)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._conn: Conn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        self._warned = False

    async def wait(
        self, run_id: str, max_wait: float, already: Callable[[], Awaitable[bool]]
    ) -> None:
        """Return when ``run_id`` is notified, or after ``max_wait`` seconds, or at once
        when ``already()`` (asked once listening, so nothing falls in between) is true."""
        woken = asyncio.Event()
        key = wake_key(run_id)
        listening = await self._listening()
        if listening:
            self._waiters.setdefault(key, set()).add(woken)
        try:
            if await already():
                return
            async with asyncio.timeout(max(max_wait, 0)):
                await woken.wait()
        except TimeoutError:
            return
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[key]

    async def _listening(self) -> bool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: the old connection is not usable
            self._drop()
            self._loop, self._opening = loop, asyncio.Lock()
        assert self._opening is not None
        async with self._opening:
            if self._conn is not None and not self._conn.is_closed():
                return True
            try:
                conn = await self._connector.listen_connection()
                await conn.add_listener(self._channel, self._notified)
            except Exception as exc:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "%s: cannot LISTEN for signals (%s); waiting workflows poll instead",
                        self._connector.shown_as,
                        self._connector.error("listen", exc),
                    )
                return False
            conn.add_termination_listener(self._cut)
            self._conn = conn
            return True

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        for woken in self._waiters.get(str(payload), ()):
            woken.set()

    def _cut(self, conn: Any) -> None:
        # The listening connection is gone: notifications may be missed from now on, so
        # every waiter looks at the store now, and the next wait listens again.
        self._conn = None
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            terminate(conn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        if self._loop is asyncio.get_running_loop():
            try:
                await conn.remove_listener(self._channel, self._notified)
                await asyncio.wait_for(self._connector.hang_up(conn), 5)
                return
            except Exception:
                pass
        terminate(conn)
