"""``wf.gather`` and ``wf.map``: concurrent calls whose results keep their order.

Determinism comes from the engine, not from here: a task's step id is taken when it
is called, and every asyncio task a run creates gets a scope numbered by creation
order (:mod:`durable.scopes`). What these helpers add is the contract users want from
a fan-out: results in argument order, a bound on concurrency, and no branch left
running behind a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")


async def gather_all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await every call at once; on the first failure cancel the rest, then raise it."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def map_all(
    task: Callable[[A], Awaitable[T]], items: Iterable[A], max_concurrency: int | None
) -> list[T]:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)  # pyright: ignore[reportUnnecessaryIsInstance]
        or max_concurrency < 1
    ):
        raise ValueError(
            f"wf.map(max_concurrency=...) must be an int of 1 or more, got {max_concurrency!r}"
        )
    calls = [task(item) for item in items]  # step ids taken here, in item order
    if max_concurrency is None:
        return await gather_all(calls)
    limit = asyncio.Semaphore(max_concurrency)

    async def limited(call: Awaitable[T]) -> T:
        try:
            async with limit:
                return await call
        finally:
            if asyncio.iscoroutine(call):
                call.close()  # cancelled before its turn: never started, and never will

    return await gather_all(limited(call) for call in calls)
