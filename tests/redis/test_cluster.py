"""The conformance suite on a real three-node Redis Cluster (the ``cluster_port`` fixture).

Each run is one hash under the hash tag ``{run id}``, so every script touches one
slot; the run index and the signal channel live elsewhere and are reached with plain
commands (a ``ZADD`` next to the claim, ``PUBLISH`` from the script).
"""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio

from durable import Store, Workflow
from durable.testing import StoreContract
from durable_redis import RedisStore


class TestRedisStoreOnCluster(StoreContract):
    """A ``redis.asyncio.RedisCluster`` given to the store."""

    persistent = True
    # redis-py's asyncio RedisCluster has pub/sub in 8.0 (not in 7.0); without, waiters poll.
    notifies_signals = hasattr(redis.asyncio.RedisCluster, "pubsub")
    port: int
    prefix: str

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster_port: int) -> None:
        self.port, self.prefix = cluster_port, f"c-{uuid.uuid4().hex[:8]}"

    async def make_store(self) -> Store:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=self.port)
        return RedisStore(client=client, prefix=self.prefix)


async def test_runs_spread_over_the_nodes_and_complete(cluster_port: int) -> None:
    client = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster_port)
    store = RedisStore(client=client, prefix="spread")
    async with Workflow("spread", db=store) as wf:

        @wf.task
        async def double(n: int) -> int:
            return n * 2

        @wf.workflow(id="job-{n}")
        async def job(n: int) -> int:
            return await double(n) + await double(n + 1)

        assert [await job(n) for n in range(30)] == [4 * n + 2 for n in range(30)]
        assert len(await wf.list_runs(limit=100)) == 30
    slots = {client.keyslot(store.keys.run_key(f"job-{n}")) for n in range(30)}
    nodes = {client.nodes_manager.get_node_from_slot(slot).name for slot in slots}
    assert len(nodes) == 3, "the runs did not spread over the cluster"
    await client.aclose()
