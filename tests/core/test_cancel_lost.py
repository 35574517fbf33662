"""A cancellation swallowed by a store call (asyncio.wait_for before Python 3.12 returns
its result when the task is cancelled as the inner awaitable finishes; redis-py sends
every command through it) must still end the engine's own background loops, or the
event loop's shutdown waits for them forever."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

from durable.waits import _watch_for_cancellation, raise_if_cancel_lost  # pyright: ignore[reportPrivateUsage]


class SwallowingStore:
    """A store whose record read swallows a cancellation, as redis-py's can."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.waits = 0

    async def get_run(self, run_id: str) -> Any:
        self.reading.set()
        # Lost here, as in wait_for; only Task.cancelling() remembers it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return None

    async def wait_for_change(self, run_id: str, max_wait: float) -> None:
        self.waits += 1
        await asyncio.sleep(0.05)  # a short wait, so that a lingering watch shows


async def test_the_cancellation_watch_ends_after_a_swallowed_cancel() -> None:
    store = SwallowingStore()
    ctx = SimpleNamespace(cancel_requested=False, store=store, run_id="r-1")
    watch = asyncio.ensure_future(_watch_for_cancellation(ctx))  # type: ignore[arg-type]
    await store.reading.wait()
    watch.cancel()
    done, _ = await asyncio.wait({watch}, timeout=1.0)
    if not done:  # the watch goes on: stop it for good, and fail
        ctx.cancel_requested = True
        await asyncio.wait({watch}, timeout=1.0)
    assert done, f"the watch went on after its cancel ({store.waits} more waits)"
    assert watch.cancelled()


async def test_raise_if_cancel_lost_is_quiet_in_a_task_not_cancelled() -> None:
    raise_if_cancel_lost()  # nothing to raise: the test's task was not cancelled
