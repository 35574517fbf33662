"""Concurrent branches inside a workflow replay each result into the call that made it.

Each test runs a workflow whose branches finish in one order on the first run and in
the opposite order on the resume (their first awaits take different times), crashes
it after the branches, and checks the resume returns the first run's results in
program order with no step executed twice.
"""

import asyncio
from collections import Counter
from typing import Any

import pytest

from durable import NonDeterminismError, Workflow


class Crash(Exception):
    pass


def delays(first_run: bool, n: int = 3) -> list[float]:
    """Branch i waits longer than branch i+1 on the first run, shorter on the resume."""
    waits = [0.01 * (n - i) for i in range(n)]
    return waits if first_run else waits[::-1]


class Harness:
    def __init__(self, make_wf: Any) -> None:
        self.make_wf = make_wf
        self.executed: Counter[int] = Counter()
        self.first_run = True

    def app(self) -> tuple[Workflow, Any]:
        wf = self.make_wf()

        @wf.task
        async def price(item: int) -> int:
            self.executed[item] += 1
            return item * 10

        return wf, price

    async def branch(self, price: Any, item: int, index: int) -> int:
        await asyncio.sleep(delays(self.first_run)[index])  # not a step: timing only
        return await price(item)


def define_flow(harness: Harness, body: Any) -> Any:
    wf, price = harness.app()

    @wf.workflow(id="r", name="flow")
    async def flow() -> list[int]:
        out = await body(wf, price)
        if harness.first_run:
            raise Crash
        return out

    return flow


async def run_twice(harness: Harness, body: Any) -> tuple[Any, Any]:
    """The workflow ``body(wf, price)`` crashes on the first run and is resumed."""
    results = []
    for first in (True, False):
        harness.first_run = first
        flow = define_flow(harness, body)
        if first:
            with pytest.raises(Crash):
                await flow()
            results.append(None)
        else:
            results.append(await flow())
    return results[0], results[1]


async def test_asyncio_gather_branches_replay_into_their_calls(make_wf) -> None:
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        return list(await asyncio.gather(*(h.branch(price, i, i - 1) for i in (1, 2, 3))))

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


async def test_task_group_branches_replay_into_their_calls(make_wf) -> None:
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(h.branch(price, i, i - 1)) for i in (1, 2, 3)]
        return [t.result() for t in tasks]

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


async def test_create_task_branches_replay_into_their_calls(make_wf) -> None:
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        tasks = [asyncio.create_task(h.branch(price, i, i - 1)) for i in (1, 2, 3)]
        return [await t for t in tasks]

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


async def test_branches_of_branches_replay_into_their_calls(make_wf) -> None:
    h = Harness(make_wf)

    async def pair(price: Any, base: int, index: int) -> list[int]:
        await asyncio.sleep(delays(h.first_run, 2)[index])
        return list(await asyncio.gather(h.branch(price, base, 0), h.branch(price, base + 1, 2)))

    async def body(wf: Workflow, price: Any) -> list[int]:
        nested = await asyncio.gather(pair(price, 1, 0), pair(price, 3, 1))
        return [x for group in nested for x in group]

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30, 40]
    assert h.executed == {1: 1, 2: 1, 3: 1, 4: 1}


async def test_wf_gather_and_wf_map_replay_in_argument_order(make_wf) -> None:
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        gathered = await wf.gather(*(h.branch(price, i, i - 1) for i in (1, 2, 3)))
        mapped = await wf.map(price, [4, 5, 6, 7], max_concurrency=2)
        return gathered + mapped

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30, 40, 50, 60, 70]
    assert set(h.executed.values()) == {1}


async def test_gathered_task_calls_keep_the_seed_step_ids(wf: Workflow) -> None:
    @wf.task
    async def price(item: int) -> int:
        await asyncio.sleep(0.01 * (4 - item))
        return item

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return list(await asyncio.gather(price(1), price(2), price(3)))

    assert await flow() == [1, 2, 3]
    assert await wf.store.load_steps("r") == {"price": 1, "price#1": 2, "price#2": 3}


async def test_branch_step_ids_name_their_branch(wf: Workflow) -> None:
    @wf.task
    async def price(item: int) -> int:
        return item

    async def branch(item: int) -> int:
        await asyncio.sleep(0)
        return await price(item) + await price(item)

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return list(await asyncio.gather(branch(1), branch(2)))

    assert await flow() == [2, 4]
    assert set(await wf.store.load_steps("r")) == {
        "$0/price",
        "$0/price#1",
        "$1/price",
        "$1/price#1",
    }


async def test_wf_map_bounds_concurrency_and_fails_fast(wf: Workflow) -> None:
    running = {"now": 0, "most": 0}
    started: list[int] = []

    @wf.task(retries=0)
    async def work(item: int) -> int:
        started.append(item)
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        if item == 3:
            raise ValueError("bad item 3")
        return item

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return await wf.map(work, range(10), max_concurrency=2)

    with pytest.raises(ValueError, match="bad item 3"):
        await flow()
    assert running["most"] == 2
    assert len(started) < 10  # the rest was cancelled, not started


async def test_wf_map_refuses_a_bad_max_concurrency(wf: Workflow) -> None:
    @wf.task
    async def work(item: int) -> int:
        return item

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_concurrency"):
            await wf.map(work, [1], max_concurrency=bad)  # type: ignore[arg-type]


async def test_outside_a_workflow_gather_and_map_are_plain_calls(wf: Workflow) -> None:
    @wf.task
    async def work(item: int) -> int:
        return item * 2

    assert await wf.gather(work(1), work(2)) == [2, 4]
    assert await wf.map(work, [3, 4]) == [6, 8]


async def test_a_step_from_a_callback_created_task_is_refused_not_guessed(wf: Workflow) -> None:
    @wf.task
    async def price(item: int) -> int:
        return item

    @wf.workflow(id="r")
    async def flow() -> int:
        loop = asyncio.get_running_loop()
        made: asyncio.Future[asyncio.Task[int]] = loop.create_future()

        async def branch() -> int:
            return await price(1)

        # A task created from a callback has no place in the program order.
        loop.call_soon(lambda: made.set_result(asyncio.ensure_future(branch())))
        return await (await made)

    with pytest.raises(NonDeterminismError, match="step_id"):
        await flow()


async def test_an_explicit_step_id_needs_no_scope(wf: Workflow) -> None:
    @wf.task
    async def price(item: int) -> int:
        return item

    @wf.workflow(id="r")
    async def flow() -> int:
        loop = asyncio.get_running_loop()
        made: asyncio.Future[asyncio.Task[int]] = loop.create_future()

        async def branch() -> int:
            return await price(1, step_id="from-callback")

        loop.call_soon(lambda: made.set_result(asyncio.ensure_future(branch())))
        return await (await made)

    assert await flow() == 1


async def test_tasks_a_step_body_creates_do_not_shift_later_branches(make_wf) -> None:
    """A step's body runs on the first run and not on the replay: the tasks it creates
    must not take numbers from the workflow's own branches."""
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        @wf.task(name="fan")
        async def fan() -> int:
            helpers = [asyncio.create_task(asyncio.sleep(0)) for _ in range(3)]
            await asyncio.gather(*helpers)
            return 0

        await fan()
        return list(await asyncio.gather(*(h.branch(price, i, i - 1) for i in (1, 2, 3))))

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


# -- holes a hostile review found ------------------------------------------------------------


async def test_as_completed_over_branch_coroutines_is_refused_not_guessed(wf: Workflow) -> None:
    """as_completed starts coroutines from a set: their order is the set's, not the code's."""

    @wf.task
    async def price(item: int) -> int:
        return item

    async def branch(item: int) -> int:
        return await price(item)

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return [await done for done in asyncio.as_completed([branch(i) for i in range(4)])]

    with pytest.raises(NonDeterminismError, match="as_completed"):
        await flow()


async def test_as_completed_over_created_tasks_replays_into_their_calls(make_wf) -> None:
    h = Harness(make_wf)

    async def body(wf: Workflow, price: Any) -> list[int]:
        tasks = [asyncio.create_task(h.branch(price, i, i - 1)) for i in (1, 2, 3)]
        [await done for done in asyncio.as_completed(tasks)]
        return [t.result() for t in tasks]

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


async def test_a_task_called_inside_a_task_body_keeps_later_ids_in_place(make_wf) -> None:
    """On replay the outer body does not run: its inner call must not take the
    workflow's own next id, or every later call shifts by one."""
    for_second = {"crash": True}
    ran: list[str] = []

    def app() -> Any:
        wf = make_wf()

        @wf.task
        async def charge(cents: int) -> str:
            ran.append(f"charge {cents}")
            return f"charged {cents}"

        @wf.task
        async def checkout(cents: int) -> str:
            return "checkout: " + await charge(cents)

        @wf.workflow(id="r", name="flow")
        async def flow() -> list[str]:
            out = [await checkout(100), await charge(999)]
            if for_second["crash"]:
                raise RuntimeError("crash")
            return out

        return flow

    with pytest.raises(RuntimeError):
        await app()()
    for_second["crash"] = False
    assert await app()() == ["checkout: charged 100", "charged 999"]
    assert ran == ["charge 100", "charge 999"]


async def test_a_retried_body_with_branches_takes_its_ids_again(wf: Workflow) -> None:
    attempts = {"n": 0}

    @wf.task
    async def inner(i: int) -> int:
        return i

    @wf.task(retries=2)
    async def outer() -> int:
        attempts["n"] += 1
        values = await asyncio.gather(*(inner(i) for i in range(3)))
        if attempts["n"] == 1:
            raise ConnectionError("flaky")
        return sum(values)

    @wf.workflow(id="r")
    async def flow() -> int:
        return await outer()

    assert await flow() == 3
    assert attempts["n"] == 2


async def test_explicit_ids_cannot_meet_the_ids_of_a_scope(wf: Workflow) -> None:
    @wf.task
    async def fetch(what: str) -> str:
        return what

    @wf.task
    async def report() -> str:
        sub = asyncio.create_task(fetch("report"))
        return await sub

    async def branch() -> str:
        inner = asyncio.create_task(fetch("item 0"))
        return await inner

    @wf.workflow(id="r")
    async def flow() -> list[str]:
        return [await asyncio.create_task(branch()), await report(step_id="0")]

    assert await flow() == ["item 0", "report"]
    steps = await wf.store.load_steps("r")
    assert len(steps) == 3  # every step its own id: none replayed another's value


async def test_a_store_task_made_during_a_body_call_takes_no_branch_number(make_wf) -> None:
    """The store starts a background task (a WAL checkpoint, a connection) only on the
    first run: branches numbered after it must not shift on the resume."""
    h = Harness(make_wf)
    started = {"n": 0}

    async def body(wf: Workflow, price: Any) -> list[int]:
        if h.first_run:  # as a store would, now and then, from inside its call
            original = wf.store.set_signal

            async def set_signal(run_id: str, name: str, payload: Any) -> bool:
                started["n"] += 1
                asyncio.get_running_loop().create_task(asyncio.sleep(0))
                return await original(run_id, name, payload)

            wf.store.set_signal = set_signal  # type: ignore[method-assign]
        await wf.complete("other-run", "ping", started["n"])
        return list(await asyncio.gather(*(h.branch(price, i, i - 1) for i in (1, 2, 3))))

    _, resumed = await run_twice(h, body)
    assert resumed == [10, 20, 30]
    assert h.executed == {1: 1, 2: 1, 3: 1}


async def test_two_runs_awaiting_each_other_fail_instead_of_hanging(wf: Workflow) -> None:
    from durable import RecursiveRunError

    started = asyncio.Event()

    @wf.workflow(id="a")
    async def a() -> int:
        started.set()
        await asyncio.sleep(0.05)
        return await b()

    @wf.workflow(id="b")
    async def b() -> int:
        await started.wait()
        return await a()

    results = await asyncio.wait_for(asyncio.gather(a(), b(), return_exceptions=True), 5)
    assert any(isinstance(r, RecursiveRunError) for r in results), results


async def test_a_step_id_that_is_not_text_is_a_clear_error(wf: Workflow) -> None:
    from durable import StepIdConflictError

    @wf.task
    async def work(x: int) -> int:
        return x

    @wf.workflow(id="r")
    async def flow() -> list[int]:
        return list(await asyncio.gather(work(1), work(2, step_id=5)))  # type: ignore[arg-type]

    with pytest.raises(StepIdConflictError, match="step_id=5"):
        await flow()
