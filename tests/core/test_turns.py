"""``durable.turns``: durable work shares each turn of the event loop.

Steps on an in-memory store never wait, so without the gate a long workflow, or a
thousand workflows started at once, would run in one turn of the loop and starve every
timer and socket. These tests watch the loop from the outside (a callback that
reschedules itself every turn) and the waiting line from the inside (TURN_BUDGET = 0
parks every caller after the first of a turn).
"""

import asyncio
import gc
import inspect
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from durable import IdTemplateError, InMemoryStore, Workflow, turns
from durable.backoff import constant

WAIT = 5.0  # seconds before a test that should finish at once is declared hung


class LoopWatch:
    """A ``call_soon`` chain: runs once per turn of the loop, counting and timing turns."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.turn = 0
        self.times: list[float] = []
        self._running = True
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self.times.append(time.perf_counter())
        if self._running:
            self.loop.call_soon(self._tick)

    def stop(self) -> None:
        # The end counts as a tick: a turn that ran until the very end is a gap too.
        self._running = False
        self.times.append(time.perf_counter())

    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


@pytest.fixture
def no_gc() -> Iterator[None]:
    # A full collection can pause the process for many milliseconds on a busy machine;
    # that is not the loop being held by durable, so it must not fail timing asserts.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def no_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first durable caller of a turn goes on; every later one waits in line."""
    monkeypatch.setattr(turns, "TURN_BUDGET", 0.0)


async def test_a_workflow_whose_steps_never_wait_does_not_hold_the_loop(
    wf: Workflow, no_gc: None
) -> None:
    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow
    async def long_flow(n: int) -> int:
        return sum([await step(i) for i in range(n)])

    watch = LoopWatch()
    await asyncio.sleep(0)  # the watch has ticked once before the workflow starts
    started = time.perf_counter()
    assert await long_flow(10_000) == sum(range(10_000))
    elapsed = time.perf_counter() - started
    watch.stop()

    # Without the gate the whole workflow is one turn: one gap as long as the run (the
    # relative bound fails then on any machine). The absolute bound leaves room for the
    # OS to preempt this process on a busy shared machine (gaps of ~15 ms seen).
    ticks_during = sum(started < t for t in watch.times[:-1])
    assert ticks_during >= 20
    assert watch.longest_gap() < elapsed / 2
    assert watch.longest_gap() < 0.050


async def test_many_workflows_started_at_once_are_spread_over_many_turns(
    wf: Workflow, no_gc: None
) -> None:
    watch = LoopWatch()
    body_turns: list[int] = []
    step_turns: list[int] = []

    @wf.task
    async def double(i: int) -> int:
        step_turns.append(watch.turn)
        return 2 * i

    @wf.workflow
    async def flow(i: int) -> int:
        body_turns.append(watch.turn)
        return sum([await double(i, step_id=f"s{k}") for k in range(1 + i % 3)])

    await asyncio.sleep(0)
    started = time.perf_counter()
    results = await asyncio.gather(*(flow(i) for i in range(1000)))
    elapsed = time.perf_counter() - started
    watch.stop()

    assert results == [2 * i * (1 + i % 3) for i in range(1000)]
    assert len(step_turns) == sum(1 + i % 3 for i in range(1000))
    assert len(await wf.list_runs(status="completed", limit=2000)) == 1000
    # Without the gate every body and step runs in the turn after the gather. With it,
    # each turn lets go what fits in about two budgets: tens here, more on a fast CPU.
    per_turn = Counter(body_turns)
    assert len(per_turn) >= 20
    assert max(per_turn.values()) < 500
    assert max(Counter(step_turns).values()) < 500
    assert watch.longest_gap() < elapsed / 2


async def test_waiting_tasks_go_on_in_the_order_they_arrived(no_budget: None) -> None:
    watch = LoopWatch()
    arrived: list[tuple[str, int]] = []
    went_on: list[tuple[str, int]] = []
    went_on_turns: list[int] = []

    async def caller(name: str) -> None:
        for round_ in range(2):  # the second round queues behind the first
            arrived.append((name, round_))
            await turns.take_turn()
            went_on.append((name, round_))
            went_on_turns.append(watch.turn)

    names = [f"t{i}" for i in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)]
    await asyncio.wait_for(asyncio.gather(*(caller(n) for n in names)), WAIT)
    watch.stop()

    assert went_on == arrived
    # They really waited: a few are let go per turn, not everyone in one.
    assert len(set(went_on_turns)) >= len(names)


async def test_a_cancelled_waiter_is_skipped_and_the_others_go_on(no_budget: None) -> None:
    went_on: list[str] = []

    async def caller(name: str) -> str:
        await turns.take_turn()
        went_on.append(name)
        return name

    tasks = [asyncio.create_task(caller(f"w{i}")) for i in range(5)]
    await asyncio.sleep(0)  # all reached the gate; w0 may go on, w1..w4 are in line
    assert not tasks[2].done()
    tasks[2].cancel()

    # Were the cancelled ticket not skipped, the line would stall and this time out.
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert isinstance(results[2], asyncio.CancelledError)
    assert tasks[2].cancelled()
    assert results[:2] + results[3:] == ["w0", "w1", "w3", "w4"]
    assert went_on == ["w0", "w1", "w3", "w4"]


def test_the_line_follows_the_event_loop_across_asyncio_run(no_budget: None) -> None:
    async def one_loop() -> int:
        async def caller() -> None:
            for _ in range(3):
                await turns.take_turn()

        async def everything() -> int:
            await asyncio.gather(*(caller() for _ in range(20)))
            workflow = Workflow("app", db=InMemoryStore(), default_backoff=constant(0))

            @workflow.task
            async def step(i: int) -> int:
                return i

            @workflow.workflow
            async def flow(n: int) -> int:
                return sum([await step(i) for i in range(n)])

            try:
                return await flow(50)
            finally:
                await workflow.close()

        # A line left from the previous loop (its futures, its pending callback) would
        # fail or hang here: the state must be replaced for the new loop.
        return await asyncio.wait_for(everything(), WAIT)

    assert asyncio.run(one_loop()) == sum(range(50))
    assert asyncio.run(one_loop()) == sum(range(50))


@dataclass
class Order:
    id: str


async def test_wrong_arguments_fail_when_the_call_is_awaited_and_store_nothing(
    wf: Workflow, store: InMemoryStore
) -> None:
    @wf.workflow
    async def process(order_id: str) -> str:
        return order_id

    call = process("a", "surplus")  # type: ignore[call-arg]  # no error yet: not awaited
    assert inspect.iscoroutine(call)
    with pytest.raises(TypeError):
        await call
    with pytest.raises(TypeError):
        await process()  # type: ignore[call-arg]
    assert await store.list_runs() == []


async def test_an_id_template_error_is_raised_when_the_call_is_awaited_and_stores_nothing(
    wf: Workflow, store: InMemoryStore
) -> None:
    @wf.workflow(id="order-{order.missing}")
    async def process(order: Order) -> str:
        return order.id

    call = process(Order("A7"))  # the id is formatted only once the call is awaited
    with pytest.raises(IdTemplateError, match="missing"):
        await call
    assert await store.list_runs() == []


async def test_a_task_called_outside_a_workflow_does_not_pass_the_gate(
    wf: Workflow, no_budget: None
) -> None:
    @wf.task
    async def double(x: int) -> int:
        return 2 * x

    await turns.take_turn()  # durable work began in this turn: the gate is now closed
    probe = turns.take_turn()
    ticket = probe.send(None)  # a caller at the gate would be parked on this ticket...
    assert isinstance(ticket, asyncio.Future)
    probe.close()
    ticket.cancel()

    # ...while a plain call (no workflow, no store) completes without suspending.
    call = double(21)
    with pytest.raises(StopIteration) as finished:
        call.send(None)
    assert finished.value.value == 42
