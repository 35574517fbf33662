"""One store, many event loops (issue #14): ``asyncio.run()`` twice, or loops in threads.

redis-py binds a connection to the event loop that opened it. A store built from a
URL keeps a client per loop (the client of a closed loop is dropped, never awaited);
a client given to the store has its connections reopened on the new loop. A run
never stays ``running`` with a live lease behind a loop's error.

These tests are plain functions: each ``asyncio.run`` makes and closes its own loop.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from durable import Workflow
from durable_redis import RedisStore

from .conftest import REDIS_URL, require_redis_server


def build(store: RedisStore) -> tuple[Workflow, Any, Any]:
    """A workflow of three steps, and one that waits for a signal it sends itself
    (so the store's pub/sub listener is used on each loop)."""
    wf = Workflow("loops", db=store)

    @wf.task
    async def double(i: int) -> int:
        return i * 2

    @wf.workflow(id="sum-{key}")
    async def total(key: str) -> int:
        return sum([await double(i, step_id=f"s{i}") for i in range(3)])

    @wf.workflow(id="wait-{key}")
    async def waiting(key: str) -> Any:
        return await wf.signal("go", poll=30.0)

    return wf, total, waiting


def run_twice(store: RedisStore, after: Callable[[], Awaitable[None]] | None = None) -> None:
    """Two runs of each workflow, each in an ``asyncio.run()`` of its own, then a look
    at their records from a third loop (and ``after()`` there, once the Workflow closed)."""
    wf, total, waiting = build(store)

    async def one(key: str) -> tuple[int, Any]:
        async def deliver() -> None:
            await asyncio.sleep(0.2)  # the run waits by then: pub/sub must wake it
            assert await wf.complete(f"wait-{key}", "go", key)

        sender = asyncio.create_task(deliver())
        # The run's own wait must be woken by pub/sub well before its 30 s poll.
        got = await asyncio.wait_for(waiting(key), 10)
        await sender
        return await total(key), got

    assert asyncio.run(one("first")) == (6, "first")
    assert asyncio.run(one("second")) == (6, "second")  # a new loop, the same Workflow

    async def records() -> list[Any]:
        found = [await wf.get_run(run_id) for run_id in ("sum-second", "wait-second")]
        await wf.close()
        if after is not None:
            await after()
        return found

    for record in asyncio.run(records()):
        assert record is not None
        assert (record.status, record.owner, record.lease_expires_at) == ("completed", None, None)


def test_one_workflow_in_two_event_loops_on_a_server(prefix: str) -> None:
    run_twice(RedisStore(REDIS_URL, prefix=prefix))


def test_one_workflow_in_two_event_loops_from_a_url(prefix: str) -> None:
    wf_store = Workflow("url", db=f"{REDIS_URL}?prefix={prefix}").store
    assert isinstance(wf_store, RedisStore)
    run_twice(wf_store)


def test_one_workflow_in_two_event_loops_on_fakeredis() -> None:
    run_twice(RedisStore(client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())))


def test_a_given_client_is_reconnected_on_the_next_loop(prefix: str) -> None:
    """A redis.asyncio.Redis the application made, used from two loops in turn: its
    connections of the closed loop are reopened, and the store never closes it."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)

    async def still_open() -> None:
        assert await client.ping()  # after wf.close(), on the loop the store last used
        await client.aclose()

    run_twice(RedisStore(client=client, prefix=prefix), still_open)


def test_a_run_in_a_new_loop_leaves_no_live_lease_behind(prefix: str) -> None:
    """Before #14 the second loop's claim went out on a connection of the closed loop:
    the run was claimed, then "Event loop is closed", and it stayed running, leased."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    wf, total, _ = build(store)
    assert asyncio.run(total("a")) == 6
    try:
        asyncio.run(total("b"))
    finally:

        async def record() -> Any:
            found = await RedisStore(REDIS_URL, prefix=prefix).get_run("sum-b")
            await wf.close()
            return found

        found = asyncio.run(record())
        assert found is None or found.owner is None, f"left leased: {found}"
    assert found is not None
    assert found.status == "completed"


def test_event_loops_in_threads_at_once(prefix: str) -> None:
    """Loops running at the same time in threads each get their own client."""
    require_redis_server()
    store = RedisStore(REDIS_URL, prefix=prefix)
    wf, total, _ = build(store)
    results: dict[str, Any] = {}
    started = threading.Barrier(4)

    def in_thread(key: str) -> None:
        async def main() -> int:
            await asyncio.to_thread(started.wait, 10)
            return int(await total(key))

        try:
            results[key] = asyncio.run(main())
        except BaseException as exc:  # reported below
            results[key] = exc

    threads = [threading.Thread(target=in_thread, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {f"t{i}": 6 for i in range(4)}
    asyncio.run(wf.close())


@pytest.mark.parametrize("given", [False, True], ids=["url", "given-client"])
def test_close_then_another_loop(prefix: str, given: bool) -> None:
    """close() on one loop, then the store used again on a new one (setup may follow)."""
    client = redis.asyncio.Redis.from_url(REDIS_URL) if given else None
    store = RedisStore(REDIS_URL, prefix=prefix, client=client)
    wf, total, _ = build(store)

    async def once(key: str) -> int:
        result = int(await total(key))
        await wf.close()
        return result

    assert asyncio.run(once("x")) == 6
    assert asyncio.run(once("y")) == 6


def test_a_given_cluster_client_is_reconnected_on_the_next_loop(cluster_port: int) -> None:
    client = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster_port)

    async def close_client() -> None:
        await client.aclose()

    run_twice(RedisStore(client=client, prefix=f"loops-{uuid.uuid4().hex[:8]}"), close_client)
