"""The public step engine (durable.steps): run_step with a RetryPolicy's retry_after hint,
its cap, and the per-attempt timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from durable import SettingError, Workflow, current_run
from durable.backoff import constant, exponential
from durable.steps import RetryPolicy, run_step


class Throttled(Exception):
    def __init__(self, wait: float | None) -> None:
        super().__init__(f"throttled, retry after {wait}")
        self.wait = wait


def hint(exc: Exception) -> float | None:
    return exc.wait if isinstance(exc, Throttled) else None


async def run_in_workflow(wf: Workflow, step_id: str, body: Any, policy: RetryPolicy) -> Any:
    @wf.workflow(id="steps-{key}")
    async def flow(key: str) -> Any:
        run = current_run()
        assert run is not None
        return await run_step(run, step_id, body, policy)

    return await flow(step_id)


async def test_retry_after_is_honoured_as_the_next_wait(wf: Workflow) -> None:
    waits: list[float] = []
    calls = 0

    async def body() -> str:
        nonlocal calls
        calls += 1
        waits.append(time.monotonic())
        if calls == 1:
            raise Throttled(0.3)  # the backoff says 0; the error says 0.3 s
        if calls == 2:
            raise ConnectionError("no hint: the backoff's wait")
        return "done"

    policy = RetryPolicy(retries=3, backoff=constant(0), retry_after=hint)
    assert await run_in_workflow(wf, "hinted", body, policy) == "done"
    assert calls == 3
    assert waits[1] - waits[0] >= 0.3
    assert waits[2] - waits[1] < 0.2


async def test_retry_after_is_capped_by_the_backoff_maximum(wf: Workflow) -> None:
    calls: list[float] = []

    async def body() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Throttled(30)
        return "done"

    policy = RetryPolicy(retries=1, backoff=exponential(base=0.01, max=0.2), retry_after=hint)
    started = time.monotonic()
    assert await run_in_workflow(wf, "capped", body, policy) == "done"
    assert 0.2 <= calls[1] - calls[0] < 2
    assert time.monotonic() - started < 2

    assert RetryPolicy(backoff=constant(1), retry_after=hint).delay(0, Throttled(5)) == 5
    assert RetryPolicy(retry_after=hint, max_backoff=2).delay(0, Throttled(5)) == 2
    assert RetryPolicy(backoff=constant(1), retry_after=hint).delay(0, Throttled(None)) == 1


async def test_an_attempt_past_its_timeout_fails_and_is_retried(wf: Workflow) -> None:
    calls = 0

    async def body() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)  # cut off after 0.1 s
        return "second attempt"

    started = time.monotonic()
    policy = RetryPolicy(retries=1, timeout=0.1)
    assert await run_in_workflow(wf, "slow-once", body, policy) == "second attempt"
    assert calls == 2
    assert time.monotonic() - started < 2


async def test_a_timeout_with_no_retries_left_fails_the_step(wf: Workflow) -> None:
    async def body() -> str:
        await asyncio.sleep(30)
        return "never"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_in_workflow(wf, "too-slow", body, RetryPolicy(timeout=0.1))
    assert time.monotonic() - started < 2


async def test_a_completed_step_replays_without_its_body(wf: Workflow) -> None:
    calls = 0
    crash = [True]

    async def body() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"n": calls}

    @wf.workflow(id="replay-{key}")
    async def flow(key: str) -> Any:
        run = current_run()
        assert run is not None
        value = await run_step(run, "unit", body)
        if crash.pop():
            raise ConnectionError("after the step")
        return value

    with pytest.raises(ConnectionError):
        await flow("a")
    crash.append(False)
    assert await wf.resume("replay-a") == {"n": 1}
    assert calls == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"retries": -1}, {"timeout": 0}, {"timeout": float("inf")}, {"max_backoff": -1}],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SettingError):
        RetryPolicy(**kwargs)
