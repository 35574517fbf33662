"""The state of one executing run, found through a context variable.

Tasks read the active :class:`RunContext` instead of having it passed down, so a
task called outside any workflow simply finds none and runs as a plain call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LeaseLostError, RunCancelledError

if TYPE_CHECKING:
    from .store import Store


@dataclass
class RunContext:
    """One executing run: its id, its workflow and the store its steps go to."""

    run_id: str
    workflow_id: str
    store: Store
    #: The run's completed steps as loaded when it started (None: the store reads
    #: them one at a time).
    loaded_steps: dict[str, Any] | None = field(default=None, repr=False)
    #: Set when another owner took the run over; the next step stops the run.
    lease_lost: bool = field(default=False, repr=False)
    #: Set when the run was asked to stop (``Workflow.cancel``).
    cancel_requested: bool = field(default=False, repr=False)
    _counters: dict[str, int] = field(default_factory=dict[str, int], repr=False)
    _interrupt: asyncio.Event | None = field(default=None, repr=False)
    #: Failed attempts per step from before a restart (loaded for recovered runs).
    _attempts: dict[str, int] | None = field(default=None, repr=False)
    #: Whether the run was taken over mid-run, so earlier attempts may be on record.
    recovered: bool = field(default=False, repr=False)

    def next_step_id(self, name: str) -> str:
        """Step ids in call order: ``name``, ``name#1``, ``name#2`` ..."""
        count = self._counters.get(name, 0)
        self._counters[name] = count + 1
        return name if count == 0 else f"{name}#{count}"

    async def completed_step(self, step_id: str) -> tuple[bool, Any]:
        """``(found, value)`` of a step that completed in an earlier execution."""
        if self.loaded_steps is None:
            return await self.store.get_step(self.run_id, step_id)
        if step_id in self.loaded_steps:
            return True, self.loaded_steps[step_id]
        return False, None

    async def record_step(self, step_id: str, value: Any, attempt: int) -> None:
        """Checkpoint a step; a cancellation the store reports stops the run next."""
        go_on = await self.store.checkpoint_step(self.run_id, step_id, value, attempt)
        if self.loaded_steps is not None:
            self.loaded_steps[step_id] = value
        if not go_on:
            self.request_cancel()

    async def attempts_before(self, step_id: str) -> int:
        """Failed attempts of ``step_id`` recorded before this process took the run."""
        if not self.recovered:
            return 0
        if self._attempts is None:
            self._attempts = dict(await self.store.load_attempts(self.run_id))
        return self._attempts.get(step_id, 0)

    def request_cancel(self) -> None:
        """Stop the run at its next step boundary, and wake it if it is waiting."""
        self.cancel_requested = True
        if self._interrupt is not None:
            self._interrupt.set()

    def lose_lease(self) -> None:
        """Another owner may hold the run now: stop at the next step, wake any wait."""
        self.lease_lost = True
        if self._interrupt is not None:
            self._interrupt.set()

    def raise_if_cancelled(self) -> None:
        """Stop here if the run was cancelled or its lease lost (at a step boundary)."""
        if self.lease_lost:
            raise LeaseLostError(f"run {self.run_id!r} lost its lease; another owner has it")
        if self.cancel_requested:
            raise RunCancelledError(f"run {self.run_id!r} was cancelled")

    async def pause_until(self, deadline: float) -> None:
        """Sleep until the epoch time ``deadline``; a cancellation cuts it short."""
        self.raise_if_cancelled()
        if self._interrupt is None:
            self._interrupt = asyncio.Event()
        remaining = deadline - time.time()
        if remaining > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._interrupt.wait()
        self.raise_if_cancelled()

    def interrupted(self) -> asyncio.Event:
        """An event set when the run is asked to stop (for waits to include)."""
        if self._interrupt is None:
            self._interrupt = asyncio.Event()
            if self.cancel_requested or self.lease_lost:
                self._interrupt.set()
        return self._interrupt


active_run: ContextVar[RunContext | None] = ContextVar("durable_active_run", default=None)


def current_run() -> RunContext | None:
    """The run executing in this task, or None outside a workflow."""
    return active_run.get()
