"""Step ids are unique within a run, and the engine's own ids cannot be hit by accident."""

import contextlib
from typing import Any

import pytest

from durable import SignalTimeoutError, StepIdConflictError, Workflow


async def test_one_explicit_step_id_used_twice_is_an_error(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def add(x: int) -> int:
        return x + 1

    @wf.task
    async def double(x: int) -> int:
        return x * 2

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return [await add(1, step_id="calc"), await double(5, step_id="calc")]

    with pytest.raises(StepIdConflictError) as caught:
        await flow()
    message = str(caught.value)
    assert "'r'" in message
    assert "'calc'" in message
    assert "'add'" in message
    assert "'double'" in message
    steps = await wf.store.load_steps("r")
    assert steps == {"calc": 2}  # nothing recorded under the second call's id


async def test_an_explicit_id_equal_to_an_automatic_one_is_an_error(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def add(x: int) -> int:
        return x + 1

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return [await add(1, step_id="add#1"), await add(2), await add(3)]

    with pytest.raises(StepIdConflictError, match="'add#1'"):
        await flow()
    assert await wf.store.load_steps("r") == {"add#1": 2, "add": 3}


async def test_an_automatic_id_taken_first_then_given_explicitly_is_an_error(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def add(x: int) -> int:
        return x + 1

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return [await add(1), await add(2, step_id="add")]

    with pytest.raises(StepIdConflictError, match="'add'"):
        await flow()


async def test_reserved_step_ids_are_refused(wf: Workflow) -> None:
    @wf.task
    async def add(x: int) -> int:
        return x + 1

    @wf.workflow(id="r")
    async def flow() -> int:
        return await add(1, step_id="$sleep")

    with pytest.raises(StepIdConflictError, match="reserved"):
        await flow()


def test_a_task_named_in_the_reserved_space_is_refused(wf: Workflow) -> None:
    async def fn() -> None:
        pass

    with pytest.raises(StepIdConflictError, match="reserved"):
        wf.task(name="$sleep")(fn)


async def test_a_task_named_sleep_and_a_durable_sleep_keep_their_own_values(make_wf) -> None:
    wf = make_wf()
    runs = {"sleep": 0}

    @wf.task
    async def sleep() -> int:  # a user's task may be called what the engine's steps are
        runs["sleep"] += 1
        return 7

    @wf.task
    async def deadline_task() -> int:
        return 8

    @wf.workflow(id="r")
    async def flow(fail: bool) -> list[Any]:
        first = await sleep(step_id="sleep")
        await wf.sleep(0)
        other = await deadline_task(step_id="signal-timeout:go")
        with contextlib.suppress(SignalTimeoutError):
            await wf.signal("go", timeout=0)
        if fail:
            raise RuntimeError("crash")
        return [first, other, await sleep(step_id="sleep-again")]

    with pytest.raises(RuntimeError):
        await flow(True)
    wf2 = make_wf()

    @wf2.task(name="sleep")
    async def sleep2() -> int:
        runs["sleep"] += 1
        return 9

    @wf2.task(name="deadline_task")
    async def deadline2() -> int:
        return -1

    @wf2.workflow(id="r", name="flow")
    async def flow2(fail: bool) -> list[Any]:
        first = await sleep2(step_id="sleep")
        await wf2.sleep(0)
        other = await deadline2(step_id="signal-timeout:go")
        with contextlib.suppress(SignalTimeoutError):
            await wf2.signal("go", timeout=0)
        return [first, other, await sleep2(step_id="sleep-again")]

    # On replay each step gets its own value back: 7 (not {'wake_at': ...}), then 8.
    assert await wf2.resume("r") == [7, 8, 9]
    assert runs["sleep"] == 2


async def test_step_ids_of_a_run_recorded_before_the_reserved_prefix_still_replay(
    wf: Workflow,
) -> None:
    """A sleep recorded by 0.3 as "sleep" keeps its wake-up time after the upgrade."""
    import time

    store = wf.store
    wake_at = time.time() + 0.2
    claim = await store.claim_run("old", "app.flow", {}, owner="gone", lease_seconds=0.0)
    assert claim.record.input_digest is None  # recorded without a digest: by 0.3
    await store.set_step("old", "sleep", {"wake_at": wake_at})
    await store.release_run("old", "gone")

    @wf.workflow(id="old")
    async def flow() -> float:
        await wf.sleep(3600)  # the new call asks for an hour; the record says 0.2 s
        return time.time()

    finished = await flow()
    assert wake_at <= finished < wake_at + 1
