"""Step ids: ``name``, ``name#1`` ... in call order, or ``step_id=``; replay by step id."""

from collections import Counter

import pytest

from durable import Workflow


class Crash(Exception):
    pass


async def test_automatic_step_ids_follow_call_order(wf: Workflow, store) -> None:
    @wf.task
    async def fetch(i: int) -> int:
        return i * 10

    @wf.task
    async def other() -> str:
        return "x"

    @wf.workflow(id="r")
    async def flow() -> None:
        await fetch(0)
        await other()
        await fetch(1)
        await fetch(2)

    await flow()
    assert await store.load_steps("r") == {
        "fetch": 0,
        "other": "x",
        "fetch#1": 10,
        "fetch#2": 20,
    }


async def test_step_ids_are_readable_through_the_seed_protocol(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def fetch(i: int) -> int:
        return i

    @wf.workflow(id="r")
    async def flow() -> None:
        for i in range(3):
            await fetch(i)

    await flow()
    assert await wf.store.get_step("r", "fetch") == (True, 0)
    assert await wf.store.get_step("r", "fetch#1") == (True, 1)
    assert await wf.store.get_step("r", "fetch#2") == (True, 2)
    assert await wf.store.get_step("r", "fetch#3") == (False, None)


async def test_explicit_step_ids_in_a_loop(wf: Workflow, store) -> None:
    @wf.task
    async def process(item: str) -> str:
        return item.upper()

    @wf.workflow(id="r")
    async def flow(items: list[str]) -> list[str]:
        return [await process(item, step_id=f"item-{item}") for item in items]

    assert await flow(["a", "b"]) == ["A", "B"]
    assert await store.load_steps("r") == {"item-a": "A", "item-b": "B"}


async def test_explicit_step_ids_do_not_shift_automatic_ones(wf: Workflow, store) -> None:
    @wf.task
    async def fetch(i: int) -> int:
        return i

    @wf.workflow(id="r")
    async def flow() -> None:
        await fetch(1)
        await fetch(2, step_id="special")
        await fetch(3)

    await flow()
    assert await store.load_steps("r") == {"fetch": 1, "special": 2, "fetch#1": 3}


async def test_explicit_step_ids_replay_by_key_not_by_position(wf: Workflow) -> None:
    runs: Counter[str] = Counter()

    @wf.task
    async def process(item: str) -> str:
        runs[item] += 1
        return item.upper()

    # The code changes between the runs (a deploy): the same inputs are processed in
    # another order, one more item is added, and the crash is gone.
    version = {"order": ["a", "b"], "fail": True}

    @wf.workflow(id="r")
    async def flow() -> list[str]:
        out = [await process(i, step_id=f"item-{i}") for i in version["order"]]
        if version["fail"]:
            raise Crash
        return out

    with pytest.raises(Crash):
        await flow.run("r")
    version.update(order=["c", "b", "a"], fail=False)
    # Resumed: "a" and "b" replay by their ids although their positions moved.
    assert await flow.run("r") == ["C", "B", "A"]
    assert runs == {"a": 1, "b": 1, "c": 1}


async def test_replay_after_a_failure_at_step_k_runs_only_the_rest(make_wf) -> None:
    wf = make_wf()
    calls: Counter[str] = Counter()
    broken = {"c": True}

    def make(name: str):
        @wf.task(name=name, retries=0)
        async def step(value: int) -> int:
            calls[name] += 1
            if broken.get(name):
                raise Crash(name)
            return value + 1

        return step

    a, b, c, d = (make(n) for n in "abcd")

    @wf.workflow(id="r")
    async def flow() -> int:
        return await d(await c(await b(await a(0))))

    with pytest.raises(Crash):
        await flow()
    assert calls == {"a": 1, "b": 1, "c": 1}

    broken.clear()
    assert await flow() == 4
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 1}


async def test_replay_in_a_new_process_runs_only_the_rest(make_wf) -> None:
    calls: Counter[str] = Counter()
    broken = {"second": True}

    def define(wf: Workflow):
        @wf.task(retries=0)
        async def first() -> str:
            calls["first"] += 1
            return "one"

        @wf.task(retries=0)
        async def second(prev: str) -> str:
            calls["second"] += 1
            if broken:
                raise Crash
            return prev + "+two"

        @wf.workflow(id="r")
        async def flow() -> str:
            return await second(await first())

        return flow

    with pytest.raises(Crash):
        await define(make_wf())()
    broken.clear()
    assert await define(make_wf())() == "one+two"
    assert calls == {"first": 1, "second": 2}


async def test_repeated_calls_replay_in_the_same_order(wf: Workflow) -> None:
    """``fetch#1`` on replay is the second call's checkpoint, not the first's."""
    seen: list[list[int]] = []
    failing = [True]

    @wf.task
    async def fetch(i: int) -> int:
        return i * 100

    @wf.workflow(id="r")
    async def flow() -> None:
        values = [await fetch(i) for i in range(3)]
        seen.append(values)
        if failing:
            failing.clear()
            raise Crash

    with pytest.raises(Crash):
        await flow()
    await flow()
    assert seen == [[0, 100, 200], [0, 100, 200]]


async def test_same_task_in_different_runs_is_isolated(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def fetch(key: str) -> str:
        return f"value-{key}"

    @wf.workflow(id="job-{key}")
    async def flow(key: str) -> str:
        return await fetch(key)

    assert await flow("a") == "value-a"
    assert await flow("b") == "value-b"
    assert await wf.store.get_step("job-a", "fetch") == (True, "value-a")
    assert await wf.store.get_step("job-b", "fetch") == (True, "value-b")


async def test_same_task_in_different_workflows_is_isolated(wf: Workflow, store) -> None:
    executed: list[str] = []

    @wf.task
    async def fetch(key: str) -> str:
        executed.append(key)
        return key

    @wf.workflow(id="one")
    async def first() -> str:
        return await fetch("first")

    @wf.workflow(id="two")
    async def second() -> str:
        await fetch("second-0")
        return await fetch("second-1")

    assert await first() == "first"
    assert await second() == "second-1"
    assert executed == ["first", "second-0", "second-1"]
    assert await store.load_steps("one") == {"fetch": "first"}
    assert await store.load_steps("two") == {"fetch": "second-0", "fetch#1": "second-1"}


async def test_step_counters_restart_for_every_execution(wf: Workflow, store) -> None:
    @wf.task
    async def fetch() -> int:
        return 1

    @wf.workflow
    async def flow(n: int) -> None:
        await fetch()
        await fetch()

    await flow(1)
    await flow(2)
    assert set(await store.load_steps("app-flow-1")) == {"fetch", "fetch#1"}
    assert set(await store.load_steps("app-flow-2")) == {"fetch", "fetch#1"}
