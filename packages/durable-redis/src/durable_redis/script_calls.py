"""Sending the store's commands, and calling the Lua scripts of :mod:`durable_redis.scripts`
by their SHA: one run at a time, next to an index write, or over many runs in one
pipeline.

A server knows a script only after ``SCRIPT LOAD`` (or an ``EVAL``), and forgets it
when it restarts, so every call here loads the script again when the server says
``NOSCRIPT``. A Redis Cluster client refuses ``EVALSHA`` in pipelines: there, calls
go one after another (each is still atomic, a run's keys being in one slot).
"""

from __future__ import annotations

import time
from asyncio import get_running_loop
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError

from .clients import LoopClients
from .keys import KeyLayout
from .resilience import Resender, resendable
from .scripts import Script

T = TypeVar("T")

#: One script call on one run: its two keys (see KeyLayout.run_keys) and the ARGV.
Call = tuple[tuple[str, str], Sequence[str | int]]


class Sender:
    """Sends a store operation on the running event loop's client, and resends it
    after a broken connection (:class:`~durable_redis.resilience.Resender`); ``what``
    says what failed in the ``StoreError`` that ends it."""

    def __init__(self, clients: LoopClients, resender: Resender, keys: KeyLayout) -> None:
        self._clients = clients
        self._resender = resender
        self._keys = keys

    async def run(self, what: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        client = (await self._clients.here()).client
        return await self._resender.run(what, lambda: call(client))

    async def hot_script(
        self, what: str, script: Script, keys: tuple[str, str], args: Sequence[str | int]
    ) -> Any:
        """``run_script`` for the hot path (a checkpoint): no closure and no retry
        machinery unless the first try fails."""
        here = self._clients.current
        if here is None or here.loop is not get_running_loop():
            here = await self._clients.move_to(get_running_loop())
        client = here.client
        try:
            return await run_script(client, script, keys, args)
        except RedisError as exc:
            if not resendable(exc):
                raise self._resender.error(what, exc) from exc
            return await self._resender.resend(
                what, lambda: run_script(client, script, keys, args), exc
            )

    async def hgetall(self, what: str, run_id: str) -> dict[Any, Any]:
        key = self._keys.run_key(run_id)
        return await self.run(what, lambda client: client.hgetall(key))

    async def script(
        self, what: str, script: Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        """``script`` on the run's two keys."""
        keys = self._keys.run_keys(run_id)
        return await self.run(what, lambda client: run_script(client, script, keys, args))

    async def indexed(
        self, what: str, script: Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        """``script`` on the run's keys, and the run into the index (see
        :func:`run_script_indexed`) unless it is there."""
        keys, index, score = self._keys.run_keys(run_id), self._keys.index, time.time()
        return await self.run(
            what,
            lambda client: run_script_indexed(
                client, script, keys, args, index=index, run_id=run_id, score=score
            ),
        )


async def run_script(
    client: Redis, script: Script, keys: tuple[str, str], args: Sequence[str | int]
) -> Any:
    """EVALSHA, loading the script first if the server does not know it (yet, or any
    more: a restarted server has an empty script cache)."""
    try:
        return await client.evalsha(script.sha, 2, *keys, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, 2, *keys, *args)


async def run_script_indexed(
    client: Redis,
    script: Script,
    keys: tuple[str, str],
    args: Sequence[str | int],
    *,
    index: str,
    run_id: str,
    score: float,
) -> Any:
    """``run_script`` plus ``ZADD NX index score run_id``, pipelined: one round trip.

    The index entry goes first, so that a crash in between leaves an entry without a
    record (``list_runs`` skips and prunes it), never a record missing from the index.
    It is a separate command, not part of the script, because on a Redis Cluster the
    index lives in another slot than the run's hash.
    """
    if isinstance(client, RedisCluster):  # its pipelines refuse EVALSHA: two round trips
        await client.zadd(index, {run_id: score}, nx=True)
        return await run_script(client, script, keys, args)
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        pipe.zadd(index, {run_id: score}, nx=True)
        pipe.evalsha(script.sha, 2, *keys, *args)
        try:
            results: list[Any] = await pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            await client.script_load(script.source)
            continue
        return results[-1]
    raise AssertionError("unreachable")


async def run_script_many(client: Redis, script: Script, calls: Sequence[Call]) -> list[Any]:
    """One script on many runs: pipelined, or one call after another on a Cluster (its
    pipelines refuse EVALSHA). For bulk maintenance, not for hot paths."""
    if not calls:
        return []
    await client.script_load(script.source)
    if isinstance(client, RedisCluster):
        return [await run_script(client, script, keys, args) for keys, args in calls]
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.evalsha(script.sha, 2, *keys, *args)
    results: list[Any] = await pipe.execute()
    return results
