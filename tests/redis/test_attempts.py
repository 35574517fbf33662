"""Failed attempts are kept in Redis (issue #14): a run recovered during a retry's
backoff counts on instead of starting over.

One hash per run, ``<prefix>:{<run id>}:attempts`` (the run's hash tag: its Cluster
slot), with the TTL of the run's hash, deleted with it. Tests run on fakeredis and on
the real server (``make_redis_store``) unless they say otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import fakeredis
import pytest
from redis.crc import key_slot

from durable import Workflow
from durable_redis import RedisStore
from durable_redis.keys import KeyLayout

from .conftest import StoreFactory


async def test_attempts_outlive_the_store_object(make_redis_store: StoreFactory) -> None:
    store = make_redis_store()
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.record_attempt("r", "charge", 1, "ConnectionError('down')", owner="a")
    await store.record_attempt("r", "charge", 2, "ConnectionError('down')", owner="a")
    await store.record_attempt("r", "ship", 1, "TimeoutError()")
    await store.close()
    again = make_redis_store()  # another process, say
    assert dict(await again.load_attempts("r")) == {"charge": 2, "ship": 1}
    assert dict(await again.load_attempts("other")) == {}
    # 0: the failure was final; a resumed run starts afresh for that step.
    await again.record_attempt("r", "charge", 0, "ConnectionError('down')")
    assert dict(await again.load_attempts("r")) == {"ship": 1}
    await again.close()


async def test_attempts_share_the_ttl_of_the_run_and_expire_with_it() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    store = RedisStore(client=client, ttl=60)
    run_key, attempts_key = store.keys.run_keys("r")
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.record_attempt("r", "s", 1, "E", owner="a")
    assert 57_000 < await client.pttl(attempts_key) <= 60_000
    await client.pexpire(run_key, 5_000)
    await client.pexpire(attempts_key, 5_000)
    # Every write to the run sets the TTL of both keys again, the checkpoint too.
    for write in (
        store.checkpoint_step("r", "t", 1, owner="a"),
        store.renew_lease("r", "a", 30),
        store.set_signal("r", "go", 1),
        store.release_run("r", "a"),
    ):
        await write
        assert 57_000 < await client.pttl(run_key) <= 60_000
        assert 57_000 < await client.pttl(attempts_key) <= 60_000
        await client.pexpire(attempts_key, 5_000)
    forever = RedisStore(client=client, ttl=None)
    await forever.set_step("r", "u", 2)  # the store that last wrote decides, for both
    assert await client.pttl(attempts_key) == -1
    assert await client.pttl(run_key) == -1


async def test_a_short_ttl_expires_the_attempts_with_the_run(
    make_redis_store: StoreFactory,
) -> None:
    store = make_redis_store(ttl=0.3)
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=0.3)
    await store.record_attempt("r", "s", 1, "E", owner="a")
    assert dict(await store.load_attempts("r")) == {"s": 1}
    await asyncio.sleep(0.6)
    assert await store.get_run("r") is None
    assert dict(await store.load_attempts("r")) == {}
    await store.close()


async def test_delete_runs_deletes_their_attempts(make_redis_store: StoreFactory) -> None:
    store = make_redis_store()
    for run_id in ("old", "kept"):
        await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=30)
        await store.record_attempt(run_id, "s", 1, "E", owner="a")
        await store.finish_run(run_id, "a", "failed", error="E")
    deleted = await store.delete_runs(finished_before=time.time() + 1, statuses=["completed"])
    assert deleted == 0
    assert dict(await store.load_attempts("old")) == {"s": 1}
    deleted = await store.delete_runs(finished_before=time.time() + 1, statuses=["failed"])
    assert deleted == 2
    assert dict(await store.load_attempts("old")) == {}
    assert dict(await store.load_attempts("kept")) == {}
    await store.close()


async def test_a_new_run_does_not_inherit_attempts_left_without_a_record(
    make_redis_store: StoreFactory,
) -> None:
    store = make_redis_store()
    await store.record_attempt("r", "s", 2, "E")  # no record: a run that is gone
    assert dict(await store.load_attempts("r")) == {"s": 2}
    claim = await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    assert claim.created
    assert dict(await store.load_attempts("r")) == {}
    await store.close()


def test_the_attempts_key_is_in_the_slot_of_the_run() -> None:
    layout = KeyLayout("durable")
    for run_id in ("order-42", "{x}", "", "a}b{c"):
        run_key, attempts_key = layout.run_keys(run_id)
        assert run_key == layout.run_key(run_id)
        assert attempts_key == layout.attempts_key(run_id)
        assert key_slot(attempts_key.encode()) == key_slot(run_key.encode())
    # No run id's key is another run's attempts key.
    assert layout.run_key("x}:attempts") != layout.attempts_key("x")


async def test_a_run_recovered_in_a_retry_backoff_counts_on(
    make_redis_store: StoreFactory,
) -> None:
    """retries=3 is 4 attempts in all, also when the process stops during a backoff
    and another store object (another process) resumes the run."""
    calls: Counter[str] = Counter()
    second_failed = asyncio.Event()

    def make(store: RedisStore, wait: float) -> tuple[Workflow, Any]:
        wf = Workflow("retrying", db=store, default_retries=0)

        # 10 ms after attempt 1, then ``wait``: the first process stops during it.
        @wf.task(retries=3, backoff=lambda i: 0.01 if i == 0 else wait,
                 retry_on=(ConnectionError,))  # fmt: skip
        async def call_service() -> str:
            calls["attempts"] += 1
            if calls["attempts"] == 2:
                second_failed.set()
            raise ConnectionError("down")

        @wf.workflow(id="retrying-run")
        async def flow() -> str:
            return await call_service()

        return wf, flow

    first = make_redis_store()
    wf, flow = make(first, wait=60)
    task = asyncio.ensure_future(flow())
    await asyncio.wait_for(second_failed.wait(), 10)
    recorded: dict[str, int] = {}
    deadline = time.monotonic() + 2
    while recorded.get("call_service", 0) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # attempt 2 failed: on record before its backoff
        recorded = dict(await first.load_attempts("retrying-run"))
    assert recorded == {"call_service": 2}
    task.cancel()  # what wf.worker() does to its runs when it exits
    with pytest.raises(asyncio.CancelledError):
        await task
    await wf.close()

    again, flow2 = make(make_redis_store(), wait=0)
    async with again:
        with pytest.raises(ConnectionError):
            await flow2()
        # The final failure reset the count: a resumed run starts afresh.
        assert dict(await again.store.load_attempts("retrying-run")) == {}
    assert calls["attempts"] == 4, f"retries=3 made {calls['attempts']} attempts"
