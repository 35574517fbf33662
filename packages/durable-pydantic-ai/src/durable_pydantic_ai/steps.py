"""One durable unit of an agent run as one checkpointed step of the current workflow run.

Each unit runs through core's step engine, :func:`durable.steps.run_step`, with the policy of
its :class:`~durable_pydantic_ai.config.ResolvedTaskConfig`, as ``@wf.task`` calls do: a step
already recorded for the run is returned as stored, else the body runs (with retries, failed
attempts on record, a backoff that ``wf.cancel`` cuts short, the engine's fault points) and its
JSON payload is recorded before the agent goes on. This module adds what is the agent's own:
the run a unit belongs to, and the rebuilding of a completed run, where units only replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from durable import DurableError, RunContext, current_run

# A completed run whose result is rebuilt by replaying its steps (see DurableAgent.run): units
# may only replay there, never execute.
_rebuilding: ContextVar[RunContext | None] = ContextVar("durable_pydantic_ai_rebuild", default=None)


class StepNotRecordedError(DurableError):
    """Rebuilding a completed run met a step the run never recorded (the agent's code changed)."""


class StreamingNotSupportedError(DurableError, NotImplementedError):
    """``DurableAgent.run_stream()``: the stream would be consumed outside the workflow run."""


def active_run() -> RunContext | None:
    """The workflow run whose steps an agent's units are, or None outside any workflow."""
    return _rebuilding.get() or current_run()


@contextmanager
def rebuilding(run: RunContext) -> Generator[None]:
    """Make ``run`` (already completed) the active run, with every unit replayed, none executed."""
    token = _rebuilding.set(run)
    try:
        yield
    finally:
        _rebuilding.reset(token)


def executable(
    run: RunContext, step_id: str, body: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    """The body to give :func:`durable.steps.run_step` for unit ``step_id`` of ``run``:
    ``body``, or while ``run`` (completed) is rebuilt, one that refuses to run. A recorded
    step replays without calling it, so only a step the run never recorded reaches it."""
    if _rebuilding.get() is not run:
        return body

    async def not_recorded() -> Any:
        raise StepNotRecordedError(
            f"run {run.run_id!r} completed, but its step {step_id!r} is not recorded: the "
            "agent now makes calls it did not make when the run executed. Start a new run "
            "(another run_id) to run the changed agent."
        )

    return not_recorded
