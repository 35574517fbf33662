"""Redis faults that tests/redis does not cover: the server SIGKILLed (not shut down)
mid-run and restarted from its append-only file, and the store's connections dropped
by ``CLIENT KILL`` again and again during a run and during a signal wait.

(tests/redis/test_faults.py already covers a clean restart with and without the data,
an outage longer than the store's patience, the signal subscription after a restart,
and a reply lost after the server ran a command.) Each test starts its own
``redis-server`` on a spare port. Skipped without ``durable_redis`` and redis-py, or
without ``redis-server`` on PATH (failed instead with DURABLE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable.backoff import constant

pytest.importorskip("redis", reason="redis-py is not installed")
pytest.importorskip("durable_redis", reason="durable-redis is not installed")

from .conftest import RedisServer as Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.kill()


def steps_flow(wf: Workflow, bodies: Counter[int], on_step: dict[int, Any]) -> Any:
    @wf.task
    async def step(i: int) -> int:
        bodies[i] += 1
        if i in on_step:
            await on_step.pop(i)()
        await asyncio.sleep(0.005)
        return i * i

    @wf.workflow(id="faulty-{key}")
    async def flow(key: str, n: int) -> list[int]:
        return [await step(i, step_id=f"s{i}") for i in range(n)]

    return flow


async def test_a_server_sigkilled_mid_run_and_restarted_loses_nothing(server: Server) -> None:
    async def crash() -> None:
        # Dies while step 4 runs; back 0.4 s later, while step 4's checkpoint is resent.
        await asyncio.to_thread(server.kill)
        asyncio.get_running_loop().call_later(0.4, server.start)

    bodies: Counter[int] = Counter()
    assert server.proc is not None
    first_pid = server.proc.pid
    async with Workflow("crashy", db=server.url) as wf:
        assert await steps_flow(wf, bodies, {4: crash})("a", 10) == [i * i for i in range(10)]
    assert bodies == Counter(range(10)), "a step ran twice"
    assert server.proc.pid != first_pid  # a new server: the data came back from the AOF

    replay: Counter[int] = Counter()
    async with Workflow("crashy", db=server.url) as again:
        assert await steps_flow(again, replay, {})("a", 10) == [i * i for i in range(10)]
        record = await again.get_run("faulty-a")
    assert replay == Counter(), "a checkpoint was lost with the server"
    assert record is not None
    assert [s.step_id for s in record.steps] == [f"s{i}" for i in range(10)]


async def test_connections_dropped_again_and_again_during_a_run(server: Server) -> None:
    kills: list[int] = []
    stop = asyncio.Event()

    async def keep_killing() -> None:
        while not stop.is_set():
            kills.append(await asyncio.to_thread(server.client_kill, "normal"))
            await asyncio.sleep(0.015)

    bodies: Counter[int] = Counter()
    killer = asyncio.ensure_future(keep_killing())
    try:
        async with Workflow("dropped", db=server.url) as wf:
            flow = steps_flow(wf, bodies, {})
            results = await asyncio.gather(*(flow(f"k{k}", 20) for k in range(5)))
    finally:
        stop.set()
        await killer
    dropped = sum(kills)
    print(f"CLIENT KILL {len(kills)} times ({dropped} connections) during 5 runs x 20 steps")
    assert dropped >= 5, "no connection was ever dropped: the test proves nothing"
    assert results == [[i * i for i in range(20)]] * 5
    assert bodies == Counter({i: 5 for i in range(20)}), "a step ran twice"


async def test_a_waiting_workflow_hears_its_signal_after_its_subscription_was_dropped(
    server: Server,
) -> None:
    waiter_wf, sender_wf = Workflow("sub", db=server.url), Workflow("sub", db=server.url)
    waiting = asyncio.Event()

    @waiter_wf.workflow(id="approve")
    async def approve() -> Any:
        waiting.set()
        return await waiter_wf.signal("go", poll=30.0)

    run = asyncio.ensure_future(approve())
    await asyncio.wait_for(waiting.wait(), 10)
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(server.client_kill, "pubsub") >= 1
    await asyncio.sleep(1.0)  # redis-py reconnects the subscription
    sent = time.monotonic()
    assert await sender_wf.complete("approve", "go", {"ok": True}) is True
    assert await asyncio.wait_for(run, 10) == {"ok": True}
    assert time.monotonic() - sent < 2.0, "the signal waited for the 30 s poll"
    await waiter_wf.close()
    await sender_wf.close()


async def test_retries_of_a_step_survive_dropped_connections(server: Server) -> None:
    """A failing step's attempts and its backoff, with every connection dropped between."""
    calls: list[int] = []
    wf = Workflow("retry", db=server.url, default_backoff=constant(0.02))

    @wf.task(retries=3, retry_on=(ConnectionError,))
    async def flaky() -> str:
        calls.append(1)
        await asyncio.to_thread(server.client_kill, "normal")
        if len(calls) < 3:
            raise ConnectionError("the service is down")
        return "ok"

    @wf.workflow(id="retry-run")
    async def flow() -> str:
        return await flaky()

    async with wf:
        assert await flow() == "ok"
        record = await wf.get_run("retry-run")
    assert len(calls) == 3
    assert record is not None
    assert [(s.step_id, s.attempt) for s in record.steps] == [("flaky", 3)]
