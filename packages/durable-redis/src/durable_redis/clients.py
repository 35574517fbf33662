"""The store's Redis clients, one per event loop, and the check of a URL before use.

redis-py binds a connection to the event loop that opened it, and asyncio binds its
futures (the signal subscription's waiters) to one loop too. So a store built from a
URL keeps a client per loop, and drops the client of a loop that was closed. A client
the application gave is one client: when the loop changes and the one it was used on
is not running any more, its connections are disconnected (the client is not closed)
so that they reopen on the new loop.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import AbstractEventLoop, get_running_loop
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis, RedisCluster

from .signals import SignalListener
from .urls import mask_url, misread_user_info

log = logging.getLogger("durable.redis")


class OnLoop:
    """What the store uses on one event loop: a client, and the signal subscription."""

    __slots__ = ("client", "listener", "loop", "reopening")

    def __init__(self, loop: AbstractEventLoop, client: Redis) -> None:
        self.loop = loop
        self.client = client
        self.listener: SignalListener | None = None
        #: The given client's connections being reopened on this loop.
        self.reopening: asyncio.Task[None] | None = None

    async def close(self, *, own_client: bool) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            await listener.close()
        if own_client:
            await self.client.aclose()


class LoopClients:
    """The client of each event loop the store is used on (see the module)."""

    def __init__(self, url: str, given: Redis | None, where: str) -> None:
        self._url = url
        self._given = given
        self._where = where
        self._loops: dict[AbstractEventLoop, OnLoop] = {}
        #: The one used last: the hot path compares its loop with the running one.
        self.current: OnLoop | None = None
        #: The loop the given client's connections were last used on.
        self._given_loop: AbstractEventLoop | None = None

    async def here(self) -> OnLoop:
        """The client (and signal listener) of the running event loop."""
        current, loop = self.current, get_running_loop()
        if current is not None and current.loop is loop:
            return current
        return await self.move_to(loop)

    async def move_to(self, loop: AbstractEventLoop) -> OnLoop:
        here = self._loops.get(loop)
        if here is None:
            self._forget_closed_loops()
            client = self._given if self._given is not None else self._new_client()
            here = self._loops[loop] = OnLoop(loop, client)
        if self._given is not None and self._given_loop is not loop:
            previous, self._given_loop = self._given_loop, loop
            if previous is not None and not previous.is_running():
                # Its connections belong to a loop that is closed (or idle): reopen them
                # here, before any command goes out on one and fails mid-way.
                here.reopening = loop.create_task(_reconnect(self._given, self._where))
        if here.reopening is not None:
            await asyncio.shield(here.reopening)  # concurrent callers wait for the same
            here.reopening = None
        self.current = here
        return here

    async def close(self) -> None:
        loop = get_running_loop()
        places, self._loops, self.current = self._loops, {}, None
        for here in places.values():
            own_client = here.client is not self._given
            if here.loop is loop:
                await here.close(own_client=own_client)
            elif here.loop.is_running():  # another thread's loop: closed over there
                with suppress(RuntimeError):  # it closed meanwhile
                    asyncio.run_coroutine_threadsafe(here.close(own_client=own_client), here.loop)
            # A loop that is closed took its connections' transports with it: dropped.

    def _forget_closed_loops(self) -> None:
        # Nothing can be awaited on a closed loop: its clients are dropped as they are.
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            self._loops.pop(loop, None)

    def _new_client(self) -> Redis:
        # No retries of its own: the store's Resender's (see resilience).
        try:
            client: Redis = _loose(Redis).from_url(self._url)
        except (ValueError, TypeError) as exc:  # check_url passed it: another redis-py?
            raise _bad_url(self._url, type(exc).__name__) from None
        return client


async def _reconnect(client: Redis, where: str) -> None:
    """Disconnect ``client``'s connections (opened on another event loop) so that each
    reconnects on this one; its pool and settings stay. Never raises."""
    try:
        async with asyncio.timeout(5):  # never wait on a lock held on the old loop
            if isinstance(client, RedisCluster):
                # The nodes of the slot map, and the startup nodes (their own objects).
                startup: Any = getattr(client.nodes_manager, "startup_nodes", {})
                for node in [*client.get_nodes(), *startup.values()]:
                    with suppress(Exception):
                        await node.disconnect()
            else:
                # Closing a transport of a closed loop fails; the connection is reset.
                await client.connection_pool.disconnect()
    except Exception as exc:
        log.debug("%s: connections of another event loop left as they were (%r)", where, exc)


def check_url(url: str) -> None:
    """Refuse a URL redis-py cannot use, with the URL masked: redis-py's own errors
    can quote a piece of a password that holds ``/``, ``?`` or ``#`` (as a port, a
    db, or the host of "Error connecting to ...")."""
    try:
        from redis.asyncio.connection import parse_url
    except ImportError:  # a redis-py without it: it will say so when connecting
        return
    try:
        _loose(parse_url)(url)
    except (ValueError, TypeError) as exc:
        # redis-py's reason may quote a piece of a password: shown for URLs without one.
        raise _bad_url(url, str(exc) if mask_url(url) == url else type(exc).__name__) from None
    if misread_user_info(url):
        raise _bad_url(url, "a piece of its password would be read as the host, port or path")


def _bad_url(url: str, reason: str) -> ValueError:
    masked = mask_url(url)
    hint = (
        "; a password holding '/', '?', '#' or '@' must be percent-encoded "
        "(urllib.parse.quote(password, safe=''))"
        if masked != url
        else ""
    )
    return ValueError(f"{masked!r} is not a Redis URL redis-py can connect to ({reason}){hint}")


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
