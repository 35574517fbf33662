"""One durable unit of an agent run as one checkpointed step of the current workflow run.

The engine's own tasks (``@wf.task``) retry every exception. An agent's model requests must
not retry a bad request or a misconfigured agent, so the units run through this small
executor instead, built on the public step API of :class:`durable.RunContext`: a step already
recorded for the run is returned as stored, else the body runs (with retries) and its JSON
payload is recorded before the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from durable import DurableError, LeaseLostError, RunContext, current_run
from durable.scopes import engine_section

from .config import ResolvedTaskConfig

log = logging.getLogger("durable.pydantic_ai")

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


async def checkpointed(
    run: RunContext,
    step_id: str,
    body: Callable[[], Awaitable[Any]],
    config: ResolvedTaskConfig,
) -> Any:
    """The recorded payload of ``step_id``, or ``body()``'s, recorded before it is returned.

    ``body`` must return JSON data. It is attempted up to ``config.retries + 1`` times, waiting
    ``config.backoff(n)`` seconds before retry ``n``; errors that ``config`` deems permanent
    fail at once.
    """
    found, payload = await run.completed_step(step_id)
    if found:
        log.debug("replayed step %s (run %s)", step_id, run.run_id)
        return payload
    if _rebuilding.get() is run:
        raise StepNotRecordedError(
            f"run {run.run_id!r} completed, but its step {step_id!r} is not recorded: the "
            "agent now makes calls it did not make when the run executed. Start a new run "
            "(another run_id) to run the changed agent."
        )
    if run.lease_lost:
        raise LeaseLostError(
            f"run {run.run_id!r} was taken over by another owner; step {step_id!r} was not started"
        )
    run.raise_if_cancelled()  # wf.cancel(run_id): stop at this step boundary, as tasks do
    attempt = 1
    while True:
        try:
            payload = await body()
        except Exception as exc:
            if attempt > config.retries or not config.is_retryable(exc):
                raise
            delay = config.backoff(attempt - 1)
            log.warning(
                "step %s (run %s) failed on attempt %d/%d: %r; retrying in %.3gs",
                step_id, run.run_id, attempt, config.retries + 1, exc, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1
            continue
        with engine_section(run):  # the store's own tasks take no branch number
            await run.record_step(step_id, payload, attempt)
        log.debug("completed step %s (run %s)", step_id, run.run_id)
        return payload
