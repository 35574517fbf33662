"""Faults on a real server: restarts, outages, lost replies, an unreachable server.

Each test runs its own ``redis-server`` on a spare port (the ``redis_server``
fixture), which it stops and starts again as it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio

from durable import LeaseLostError, StoreError, Workflow
from durable_redis import RedisStore

from .conftest import RedisServer, spare_port


def make_flow(wf: Workflow, executed: Counter[int], on_step: dict[int, Any]) -> Any:
    """A 6-step workflow; ``on_step[i]()`` runs inside step i's body (a fault, say)."""

    @wf.task
    async def step(i: int) -> int:
        executed[i] += 1
        if i in on_step:
            await on_step.pop(i)()
        return i * 10

    @wf.workflow(id="faulty-{key}")
    async def flow(key: str) -> list[int]:
        return [await step(i, step_id=f"s{i}") for i in range(6)]

    return flow


EXPECTED = [0, 10, 20, 30, 40, 50]


async def test_unreachable_server_at_start_names_the_url_with_password_masked() -> None:
    url = f"redis://app:hunter2@127.0.0.1:{spare_port()}/0"
    wf = Workflow("down", db=url)
    flow = make_flow(wf, Counter(), {})
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await flow("k")
    message = str(info.value)
    assert f"redis://app:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "could not connect" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(wf.store)
    assert time.monotonic() - started < 15  # redis-py's retries, then a clear error
    await wf.close()


async def test_restart_mid_run_completes_without_rerunning_checkpoints(
    redis_server: RedisServer,
) -> None:
    """The server restarts (data kept) during step 3: the run goes on after reconnecting."""

    async def restart() -> None:
        await asyncio.to_thread(redis_server.stop, keep_data=True)
        # Back 0.5 s later, while step 3's checkpoint write is retrying.
        asyncio.get_running_loop().call_later(0.5, redis_server.start)

    executed: Counter[int] = Counter()
    async with Workflow("restart", db=redis_server.url) as wf:
        flow = make_flow(wf, executed, {3: restart})
        assert await flow("a") == EXPECTED
    assert executed == Counter(range(6)), "a step ran more than once"

    async with Workflow("restart", db=redis_server.url) as again:
        rerun: Counter[int] = Counter()
        assert await make_flow(again, rerun, {})("a") == EXPECTED
        assert rerun == Counter(), "a checkpointed step ran again after the restart"
        record = await again.get_run("faulty-a")
        assert record is not None
        assert (record.status, record.result) == ("completed", EXPECTED)


async def test_restart_that_loses_data_mid_run_stops_the_run_then_it_runs_afresh(
    redis_server: RedisServer,
) -> None:
    """A restart without persistence: the run in flight stops at its next checkpoint.

    Its record and checkpoints are gone from the server (nothing can help that but
    persistence), so nobody holds the run: the owner's fenced checkpoint writes nothing
    (no half-made record, without inputs) and raises LeaseLostError. Called again, the
    run starts afresh and completes.
    """

    async def wipe() -> None:
        await asyncio.to_thread(redis_server.stop, keep_data=False)
        await asyncio.to_thread(redis_server.start)

    executed: Counter[int] = Counter()
    async with Workflow("wiped", db=redis_server.url) as wf:
        flow = make_flow(wf, executed, {2: wipe})
        with pytest.raises(LeaseLostError, match="'faulty-b': step 's2' was not recorded"):
            await flow("b")
        assert executed == Counter(range(3))
        assert await wf.get_run("faulty-b") is None  # nothing written after the wipe
        assert await flow("b") == EXPECTED
        assert executed == Counter({0: 2, 1: 2, 2: 2, 3: 1, 4: 1, 5: 1})
        record = await wf.get_run("faulty-b")
        assert record is not None
        assert (record.status, record.result) == ("completed", EXPECTED)


async def test_outage_fails_clearly_then_resumes_from_the_last_checkpoint(
    redis_server: RedisServer,
) -> None:
    """The server stays down past redis-py's retries: a StoreError; later the run resumes."""

    async def outage() -> None:
        await asyncio.to_thread(redis_server.stop, keep_data=True)

    executed: Counter[int] = Counter()
    store = RedisStore(redis_server.url, prefix="outage", retry_seconds=1.0)
    wf = Workflow("outage", db=store)
    flow = make_flow(wf, executed, {3: outage})
    with pytest.raises(StoreError) as info:
        await flow("c")
    assert f"Redis store {redis_server.url}" in str(info.value)
    assert executed == Counter(range(4))
    await wf.close()

    redis_server.start()
    assert await flow("c") == EXPECTED
    await wf.close()
    # Steps 0-2 had committed: replayed. Step 3 had not: it ran again (at least once).
    assert executed == Counter({0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1})


async def test_waiting_workflow_hears_a_signal_sent_after_a_restart(
    redis_server: RedisServer,
) -> None:
    """The subscription comes back after a restart: no fall back to the 30 s poll."""
    url = redis_server.url
    waiter_wf, sender_wf = Workflow("w", db=url), Workflow("w", db=url)
    waiting = asyncio.Event()

    @waiter_wf.workflow(id="approve")
    async def approve() -> Any:
        waiting.set()
        return await waiter_wf.signal("go", poll=30.0)

    run = asyncio.create_task(approve())
    await asyncio.wait_for(waiting.wait(), 10)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(redis_server.stop, keep_data=True)
    await asyncio.to_thread(redis_server.start)
    await asyncio.sleep(1.0)  # redis-py reconnects the subscription on its own backoff
    sent = time.monotonic()
    assert await sender_wf.complete("approve", "go", "yes") is True
    assert await asyncio.wait_for(run, 10) == "yes"
    assert time.monotonic() - sent < 2.0
    await waiter_wf.close()
    await sender_wf.close()


class DroppingProxy:
    """A TCP proxy to the server that, once armed, lets one command through but drops
    its reply and closes the connection: the server ran it, the client never heard."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed: bytes | None = None
        self.dropped = 0
        self.port = 0

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        swallow = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(65536):
                if self.armed is not None and self.armed in data:
                    self.armed = None
                    swallow.set()  # before forwarding: the reply is the next thing back
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if swallow.is_set():
                    self.dropped += 1
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            writer.close()
            up_writer.close()


async def test_silently_retried_signal_write_still_reports_the_first_delivery(
    redis_server: RedisServer,
) -> None:
    async with DroppingProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"

        # The pitfall (DESIGN §7): redis-py retries a SET NX whose reply was lost, and
        # the retry reports "already set" although this very call set it. (Redis(...)
        # retries by default from redis-py 6 on; before, the call fails instead.)
        raw = redis.asyncio.Redis(port=proxy.port)
        policy = raw.get_retry()
        proxy.armed = b"drop-me"
        if policy is not None and policy.get_retries() > 0:
            assert await raw.set("plain:drop-me", "1", nx=True) is None
        else:
            with pytest.raises(redis.ConnectionError):
                await raw.set("plain:drop-me", "1", nx=True)
        assert await raw.get("plain:drop-me") == b"1"
        assert proxy.dropped == 1
        await raw.aclose()

        store = RedisStore(url)
        await store.setup()
        # Load the script first: a dropped NOSCRIPT reply would prove nothing.
        assert await store.set_signal("warm-up", "go", None) is True
        proxy.armed = b"drop-me"
        assert await store.set_signal("run-1", "drop-me", {"first": True}) is True
        assert proxy.dropped == 2, "the reply was not dropped: the test proves nothing"
        assert await store.set_signal("run-1", "drop-me", {"first": False}) is False
        assert await store.get_signal("run-1", "drop-me") == (True, {"first": True})
        await store.close()


async def test_wrong_password_fails_at_once_without_showing_it(redis_server: RedisServer) -> None:
    admin = redis.asyncio.Redis(port=redis_server.port)
    await admin.config_set("requirepass", "right-one")
    url = f"redis://:wrong-one@127.0.0.1:{redis_server.port}/0"
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await RedisStore(url).setup()
    assert time.monotonic() - started < 1.0, "credentials errors are not worth resending"
    assert "wrong-one" not in str(info.value)
    assert f"redis://:***@127.0.0.1:{redis_server.port}/0" in str(info.value)
    store = RedisStore(f"redis://:right-one@127.0.0.1:{redis_server.port}/0")
    await store.setup()
    await store.close()
    await admin.aclose()


def test_errors_leave_out_the_pipelined_command_and_its_arguments() -> None:
    from durable_redis.resilience import Resender

    exc = redis.ResponseError(
        "Command # 2 (EVALSHA 0123 1 durable:{r} 86400000 secret-inputs) of pipeline "
        "caused error: OOM command not allowed when used memory > 'maxmemory'."
    )
    message = str(Resender("redis://h:6379/0", 5.0).error("claim a run", exc))
    assert "secret-inputs" not in message
    assert message == (
        "Redis store redis://h:6379/0: could not claim a run: "
        "OOM command not allowed when used memory > 'maxmemory'."
    )
