"""The durable side of each workload, on the SQLite store (see ``floors.py`` for the floors).

Every case opens its ``Workflow`` (``async with wf``) and runs a short warm-up run on
the same file before the measured part, as the floors do; the step is the floors'
trivial step (returns a small dict), checkpointed by ``@wf.task``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from floors import STEPS_B, STEPS_C, WARMUP
from harness import Env, Outcome

from durable import SQLiteStore, Store, Workflow

if TYPE_CHECKING:
    from durable import WorkflowFunction

Durability = Literal["normal", "full"]


class CountingStore(SQLiteStore):
    """The SQLite store, counting how replays read steps (to check D really replays)."""

    def __init__(self, path: str, durability: Durability = "normal") -> None:
        super().__init__(path, durability=durability)
        self.loads = 0
        self.gets = 0
        self.reads = 0

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        self.loads += 1
        return await super().load_steps(run_id)

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        self.gets += 1
        return await super().get_step(run_id, step_id)

    async def _read(self, sql: str, params: Any) -> Any:
        self.reads += 1
        return await super()._read(sql, params)


@dataclass
class App:
    wf: Workflow
    store: Store
    flow: WorkflowFunction[..., int]
    executed: list[int]  # step bodies run, one counter

    def reset_counters(self) -> None:
        self.executed[0] = 0
        if isinstance(self.store, CountingStore):
            self.store.loads = self.store.gets = self.store.reads = 0

    def counters(self) -> dict[str, int]:
        counting = self.store if isinstance(self.store, CountingStore) else None
        return {
            "steps_executed": self.executed[0],  # 0: every step came from the store
            "load_queries": counting.loads if counting else -1,  # 1: one load for the run
            "reads": counting.reads if counting else -1,  # its pages, and the run's record
            "get_step_queries": counting.gets if counting else -1,  # 0: none one at a time
        }


def make_app(
    db: str | Store,
    durability: Durability = "normal",
    *,
    yielding: bool = False,
    fail: bool = False,
) -> App:
    """A fresh Workflow on ``db`` (a SQLite path, or a store) with one task, one workflow."""
    store = CountingStore(db, durability) if isinstance(db, str) else db
    wf = Workflow("bench", db=store)
    executed = [0]

    @wf.task
    async def step(i: int) -> dict[str, Any]:
        executed[0] += 1
        if yielding:  # as a step doing real I/O would
            await asyncio.sleep(0)
        return {"i": i, "ok": True}

    @wf.workflow(id="wf-{key}")
    async def flow(key: str, steps: int) -> int:
        for i in range(steps):
            await step(i)
        if fail:  # of the app, not an argument: the resume must be the same call
            raise RuntimeError("failing after every step, so that the next call replays them")
        return steps

    return App(wf, store, flow, executed)


async def _sequential(
    env: Env, durability: Durability = "normal", *, yielding: bool = False
) -> Outcome:
    app = make_app(env.path(), durability, yielding=yielding)
    async with app.wf:
        await app.flow("warm", WARMUP)
        async with env.measure():
            result = await app.flow("a", env.size)
    return Outcome(steps=env.size, workflows=1, errors=int(result != env.size))


async def sequential(env: Env) -> Outcome:
    """A: one workflow of ``size`` sequential steps."""
    return await _sequential(env)


async def sequential_yielding(env: Env) -> Outcome:
    """A, with steps that yield to the loop once (``asyncio.sleep(0)``), as I/O would."""
    return await _sequential(env, yielding=True)


async def sequential_full(env: Env) -> Outcome:
    """A with ``durability="full"``: every commit fsynced, off the loop."""
    return await _sequential(env, "full")


async def _workflows(env: Env, yielding: bool) -> Outcome:
    app = make_app(env.path(), yielding=yielding)
    errors = 0
    async with app.wf:
        await app.flow("warm", STEPS_B)
        async with env.measure():
            for w in range(env.size):
                try:
                    await app.flow(f"b-{w}", STEPS_B)
                except Exception:
                    errors += 1
    return Outcome(steps=env.size * STEPS_B, workflows=env.size, errors=errors)


async def workflows(env: Env) -> Outcome:
    """B: ``size`` workflows of 3 steps, one after another."""
    return await _workflows(env, yielding=False)


async def workflows_yielding(env: Env) -> Outcome:
    """B, with steps that yield to the loop once."""
    return await _workflows(env, yielding=True)


async def _concurrent(env: Env, yielding: bool) -> Outcome:
    app = make_app(env.path(), yielding=yielding)
    async with app.wf:
        await app.flow("warm", STEPS_C)
        async with env.measure():
            results = await asyncio.gather(
                *(app.flow(f"c-{w}", STEPS_C) for w in range(env.size)),
                return_exceptions=True,
            )
    errors = sum(1 for r in results if r != STEPS_C)
    return Outcome(steps=env.size * STEPS_C, workflows=env.size, errors=errors)


async def concurrent(env: Env) -> Outcome:
    """C: ``size`` workflows of 5 steps at once (``asyncio.gather``)."""
    return await _concurrent(env, yielding=False)


async def concurrent_yielding(env: Env) -> Outcome:
    """C, with steps that yield to the loop once."""
    return await _concurrent(env, yielding=True)


async def replay(env: Env) -> Outcome:
    """D: a fresh Workflow on the file replays a failed run of ``size`` recorded steps."""
    path = env.path()
    first = make_app(path, fail=True)
    async with first.wf:
        for key, steps in (("warm", WARMUP), ("replay", env.size)):
            with contextlib.suppress(RuntimeError):
                await first.flow(key, steps)
    recorded = first.executed[0]
    app = make_app(path)  # a new Workflow and store: nothing cached from the first one
    async with app.wf:
        await app.flow("warm", WARMUP)  # the warm-up is a replay too
        app.reset_counters()
        async with env.measure():
            result = await app.flow("replay", env.size)
        record = await app.wf.get_run(app.flow.run_id_for("replay", env.size))
    checks: dict[str, Any] = {
        "recorded_steps": recorded - WARMUP,
        **app.counters(),
        "status": None if record is None else record.status,
    }
    expected: dict[str, Any] = {
        "recorded_steps": env.size,
        "steps_executed": 0,
        "load_queries": 1,
        "get_step_queries": 0,
        "status": "completed",
    }
    ok = result == env.size and all(checks[key] == value for key, value in expected.items())
    return Outcome(steps=env.size, workflows=1, errors=int(not ok), checks=checks)


async def multiprocess_child(env: Env) -> Outcome:
    """One of several processes writing one file: ``size`` workflows of 5 steps in turn.

    ``env.extra``: ``path`` (the shared file), ``proc`` (this process's number) and
    ``start_at`` (a ``time.time()`` at which every process starts measuring).
    """
    proc: int = env.extra["proc"]
    app = make_app(env.extra["path"])
    errors = 0
    async with app.wf:
        await app.flow(f"warm-{proc}", STEPS_C)
        await asyncio.sleep(max(0.0, env.extra["start_at"] - time.time()))
        async with env.measure():
            for w in range(env.size):
                try:
                    await app.flow(f"mp-{proc}-{w}", STEPS_C)
                except Exception:
                    errors += 1
    return Outcome(steps=env.size * STEPS_C, workflows=env.size, errors=errors)
