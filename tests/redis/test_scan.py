"""``scan_runs`` on Redis: pages walk the run index oldest first, by (score, run id).

The contract suite checks the paging rules; these tests check what only Redis has:
runs whose index scores tie (a page boundary inside the ties, more ties than one
batch of the walk) and index entries of runs that are gone.
"""

from __future__ import annotations

import fakeredis

from durable_redis import RedisStore
from durable_redis.index import BATCH


async def scan_all(store: RedisStore, limit: int) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.scan_runs("running", cursor=cursor, limit=limit)
        found += [record.run_id for record in page]
        if cursor is None:
            return found


async def test_tied_scores_are_paged_by_run_id_none_twice_none_skipped() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    store = RedisStore(client=client)
    run_ids = [f"run-{i:04d}" for i in range(BATCH + 50)]
    for run_id in run_ids:
        await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=30)
    # Every run first claimed at "the same time", and one index entry of a run gone.
    await client.zadd(store.keys.index, {run_id: 1.5 for run_id in run_ids}, xx=True)
    await client.zadd(store.keys.index, {"gone": 1.5, "older": 0.5})
    await store.claim_run("older", "wf", None, owner="a", lease_seconds=30)
    finished = run_ids[::7]
    for run_id in finished:
        await store.finish_run(run_id, "a", "completed", result=1, has_result=True)
    running = ["older"] + [run_id for run_id in run_ids if run_id not in finished]
    for limit in (1, 7, BATCH, 1000):
        assert await scan_all(store, limit) == running
    assert await client.zscore(store.keys.index, "gone") is None  # pruned on the way
    page, cursor = await store.scan_runs("completed", limit=1000)
    assert [r.run_id for r in page] == finished
    assert cursor is None
