"""A run's heartbeat: its lease renewed every third of its length, off its own path."""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import AbstractEventLoop as EventLoop
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RunContext
    from .runner import RunExecutor

log = logging.getLogger("durable")


class Heartbeat:
    """Renews the run's lease every third of its length, off the run's own path."""

    def __init__(self, executor: RunExecutor, ctx: RunContext, loop: EventLoop) -> None:
        self._executor = executor
        self._ctx = ctx
        self._loop = loop
        self._renewal: asyncio.Task[None] | None = None
        self._renewed_at = time.monotonic()
        self._handle = self._loop.call_later(executor.lease_seconds / 3, self._due)

    def _due(self) -> None:
        self._renewal = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        executor, ctx = self._executor, self._ctx
        try:
            still_ours = await executor.store.renew_lease(
                ctx.run_id, executor.owner, executor.lease_seconds
            )
        except Exception:
            log.warning("run %s: renewing its lease failed", ctx.run_id, exc_info=True)
            # Try again next time while the lease lasts; once it has run out, another
            # process may own the run, so this one must stop.
            still_ours = time.monotonic() - self._renewed_at < executor.lease_seconds
        else:
            self._renewed_at = ctx.lease_confirmed_at = time.monotonic()
        if not still_ours:
            log.error("run %s: its lease is lost; stopping here", ctx.run_id)
            ctx.lose_lease()
            return
        await self._notice_cancellation()
        self._handle = self._loop.call_later(executor.lease_seconds / 3, self._due)

    async def _notice_cancellation(self) -> None:
        # A run waiting (sleep, signal) takes no step that would report a cancellation.
        try:
            record = await self._executor.store.get_run(self._ctx.run_id)
        except Exception:
            return
        if record is not None and record.cancel_requested:
            self._ctx.request_cancel()

    def stop(self) -> None:
        self._handle.cancel()
        if self._renewal is not None:
            self._renewal.cancel()
