"""Durable waits inside a workflow: for time to pass, and for a signal.

Each wait checkpoints its deadline before it starts waiting, so a run resumed after
a crash waits only for what is left; a signal that timed out stays timed out.

Durations are checked before a step id is taken: ``nan`` and ``±inf`` are refused
(:class:`~durable.settings.SettingError`). A duration of 0 or less is already due: a
sleep returns at once, a signal timeout takes only a payload already delivered, like
:func:`asyncio.sleep` and :func:`asyncio.wait_for` do with a delay computed late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from .context import RESERVED_PREFIX, RunContext
from .errors import SignalTimeoutError
from .scopes import engine_section
from .settings import finite_seconds

#: Stored as a signal's payload when its wait timed out first: the timeout and a late
#: delivery race through the store's first-write-wins, so exactly one of them counts.
TIMED_OUT = "$durable: timed out"

#: How long one wait for a change of a waiting run lasts before it is renewed.
_WATCH_SECONDS = 60.0

log = logging.getLogger("durable")


async def sleep_for(ctx: RunContext, seconds: float) -> None:
    """Sleep ``seconds`` (a finite number; 0 or less: already due), as remembered."""
    seconds = finite_seconds("wf.sleep(seconds)", seconds)
    await sleep_until(ctx, time.time() + seconds)


async def sleep_until(ctx: RunContext, wake_at: float) -> None:
    """Sleep until the epoch time ``wake_at``, as remembered by the run."""
    wake_at = finite_seconds("wf.sleep_until(when) as an epoch time", wake_at)
    step_id = ctx.next_step_id(f"{RESERVED_PREFIX}sleep")
    with engine_section(ctx):
        found, stored = await _engine_step(ctx, step_id, "wake_at")
        if found:
            wake_at = float(stored["wake_at"])
        else:
            ctx.raise_if_cancelled()
            await ctx.record_step(step_id, {"wake_at": wake_at}, 1)
        if wake_at > time.time():
            await ctx.note_progress()
        async with cancellation_watch(ctx):
            await ctx.pause_until(wake_at)


async def signal_deadline(ctx: RunContext, name: str, seconds: float | None) -> float | None:
    """The run's remembered deadline for signal ``name`` (None: no timeout)."""
    if seconds is None:
        return None
    seconds = finite_seconds(f"wf.signal({name!r}, timeout=...)", seconds)
    step_id = ctx.next_step_id(f"{RESERVED_PREFIX}signal-timeout:{name}")
    with engine_section(ctx):
        found, stored = await _engine_step(ctx, step_id, "deadline")
        if found:
            return float(stored["deadline"])
        deadline = time.time() + seconds
        await ctx.record_step(step_id, {"deadline": deadline}, 1)
        return deadline


async def _engine_step(ctx: RunContext, step_id: str, key: str) -> tuple[bool, Any]:
    """A step of the engine's own, also where a version before 0.4 recorded it.

    Those versions wrote ``sleep``, ``signal-timeout:x`` ... without the reserved
    prefix; a run they recorded finds its deadline there, when the value has the
    engine's shape (a user's task of that name returned something else).
    """
    found, stored = await ctx.completed_step(step_id)
    if found or not ctx.legacy_ids:
        return found, stored
    found, stored = await ctx.completed_step(step_id.removeprefix(RESERVED_PREFIX))
    if found and _only_key(stored, key):
        return True, stored
    return False, None


def _only_key(value: Any, key: str) -> bool:
    """Whether ``value`` is a dict whose one key is ``key`` (an engine step's shape)."""
    return isinstance(value, dict) and list(value) == [key]  # pyright: ignore[reportUnknownArgumentType]


async def wait_for_signal(
    ctx: RunContext, name: str, event: asyncio.Event, poll: float, deadline: float | None
) -> Any:
    """Wait until signal ``name`` of the run is delivered, or the deadline passes."""
    with engine_section(ctx):
        async with cancellation_watch(ctx):
            return await _wait_for_signal(ctx, name, event, poll, deadline)


async def _wait_for_signal(
    ctx: RunContext, name: str, event: asyncio.Event, poll: float, deadline: float | None
) -> Any:
    store = ctx.store
    while True:
        ctx.raise_if_cancelled()
        # complete() stores the payload before it sets the event, so clearing the
        # event and then reading the store can miss nothing.
        event.clear()
        found, payload = await store.get_signal(ctx.run_id, name)
        if found:
            return _delivered(payload, ctx, name)
        await ctx.note_progress()  # once per execution: a run waiting is no poison run
        wait = poll
        if deadline is not None:
            wait = min(poll, deadline - time.time())
            if wait <= 0:
                if await store.set_signal(ctx.run_id, name, TIMED_OUT):
                    raise _timed_out(ctx, name)
                continue  # a delivery won the race: read it
        await first_of(
            event.wait(),
            ctx.interrupted().wait(),
            store.wait_for_signal(ctx.run_id, name, wait),
        )


def _delivered(payload: Any, ctx: RunContext, name: str) -> Any:
    if payload == TIMED_OUT:
        raise _timed_out(ctx, name)
    return payload


def _timed_out(ctx: RunContext, name: str) -> SignalTimeoutError:
    return SignalTimeoutError(f"signal {name!r} of run {ctx.run_id!r} timed out")


@contextlib.asynccontextmanager
async def cancellation_watch(ctx: RunContext) -> AsyncGenerator[None]:
    """While a run waits, wake it as soon as it is cancelled from anywhere, on a store
    that notifies changes (``Store.notifies_changes``); without one, the heartbeat
    notices the cancellation at the next lease renewal."""
    if not type(ctx.store).notifies_changes:
        yield
        return
    watch = asyncio.ensure_future(_watch_for_cancellation(ctx))
    try:
        yield
    finally:
        watch.cancel()
        watch.add_done_callback(_log_failure)


def _log_failure(watch: asyncio.Future[None]) -> None:
    if not watch.cancelled() and watch.exception() is not None:
        log.warning("watching a waiting run for cancellation failed", exc_info=watch.exception())


async def _watch_for_cancellation(ctx: RunContext) -> None:
    store = ctx.store
    while not ctx.cancel_requested:
        try:
            record = await store.get_run(ctx.run_id)
        except Exception:  # the store is unreachable: the heartbeat will say so
            log.debug("run %s: reading its record while it waits failed", ctx.run_id)
            record = None
        raise_if_cancel_lost()
        if record is not None and record.cancel_requested:
            ctx.request_cancel()
            return
        await store.wait_for_change(ctx.run_id, _WATCH_SECONDS)
        raise_if_cancel_lost()


def raise_if_cancel_lost() -> None:
    """Raise ``CancelledError`` in a task that was cancelled but goes on: before Python
    3.12, ``asyncio.wait_for`` (redis-py sends commands with it, fakeredis reads with
    it) returns its result when the task is cancelled just as the inner awaitable
    finishes, and the cancellation is lost but for ``Task.cancelling()``. For loops in
    tasks of the engine's and the stores' own that nobody awaits (the cancellation
    watch below, a store's listener): one would otherwise go on, on a store that may
    be closed, for as long as the event loop lives, and hang its shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until one of ``waits`` returns (or raises), then cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
