"""The state of one executing run, found through a context variable.

Tasks read the active :class:`RunContext` instead of having it passed down, so a
task called outside any workflow simply finds none and runs as a plain call.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store


@dataclass
class RunContext:
    """One executing run: its id, its workflow and the store its steps go to."""

    run_id: str
    workflow_id: str
    store: Store
    #: The run's completed steps as loaded when it started (None: the store loads
    #: steps one at a time).
    _steps: dict[str, Any] | None = field(default=None, repr=False)
    _counters: dict[str, int] = field(default_factory=dict[str, int], repr=False)
    #: Set when another owner took the run over; the next step stops the run.
    _lease_lost: bool = field(default=False, repr=False)

    def next_step_id(self, name: str) -> str:
        """Step ids in call order: ``name``, ``name#1``, ``name#2`` ..."""
        count = self._counters.get(name, 0)
        self._counters[name] = count + 1
        return name if count == 0 else f"{name}#{count}"

    async def completed_step(self, step_id: str) -> tuple[bool, Any]:
        """``(found, value)`` of a step that completed in an earlier execution."""
        if self._steps is None:
            return await self.store.get_step(self.run_id, step_id)
        if step_id in self._steps:
            return True, self._steps[step_id]
        return False, None

    async def record_step(self, step_id: str, value: Any, attempt: int) -> None:
        await self.store.set_step(self.run_id, step_id, value, attempt)
        if self._steps is not None:
            self._steps[step_id] = value

    @classmethod
    def _started(
        cls, run_id: str, workflow_id: str, store: Store, steps: Mapping[str, Any] | None
    ) -> RunContext:
        return cls(run_id, workflow_id, store, None if steps is None else dict(steps))


_active_run: ContextVar[RunContext | None] = ContextVar("durable_active_run", default=None)


def current_run() -> RunContext | None:
    """The run executing in this task, or None outside a workflow."""
    return _active_run.get()
