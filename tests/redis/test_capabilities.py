"""The newer store capabilities (cancel, reopen, delete, step and signal listings,
recoveries), checked against InMemoryStore, the reference: the same calls on both
stores must give the same records (times aside)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from durable import InMemoryStore, Store
from durable.store import RunRecord
from durable_redis import RedisStore

Scenario = Callable[[Store], Awaitable[list[Any]]]


@pytest.fixture(params=["fakeredis", "server", "cluster"])
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    if request.param == "fakeredis":
        store = RedisStore(client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    elif request.param == "cluster":
        port = request.getfixturevalue("cluster_port")
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        store = RedisStore(client=client, prefix=f"caps-{uuid.uuid4().hex[:8]}")
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("prefix")
        store = RedisStore(url, prefix=prefix)
    await store.setup()
    yield store
    await store.close()


def plain(record: RunRecord | None) -> Any:
    """A record without its times, which differ between any two stores."""
    if record is None:
        return None
    return dataclasses.replace(record, created_at=None, updated_at=None, lease_expires_at=None)


async def same_on_both(scenario: Scenario, redis_store: RedisStore) -> list[Any]:
    expected = await scenario(InMemoryStore())
    assert await scenario(redis_store) == expected
    return expected


async def test_a_claim_says_when_it_created_the_run(redis_store: RedisStore) -> None:
    """Only the claim that made the record says ``created`` (the engine then skips
    loading steps); sent again with the same arguments, as redis-py resends a command
    whose reply was lost, the same claim finds that record and does not."""

    async def scenario(store: Store) -> list[Any]:
        claims = [
            await store.claim_run("new", "wf", {"n": 1}, owner="a", lease_seconds=30),
            await store.claim_run("new", "wf", {"n": 1}, owner="a", lease_seconds=30),
        ]
        await store.finish_run("new", "a", "failed", error="RuntimeError: x")
        claims.append(await store.claim_run("new", "wf", None, owner="b", lease_seconds=30))
        claims.append(await store.claim_run("new", "wf", None, owner="c", lease_seconds=30))
        return [(claim.acquired, claim.created) for claim in claims]

    assert await same_on_both(scenario, redis_store) == [
        (True, True),
        (True, False),
        (True, False),
        (False, False),
    ]


async def test_cancel_requests_and_cancellations(redis_store: RedisStore) -> None:
    async def scenario(store: Store) -> list[Any]:
        seen: list[Any] = [plain(await store.request_cancel("unknown"))]
        await store.claim_run("live", "wf", {"n": 1}, owner="a", lease_seconds=30)
        seen.append(await store.checkpoint_step("live", "s1", 1))
        seen.append(plain(await store.request_cancel("live")))  # executing: a request
        seen.append(await store.checkpoint_step("live", "s2", 2))  # reported to the owner
        await store.finish_run("live", "a", "cancelled", error="cancelled")
        seen.append(plain(await store.get_run("live")))
        await store.claim_run("failed", "wf", None, owner="a", lease_seconds=30)
        await store.finish_run("failed", "a", "failed", error="E: x")
        seen.append(plain(await store.request_cancel("failed")))  # not executing: at once
        await store.claim_run("released", "wf", None, owner="a", lease_seconds=30)
        await store.release_run("released", "a")
        seen.append(plain(await store.request_cancel("released")))
        await store.claim_run("done", "wf", None, owner="a", lease_seconds=30)
        await store.finish_run("done", "a", "completed", result=3, has_result=True)
        seen.append(plain(await store.request_cancel("done")))  # finished: left alone
        for run_id in ("live", "failed", "released"):
            claim = await store.claim_run(run_id, "wf", None, owner="b", lease_seconds=30)
            seen.append((run_id, claim.acquired))  # cancelled runs are not claimed
        return seen

    seen = await same_on_both(scenario, redis_store)
    assert seen[2].cancel_requested is True
    assert seen[3] is False
    assert (seen[4].status, seen[5].status, seen[6].status) == ("cancelled",) * 3


async def test_reopen_makes_ended_runs_claimable(redis_store: RedisStore) -> None:
    async def scenario(store: Store) -> list[Any]:
        seen: list[Any] = [plain(await store.reopen_run("unknown"))]
        for run_id, status in (("f", "failed"), ("c", "cancelled"), ("d", "dead")):
            await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=0.01)
            await asyncio.sleep(0.03)
            await store.claim_run(run_id, "wf", None, owner="b", lease_seconds=30)  # recovery
            await store.finish_run(run_id, "b", status, error=f"E: {status}")
            seen.append(plain(await store.reopen_run(run_id)))
            claim = await store.claim_run(run_id, "wf", None, owner="c", lease_seconds=30)
            seen.append((claim.acquired, plain(claim.record)))
        await store.claim_run("ok", "wf", None, owner="a", lease_seconds=30)
        await store.finish_run("ok", "a", "completed", result=None, has_result=True)
        seen.append(plain(await store.reopen_run("ok")))
        return seen

    seen = await same_on_both(scenario, redis_store)
    assert seen[1].status == "running"
    assert seen[1].recoveries == 0


async def test_recoveries_count_takeovers_of_abandoned_runs(redis_store: RedisStore) -> None:
    async def scenario(store: Store) -> list[int]:
        counts: list[int] = []
        await store.claim_run("r", "wf", None, owner="a", lease_seconds=0.01)
        await store.claim_run("r", "wf", None, owner="a", lease_seconds=0.01)  # same owner
        counts.append(
            (await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)).record.recoveries
        )
        await store.claim_run("r", "wf", None, owner="b", lease_seconds=30, takeover_from="a")
        counts.append((await store.get_run("r") or RunRecord("r", "", "running")).recoveries)
        await store.finish_run("r", "b", "failed", error="E")
        await store.claim_run("r", "wf", None, owner="c", lease_seconds=30)  # failed: no
        counts.append((await store.get_run("r") or RunRecord("r", "", "running")).recoveries)
        return counts

    assert await same_on_both(scenario, redis_store) == [0, 1, 1]


async def test_step_and_signal_listings(redis_store: RedisStore) -> None:
    async def scenario(store: Store) -> list[Any]:
        await store.set_step("r", "fetch", {"a": 1}, attempt=1)
        await asyncio.sleep(0.002)
        await store.set_step("r", "charge", 42, attempt=3)
        await asyncio.sleep(0.002)
        await store.checkpoint_step("r", "ship", None, attempt=2)
        await store.set_signal("r", "approval", {"ok": True})
        await asyncio.sleep(0.002)
        await store.set_signal("r", "late", 0)
        steps = await store.list_steps("r")
        signals = await store.list_signals("r")
        assert all(s.created_at is not None for s in (*steps, *signals))
        return [
            [(s.step_id, s.value, s.attempt) for s in steps],
            [(s.name, s.payload) for s in signals],
            await store.list_steps("nothing"),
            await store.list_signals("nothing"),
        ]

    assert (await same_on_both(scenario, redis_store))[0] == [
        ("fetch", {"a": 1}, 1), ("charge", 42, 3), ("ship", None, 2),
    ]  # fmt: skip


async def test_delete_runs_by_status_and_age(redis_store: RedisStore) -> None:
    async def scenario(store: Store) -> list[Any]:
        for run_id, status in (("old-done", "completed"), ("old-failed", "failed")):
            await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=30)
            await store.set_step(run_id, "s", 1)
            await store.set_signal(run_id, "go", 1)
            await store.finish_run(run_id, "a", status, result=1, has_result=True)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        cutoff = time.time()
        await store.claim_run("new-done", "wf", None, owner="a", lease_seconds=30)
        await store.finish_run("new-done", "a", "completed", result=2, has_result=True)
        await store.claim_run("running", "wf", None, owner="a", lease_seconds=30)
        seen: list[Any] = [await store.delete_runs(finished_before=cutoff, statuses=["completed"])]
        seen.append(sorted(r.run_id for r in await store.list_runs()))
        seen.append(await store.load_steps("old-done"))
        seen.append(await store.get_signal("old-done", "go"))
        seen.append(await store.delete_runs(finished_before=time.time() + 1, statuses=[]))
        seen.append(
            await store.delete_runs(
                finished_before=time.time() + 1, statuses=["completed", "failed"]
            )
        )
        seen.append(sorted(r.run_id for r in await store.list_runs()))
        return seen

    assert await same_on_both(scenario, redis_store) == [
        1,
        ["new-done", "old-failed", "running"],
        {},
        (False, None),
        0,
        2,
        ["running"],
    ]
