"""A waiting run hears through LISTEN/NOTIFY, not at its next poll: a signal sent, or
a cancellation asked for, through another store object (as from another process)
wakes it within a round trip. Without notifications the signal waits for the poll
(30 s here) and the cancellation for the heartbeat (a third of the 30 s lease)."""

from __future__ import annotations

import asyncio
import time

import pytest

from durable import Workflow
from durable.errors import RunCancelledError

LEASE = 30.0
POLL = 30.0


async def test_a_signal_from_another_store_wakes_the_waiting_run(pg_db: str) -> None:
    wf = Workflow("wake", db=pg_db, lease_seconds=LEASE)
    sender = Workflow("wake", db=pg_db)

    @wf.workflow(id="wait-{n}")
    async def wait(n: int) -> str:
        payload: str = await wf.signal("go", poll=POLL)
        return payload

    try:
        task = asyncio.ensure_future(wait(1))
        await asyncio.sleep(0.5)  # the run is waiting now
        sent = time.monotonic()
        assert await sender.complete("wait-1", "go", "hello") is True
        assert await asyncio.wait_for(task, 5) == "hello"
        assert time.monotonic() - sent < 1.0
    finally:
        await wf.close()
        await sender.close()


@pytest.mark.parametrize("waiting", ["sleep", "signal"])
async def test_a_cancellation_from_another_store_wakes_the_waiting_run(
    pg_db: str, waiting: str
) -> None:
    wf = Workflow("wake", db=pg_db, lease_seconds=LEASE)
    other = Workflow("wake", db=pg_db)

    @wf.workflow(id="wait-{n}")
    async def wait(n: int) -> None:
        if waiting == "sleep":
            await wf.sleep(600)
        else:
            await wf.signal("never", poll=POLL)

    try:
        task = asyncio.ensure_future(wait(1))
        await asyncio.sleep(0.5)
        asked = time.monotonic()
        record = await other.cancel("wait-1")
        assert record is not None
        assert record.cancel_requested  # it is executing: asked to stop, not ended
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(task, 5)  # the heartbeat would take 10 s
        assert time.monotonic() - asked < 2.0
        stored = await other.get_run("wait-1")
        assert stored is not None
        assert stored.status == "cancelled"
    finally:
        await wf.close()
        await other.close()
