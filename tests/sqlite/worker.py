"""Processes the SQLite tests start: ``python worker.py <command> <args...>``.

hold <db> <seconds>                         hold the write lock with a raw connection
many <db> <proc> <workflows> <steps> <t0>   run workflows concurrently, print a summary
same <db> <ledger> <run_id> <steps> <t0>    run one shared run id, log each step body
signal <db> <run_id>                        wait for signal "go", print when it arrived
noclose <db>                                run a workflow (durability=full), never close
inspect <db> <run_id> <t0>                  open the store, print the run's steps as JSON

``t0`` is an epoch time to start at, so that several processes overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from typing import Any

from durable import Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore


def say(*parts: object) -> None:
    print(*parts, flush=True)


def wait_until(t0: float) -> None:
    delay = t0 - time.time()
    if delay > 0:
        time.sleep(delay)


def hold(db: str, seconds: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
    say("LOCKED")
    time.sleep(float(seconds))
    conn.execute("COMMIT")
    say("RELEASED")
    conn.close()


async def many(db: str, proc: str, workflows: str, steps: str, t0: str) -> None:
    wf = Workflow("many", db=db, default_retries=0, default_backoff=constant(0))

    @wf.task
    async def step(i: int) -> int:
        await asyncio.sleep(0)
        return i * i

    @wf.workflow(id="p{proc}-w{n}")
    async def flow(proc: int, n: int) -> int:
        total = 0
        for i in range(int(steps)):
            total += await step(i, step_id=f"s{i}")
        return total

    wait_until(float(t0))
    began = time.time()
    outcomes = await asyncio.gather(
        *(flow(int(proc), n) for n in range(int(workflows))), return_exceptions=True
    )
    ended = time.time()
    waited = wf.store._db.times_busy > 0  # type: ignore[attr-defined]
    await wf.close()
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    completed = sum(1 for o in outcomes if not isinstance(o, BaseException))
    say(json.dumps({"completed": completed, "errors": errors}))
    say(json.dumps({"began": began, "ended": ended, "waited": waited}))


async def same(db: str, ledger: str, run_id: str, steps: str, t0: str) -> None:
    wf = Workflow("same", db=db, default_retries=0, default_backoff=constant(0))
    pid = os.getpid()

    def log(line: str) -> None:
        with open(ledger, "a") as f:
            f.write(f"{line} {pid} {time.time():.6f}\n")

    @wf.task
    async def step(i: int) -> int:
        log(f"start step-{i}")
        await asyncio.sleep(0.05)
        log(f"end step-{i}")
        return pid

    @wf.workflow
    async def flow() -> list[int]:
        return [await step(i, step_id=f"step-{i}") for i in range(int(steps))]

    wait_until(float(t0))
    result = await flow.run(run_id)
    await wf.close()
    say(json.dumps(result))


async def signal(db: str, run_id: str) -> None:
    wf = Workflow("sig", db=db)

    @wf.task
    async def ready() -> str:
        return "ready"

    @wf.workflow
    async def flow() -> Any:
        await ready()
        say("READY")
        payload = await wf.signal("go", poll=0.2)
        say("GOT", time.time(), json.dumps(payload))
        return payload

    await flow.run(run_id)
    await wf.close()


#: Module-level, as in a script: the workflow (and its connections) outlive asyncio.run.
KEEP: list[Workflow] = []


async def noclose(db: str) -> None:
    wf = Workflow("noclose", db=SQLiteStore(db, durability="full"))
    KEEP.append(wf)

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow
    async def flow() -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(3)])

    result = await flow.run("noclose-run")
    assert wf.store._db._patient is not None  # type: ignore[attr-defined]
    say("DONE", result)
    # no wf.close(): the interpreter must still exit


async def inspect(db: str, run_id: str, t0: str) -> None:
    wait_until(float(t0))
    store = SQLiteStore(db)
    await store.setup()
    steps = await store.load_steps(run_id)
    await store.close()
    say(json.dumps(steps, sort_keys=True))


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "hold":
        hold(*args)
    else:
        asyncio.run(globals()[command](*args))


if __name__ == "__main__":
    main()
