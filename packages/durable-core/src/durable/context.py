"""The state of one executing run, found through a context variable.

Tasks read the active :class:`RunContext` instead of having it passed down, so a
task called outside any workflow simply finds none and runs as a plain call.
"""

from __future__ import annotations

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
    #: The run's completed steps as loaded when it started (None: the store reads
    #: them one at a time).
    loaded_steps: dict[str, Any] | None = field(default=None, repr=False)
    #: Set when another owner took the run over; the next step stops the run.
    lease_lost: bool = field(default=False, repr=False)
    _counters: dict[str, int] = field(default_factory=dict[str, int], repr=False)

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
        await self.store.set_step(self.run_id, step_id, value, attempt)
        if self.loaded_steps is not None:
            self.loaded_steps[step_id] = value


active_run: ContextVar[RunContext | None] = ContextVar("durable_active_run", default=None)


def current_run() -> RunContext | None:
    """The run executing in this task, or None outside a workflow."""
    return active_run.get()
