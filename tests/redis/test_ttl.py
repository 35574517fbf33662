"""Expiry: a run (one hash) lives ``ttl`` seconds after its last write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from durable import Workflow
from durable_redis import RedisStore

StoreMaker = Callable[..., Awaitable[RedisStore]]


@pytest.fixture
async def make_store(redis_url: str, prefix: str) -> AsyncIterator[StoreMaker]:
    stores: list[RedisStore] = []

    async def make(ttl: float | None) -> RedisStore:
        store = RedisStore(redis_url, ttl=ttl, prefix=prefix)
        await store.setup()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def pttl(client: Any, store: RedisStore, run_id: str) -> int:
    ttl: int = await client.pttl(store.keys.run_key(run_id))
    return ttl


async def write_everything(store: RedisStore, run_id: str) -> None:
    # A lease within the shortest ttl used here: a longer one is refused (test_fencing).
    await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=0.5)
    await store.set_step(run_id, "s", 1)
    await store.set_signal(run_id, "go", 1)


async def test_every_write_sets_the_ttl_of_the_run_on_fakeredis() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    store = RedisStore(client=client, ttl=60)
    await write_everything(store, "r")
    assert 57_000 < await pttl(client, store, "r") <= 60_000
    forever = RedisStore(client=client, ttl=None)
    await forever.set_step("r", "t", 2)  # the store that last wrote decides
    assert await pttl(client, store, "r") == -1


async def test_ttl_none_means_no_expiry(make_store: StoreMaker, redis_url: str) -> None:
    store = await make_store(None)
    await write_everything(store, "r")
    client = redis.asyncio.Redis.from_url(redis_url)
    assert await pttl(client, store, "r") == -1
    await client.aclose()


async def test_each_write_refreshes_the_ttl_and_reads_do_not(
    make_store: StoreMaker, redis_url: str
) -> None:
    store = await make_store(3)
    client = redis.asyncio.Redis.from_url(redis_url)
    await write_everything(store, "r")
    await asyncio.sleep(1.0)
    await store.get_run("r")
    await store.load_steps("r")
    await store.get_signal("r", "go")
    assert 1_500 < await pttl(client, store, "r") <= 2_100, "a read refreshed the TTL"
    for write in (
        store.set_step("r", "s2", 2),
        store.renew_lease("r", "a", 0.5),
        store.set_signal("r", "other", None),
        store.release_run("r", "a"),
        store.finish_run("r", "", "completed", result=1, has_result=True),
    ):
        await asyncio.sleep(0.3)
        await write
        assert 2_800 < await pttl(client, store, "r") <= 3_000
    await client.aclose()


async def test_an_idle_run_expires_whole_and_leaves_the_listing(make_store: StoreMaker) -> None:
    store = await make_store(0.5)
    await write_everything(store, "idle")
    forever = await make_store(None)
    await forever.claim_run("kept", "wf", None, owner="a", lease_seconds=30)
    assert {r.run_id for r in await store.list_runs()} == {"idle", "kept"}
    await asyncio.sleep(0.8)
    assert await store.get_run("idle") is None
    assert await store.load_steps("idle") == {}
    assert await store.get_signal("idle", "go") == (False, None)
    assert [r.run_id for r in await store.list_runs()] == ["kept"]
    client = redis.asyncio.Redis.from_url(store.url)
    assert await client.zrange(store.keys.index, 0, -1) == [b"kept"], "the index was not pruned"
    await client.aclose()


async def test_a_run_waiting_on_a_signal_longer_than_ttl_keeps_its_checkpoints(
    make_store: StoreMaker,
) -> None:
    """The lease renewal (every lease/3) refreshes the run's keys while it waits."""
    store = await make_store(1.0)
    wf = Workflow("ttl", db=store, lease_seconds=0.6)
    executed: list[str] = []
    waiting = asyncio.Event()

    @wf.task
    async def step(name: str) -> str:
        executed.append(name)
        return name.upper()

    @wf.workflow(id="slow-{key}")
    async def slow(key: str) -> list[Any]:
        first = await step("a")
        waiting.set()
        payload = await wf.signal("go", poll=30.0)
        return [first, payload, await step("b")]

    run = asyncio.create_task(slow("k"))
    await asyncio.wait_for(waiting.wait(), 10)
    await asyncio.sleep(2.5)  # 2.5 x the TTL
    assert await store.load_steps("slow-k") == {"step": "A"}
    assert await wf.complete("slow-k", "go", 7) is True
    assert await asyncio.wait_for(run, 10) == ["A", 7, "B"]
    assert executed == ["a", "b"]
    assert await store.load_steps("slow-k") == {"step": "A", "step#1": "B"}
    await wf.close()
