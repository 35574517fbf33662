"""Processes the operations tests start (and SIGKILL): ``python worker.py <command> ...``.

Every command works on a SQLite file and prints one JSON line per event, flushed, so
the test can follow it. Step bodies append ``<run_id> <step_id> start|end`` to a
ledger file (fsynced) so a test sees each time a body ran, whatever the store says.

sleep   DB LEDGER RUN_ID SECONDS           step, wf.sleep(SECONDS), step
signal  DB RUN_ID NAME TIMEOUT             wait for signal NAME ("none": no timeout)
steps   DB LEDGER RUN_ID N STEP_SECONDS    a loop of N steps, each STEP_SECONDS long
start   DB LEDGER N_RUNS STEPS STEP_SECONDS  start N_RUNS runs of ``job`` at once
recover DB LEDGER STEPS STEP_SECONDS       ``wf.recover()``, print the ids and outcomes

Options (environment): OPS_LEASE (lease seconds, default 30), OPS_MAX_RECOVERIES
(default 5). The workflows are built by :func:`build`, which the tests import too, so
a recovery in the test process runs exactly the code the killed process ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from durable import RunCancelledError, RunFailedError, SignalTimeoutError, Workflow
from durable.backoff import constant


def say(**event: Any) -> None:
    print(json.dumps({"t": time.time(), **event}), flush=True)


def note(ledger: str, run_id: str, step_id: str, what: str) -> None:
    with open(ledger, "a") as out:
        out.write(f"{run_id} {step_id} {what}\n")
        out.flush()
        os.fsync(out.fileno())


@dataclass
class Flows:
    wf: Workflow
    sleeper: Any
    waiter: Any
    looper: Any
    job: Any


def build(
    db: str,
    ledger: str,
    *,
    steps: int = 5,
    step_seconds: float = 0.1,
    lease_seconds: float = 30.0,
    max_recoveries: int = 5,
) -> Flows:
    """The Workflow ``ops`` with the workflows every command (and test) uses."""
    wf = Workflow(
        "ops",
        db=db,
        default_retries=0,
        default_backoff=constant(0),
        lease_seconds=lease_seconds,
        max_recoveries=max_recoveries,
    )

    @wf.task
    async def work(run_id: str, step_id: str, seconds: float) -> str:
        note(ledger, run_id, step_id, "start")
        await asyncio.sleep(seconds)
        note(ledger, run_id, step_id, "end")
        return f"{step_id} done"

    @wf.workflow(id="sleeper-{name}")
    async def sleeper(name: str, seconds: float) -> float:
        run_id = f"sleeper-{name}"
        await work(run_id, "before", 0, step_id="before")
        say(event="sleeping")
        await wf.sleep(seconds)
        woke = time.time()
        say(event="woke", at=woke)
        await work(run_id, "after", 0, step_id="after")
        return woke

    @wf.workflow(id="waiter-{name}")
    async def waiter(name: str, signal: str, timeout: float | None) -> Any:
        say(event="waiting")
        return await wf.signal(signal, poll=0.1, timeout=timeout)

    @wf.workflow(id="looper-{name}")
    async def looper(name: str, n: int, seconds: float) -> int:
        for i in range(n):
            await work(f"looper-{name}", f"step-{i}", seconds, step_id=f"step-{i}")
        return n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        total = 0
        for i in range(steps):
            await work(f"job-{n}", f"step-{i}", step_seconds, step_id=f"step-{i}")
            total += n * i
        return total

    return Flows(wf, sleeper, waiter, looper, job)


def outcome(exc: BaseException | None, result: Any = None) -> dict[str, Any]:
    if exc is None:
        return {"result": result}
    return {"error": type(exc).__name__, "message": str(exc)}


async def main(command: str, args: list[str]) -> int:
    lease = float(os.environ.get("OPS_LEASE", "30"))
    max_recoveries = int(os.environ.get("OPS_MAX_RECOVERIES", "5"))
    if command == "signal":
        db, run_id, name, timeout = args
        flows = build(db, os.devnull, lease_seconds=lease)
        wait = None if timeout == "none" else float(timeout)
        async with flows.wf:
            try:
                payload = await flows.waiter.run(run_id, run_id, name, wait)
            except SignalTimeoutError as exc:
                say(event="timeout", **outcome(exc))
                return 4
            say(event="payload", payload=payload)
        return 0
    if command == "sleep":
        db, ledger, name, seconds = args
        flows = build(db, ledger, lease_seconds=lease)
        async with flows.wf:
            woke = await flows.sleeper(name, float(seconds))
            say(event="done", woke=woke)
        return 0
    if command == "steps":
        db, ledger, name, n, seconds = args
        flows = build(db, ledger, lease_seconds=lease)
        async with flows.wf:
            try:
                result = await flows.looper(name, int(n), float(seconds))
            except RunCancelledError as exc:
                say(event="ended", **outcome(exc))
                return 5
            say(event="ended", result=result)
        return 0
    db, ledger, steps, step_seconds = args[0], args[1], args[-2], args[-1]
    flows = build(
        db,
        ledger,
        steps=int(steps),
        step_seconds=float(step_seconds),
        lease_seconds=lease,
        max_recoveries=max_recoveries,
    )
    async with flows.wf:
        if command == "start":
            say(event="started")
            results = await asyncio.gather(
                *(flows.job(n) for n in range(int(args[2]))), return_exceptions=True
            )
            say(event="ended", results=[repr(r) for r in results])
            return 0
        if command == "recover":
            say(event="recovering")
            ids = await flows.wf.recover()
            runs = {run_id: await flows.wf.get_run(run_id) for run_id in ids}
            say(
                event="recovered",
                ids=ids,
                statuses={k: v.status if v else None for k, v in runs.items()},
            )
            return 0
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
    except RunFailedError as exc:
        say(event="failed", **outcome(exc))
        sys.exit(6)
