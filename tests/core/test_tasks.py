"""``@wf.task``: decoration, retries, backoff, and plain calls outside a workflow."""

import asyncio
import inspect
import time

import pytest

from durable import RunContext, Task, Workflow
from durable.backoff import constant, exponential


class Boom(Exception):
    pass


# -- decoration ------------------------------------------------------------------------


async def test_bare_decorator_makes_a_task_named_after_the_function(wf: Workflow) -> None:
    @wf.task
    async def fetch(x: int) -> int:
        return x * 2

    assert isinstance(fetch, Task)
    assert fetch.name == "fetch"
    assert fetch.retries == wf.default_retries
    assert fetch.backoff == wf.default_backoff
    assert await fetch(21) == 42


async def test_decorator_options_are_applied(wf: Workflow) -> None:
    strategy = exponential(base=3, max=10)

    @wf.task(name="custom", retries=5, backoff=strategy)
    async def fetch() -> str:
        return "ok"

    assert fetch.name == "custom"
    assert fetch.retries == 5
    assert fetch.backoff is strategy


async def test_empty_parentheses_work_like_the_bare_decorator(wf: Workflow) -> None:
    @wf.task()
    async def fetch() -> str:
        return "ok"

    assert fetch.name == "fetch"
    assert await fetch() == "ok"


async def test_custom_name_is_the_step_id(wf: Workflow, store) -> None:
    @wf.task(name="download")
    async def fetch() -> int:
        return 1

    @wf.workflow(id="r")
    async def flow() -> None:
        await fetch()

    await flow()
    assert set(await store.load_steps("r")) == {"download"}


def test_functools_metadata_is_kept(wf: Workflow) -> None:
    async def fetch(url: str, *, timeout: float = 1.0) -> bytes:
        """Download url."""
        return b""

    task = wf.task(fetch)
    assert task.__name__ == "fetch"
    assert task.__qualname__ == fetch.__qualname__
    assert task.__doc__ == "Download url."
    assert task.__module__ == fetch.__module__
    assert task.__wrapped__ is fetch
    assert inspect.signature(task) == inspect.signature(fetch)


def test_workflow_function_metadata_is_kept(wf: Workflow) -> None:
    async def process(order_id: str) -> None:
        """Process an order."""

    flow = wf.workflow(process)
    assert flow.__name__ == "process"
    assert flow.__doc__ == "Process an order."
    assert flow.__wrapped__ is process


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_retries_n_means_n_plus_one_attempts(wf: Workflow, retries: int) -> None:
    attempts = 0

    @wf.task(retries=retries)
    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise Boom(f"attempt {attempts}")

    @wf.workflow(id=f"r{retries}")
    async def flow() -> None:
        await flaky()

    with pytest.raises(Boom, match=f"attempt {retries + 1}"):
        await flow()
    assert attempts == retries + 1


async def test_a_retried_task_succeeds_and_is_checkpointed_once(wf: Workflow, store) -> None:
    attempts = 0

    @wf.task(retries=3)
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Boom
        return "done"

    @wf.workflow(id="r")
    async def flow() -> str:
        return await flaky()

    assert await flow() == "done"
    assert attempts == 3
    assert await store.get_step("r", "flaky") == (True, "done")


async def test_default_retries_of_the_workflow_apply() -> None:
    wf = Workflow("app", db="memory://", default_retries=2, default_backoff=constant(0))
    attempts = 0

    @wf.task
    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise Boom

    @wf.workflow(id="r")
    async def flow() -> None:
        await flaky()

    with pytest.raises(Boom):
        await flow()
    assert attempts == 3


async def test_backoff_receives_retry_numbers_from_zero(wf: Workflow) -> None:
    asked: list[int] = []

    def strategy(retry: int) -> float:
        asked.append(retry)
        return 0

    @wf.task(retries=3, backoff=strategy)
    async def flaky() -> None:
        raise Boom

    @wf.workflow(id="r")
    async def flow() -> None:
        await flaky()

    with pytest.raises(Boom):
        await flow()
    assert asked == [0, 1, 2]


async def test_backoff_waits_are_actually_slept(
    wf: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backoff wait is a pause of the run (one a cancellation can cut short)."""
    slept: list[float] = []

    async def fake_pause(self: RunContext, deadline: float) -> None:
        slept.append(round(deadline - time.time()))

    @wf.task(retries=4, backoff=exponential(base=2, max=10))
    async def flaky() -> None:
        raise Boom

    @wf.workflow(id="r")
    async def flow() -> None:
        await flaky()

    monkeypatch.setattr(RunContext, "pause_until", fake_pause)
    with pytest.raises(Boom):
        await flow()
    monkeypatch.undo()
    assert slept == [2, 4, 8, 10]


async def test_no_wait_after_the_last_attempt(wf: Workflow) -> None:
    asked: list[int] = []

    @wf.task(retries=0, backoff=lambda i: asked.append(i) or 0)
    async def flaky() -> None:
        raise Boom

    @wf.workflow(id="r")
    async def flow() -> None:
        await flaky()

    with pytest.raises(Boom):
        await flow()
    assert asked == []


async def test_a_raised_cancelled_error_is_not_retried(wf: Workflow) -> None:
    attempts = 0

    @wf.task(retries=3)
    async def step() -> None:
        nonlocal attempts
        attempts += 1
        raise asyncio.CancelledError

    @wf.workflow(id="r")
    async def flow() -> None:
        await step()

    with pytest.raises(asyncio.CancelledError):
        await flow()
    assert attempts == 1


async def test_cancelling_a_running_task_does_not_retry_or_checkpoint_it(
    wf: Workflow, store, wait_until
) -> None:
    attempts = 0

    @wf.task(retries=3)
    async def slow() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(60)
        return "never"

    @wf.workflow(id="r")
    async def flow() -> str:
        return await slow()

    running = asyncio.create_task(flow())
    await wait_until(lambda: attempts == 1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.sleep(0.05)
    assert attempts == 1
    assert await store.get_step("r", "slow") == (False, None)


def test_keyboard_interrupt_is_not_retried() -> None:
    attempts = 0

    async def main() -> None:
        wf = Workflow("app", db="memory://", default_backoff=constant(0))

        @wf.task(retries=3)
        async def step() -> None:
            nonlocal attempts
            attempts += 1
            raise KeyboardInterrupt

        @wf.workflow(id="r")
        async def flow() -> None:
            await step()

        await flow()

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert attempts == 1


# -- outside a workflow ------------------------------------------------------------------


async def test_task_outside_a_workflow_is_a_plain_call(recording_store) -> None:
    wf = Workflow("app", db=recording_store, default_backoff=constant(0))

    @wf.task(retries=5)
    async def add(a: int, b: int = 1) -> int:
        return a + b

    assert await add(1, b=2) == 3
    assert await add(1, step_id="explicit") == 2
    assert recording_store.calls == []


async def test_task_outside_a_workflow_is_not_retried(recording_store) -> None:
    wf = Workflow("app", db=recording_store, default_backoff=constant(0))
    attempts = 0

    @wf.task(retries=5)
    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise Boom

    with pytest.raises(Boom):
        await flaky()
    assert attempts == 1
    assert recording_store.calls == []


async def test_task_outside_a_workflow_returns_the_object_itself(wf: Workflow) -> None:
    marker = object()  # not JSON: outside a workflow nothing is serialized

    @wf.task
    async def give() -> object:
        return marker

    assert await give() is marker


async def test_tasks_can_call_tasks_and_run_concurrently_inside_a_workflow(
    wf: Workflow, store
) -> None:
    @wf.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return list(await asyncio.gather(double(1), double(2), double(3)))

    assert await flow() == [2, 4, 6]
    assert await store.load_steps("r") == {"double": 2, "double#1": 4, "double#2": 6}
