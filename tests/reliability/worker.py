"""Processes the reliability tests start (and kill): ``python worker.py <command> ...``.

crash   URL LEDGER GEN SEED RUNS STEPS MODE ARM_AFTER
        One generation of the crash harness (see harness.py): call the ``RUNS`` runs of
        ``job`` (MODE ``call``), or first ``wf.recover()`` the orphans
        (``recover-first``), or both at once (``recover-with``); deliver the signals the
        runs wait for; print READY once the store is open and a JSON line of results at
        the end. Step bodies append JSON lines to LEDGER (one ``os.write`` + fsync before
        they return). ``DURABLE_FAULTS`` in the environment arms fault points; a
        non-empty ARM_AFTER arms ``after-commit`` that many seconds after READY.
contend URL PROC WORKFLOWS STEPS T0
        Run WORKFLOWS workflows of STEPS steps at once from T0 (epoch), print a summary.
race    URL PROC RUNS T0 TICK
        Deliver signal ``go`` to runs race-0 ... (one every TICK seconds from T0) at once
        with another process; print which deliveries returned True, and when each began.
backoff URL LEDGER RETRIES
        One run whose step fails with ConnectionError every time; the wait after
        attempt 1 is 10 ms, after attempt 2 a minute (the test kills the process then).
        Every attempt is logged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

from durable import StoreError, Workflow
from durable.backoff import constant


def say(text: str) -> None:
    print(text, flush=True)


class Ledger:
    """Appends JSON lines: one ``write`` syscall each (a kill cannot tear it), fsynced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, **entry: Any) -> None:
        os.write(self.fd, (json.dumps(entry) + "\n").encode())
        os.fsync(self.fd)


def arm_after_commit() -> None:
    """Arm the ``after-commit`` point now: the process dies right after its next commit."""
    import durable.faults

    durable.faults._armed = frozenset({"after-commit"})  # read at every fault point


async def crash(
    url: str,
    ledger_path: str,
    gen_text: str,
    seed_text: str,
    runs_text: str,
    steps_text: str,
    mode: str,
    arm_after: str,
) -> None:
    import random

    gen, runs, steps = int(gen_text), int(runs_text), int(steps_text)
    rng = random.Random(int(seed_text))
    fails: Counter[tuple[str, str]] = Counter(
        (e["run"], e["step"]) for e in harness.read_ledger(Path(ledger_path)) if e["e"] == "fail"
    )
    ledger = Ledger(ledger_path)
    seq = itertools.count()
    wf = Workflow(
        "rel",
        db=url,
        default_retries=0,
        default_backoff=constant(0),
        lease_seconds=5,
        max_recoveries=10**6,  # killed again and again on purpose: never dead-letter
    )

    async def body(rid: str, sid: str, value: int) -> dict[str, Any]:
        await asyncio.sleep(harness.STEP_PAUSE)
        token = f"{gen}.{next(seq)}"
        ledger.write(e="ok", run=rid, step=sid, x=token, g=gen, t=time.time())
        return {"v": value, "x": token}

    @wf.task
    async def fetch(n: int) -> dict[str, Any]:
        return await body(harness.run_id(n), "fetch", harness.fetch_value(n))

    @wf.task
    async def work(n: int, k: int) -> dict[str, Any]:
        return await body(harness.run_id(n), f"w{k}", harness.work_value(n, k))

    @wf.task(retries=harness.FLAKY_RETRIES, backoff=constant(0.02), retry_on=(ConnectionError,))
    async def flaky(n: int) -> dict[str, Any]:
        rid = harness.run_id(n)
        if fails[rid, "flaky"] < harness.FLAKY_FAILS:
            await asyncio.sleep(harness.STEP_PAUSE)
            fails[rid, "flaky"] += 1
            ledger.write(e="fail", run=rid, step="flaky", g=gen, t=time.time())
            raise ConnectionError(f"flaky failure {fails[rid, 'flaky']} of {rid}")
        return await body(rid, "flaky", harness.flaky_value(n))

    @wf.task
    async def total(n: int, parts: list[int]) -> dict[str, Any]:
        return await body(harness.run_id(n), "total", harness.total_value(parts))

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> dict[str, Any]:
        rid = harness.run_id(n)
        ledger.write(e="enter", run=rid, g=gen)

        def ack(sid: str, out: dict[str, Any]) -> int:
            ledger.write(e="ack", run=rid, step=sid, x=out["x"], g=gen)
            return int(out["v"])

        parts = [ack("fetch", await fetch(n))]
        for k in range(steps):
            parts.append(ack(f"w{k}", await work(n, k, step_id=f"w{k}")))
        if harness.has_flaky(n):
            parts.append(ack("flaky", await flaky(n)))
        if harness.has_sleep(n):
            await wf.sleep(harness.SLEEP_SECONDS)
        if harness.has_signal(n):
            payload = await wf.signal("go", poll=0.05)
            parts.append(payload["n"] * 7)
        result = ack("total", await total(n, parts, step_id="total"))
        return {"n": n, "parts": parts, "total": result}

    async def deliver(n: int) -> None:
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        rid = harness.run_id(n)
        if await wf.complete(rid, "go", harness.signal_payload(n)):
            ledger.write(e="signal", run=rid, g=gen)

    async with wf:
        say(f"READY {os.getpid()}")
        if arm_after:
            asyncio.get_running_loop().call_later(float(arm_after), arm_after_commit)
        deliveries = [
            asyncio.ensure_future(deliver(n)) for n in range(runs) if harness.has_signal(n)
        ]
        if mode == "recover-first":
            await wf.recover()
        calls: list[Any] = [job(n) for n in range(runs)]
        if mode == "recover-with":
            calls.append(wf.recover())
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for delivery in deliveries:
            delivery.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    results = {
        harness.run_id(n): repr(out) if isinstance(out, BaseException) else out
        for n, out in enumerate(outcomes[:runs])
    }
    say(json.dumps({"results": results, "errors": errors}))
    if errors:
        sys.exit(3)


async def contend(url: str, proc: str, workflows: str, steps: str, t0: str) -> None:
    """Many workflows of one process on a file that other processes write too."""
    logging.getLogger("durable").setLevel(logging.CRITICAL)  # failures are counted below
    wf = Workflow("contend", db=url, default_retries=0, default_backoff=constant(0))

    @wf.task
    async def step(p: int, n: int, i: int) -> int:
        await asyncio.sleep(0)
        return p * 1_000_000 + n * 100 + i

    @wf.workflow(id="p{p}-w{n}")
    async def flow(p: int, n: int) -> int:
        return sum([await step(p, n, i, step_id=f"s{i}") for i in range(int(steps))])

    # With a tiny busy_timeout even opening the file can find it locked (another process
    # opens it too): that is an error like the others, counted, and tried again.
    setup_errors: Counter[str] = Counter()
    for _ in range(100):
        try:
            await wf.store.setup()
            break
        except StoreError as exc:
            setup_errors[f"{type(exc).__name__}: {exc}"] += 1
            await asyncio.sleep(0.01)
    async with wf:
        delay = float(t0) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.time()
        outcomes = await asyncio.gather(
            *(flow(int(proc), n) for n in range(int(workflows))), return_exceptions=True
        )
        ended = time.time()
    errors = Counter(f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException))
    failed = sum(errors.values())
    summary = {"completed": len(outcomes) - failed, "failed": failed, "errors": dict(errors)}
    summary |= {"setup_errors": dict(setup_errors), "began": began, "ended": ended}
    say(json.dumps(summary))


async def race(url: str, proc: str, runs: str, t0: str, tick: str) -> None:
    """Deliver ``go`` to every race run, in step with another process doing the same."""
    wf = Workflow("race", db=url)
    won: list[int] = []
    starts: list[float] = []
    async with wf:
        for n in range(int(runs)):
            # Both processes start delivery n at the same moment, t0 + n ticks.
            if (wait := float(t0) + n * float(tick) - time.time()) > 0:
                await asyncio.sleep(wait)
            starts.append(time.time())
            if await wf.complete(f"race-{n}", "go", {"from": int(proc), "n": n}):
                won.append(n)
    say(json.dumps({"won": won, "starts": starts}))


async def backoff(url: str, ledger_path: str, retries: str) -> None:
    """A step that always fails, with a long backoff: killed while it waits."""
    ledger = Ledger(ledger_path)
    wf = Workflow("backoff", db=url, default_retries=0, lease_seconds=30)

    # A short wait after attempt 1, then a long one: the test kills it in that one.
    @wf.task(retries=int(retries), backoff=lambda i: 0.01 if i == 0 else 60.0,
             retry_on=(ConnectionError,))  # fmt: skip
    async def call_service() -> str:
        ledger.write(e="attempt", pid=os.getpid(), t=time.time())
        raise ConnectionError("the service is down")

    @wf.workflow(id="backoff-run")
    async def flow() -> str:
        return await call_service()

    async with wf:
        say("READY")
        await flow()


def main() -> None:
    command, *args = sys.argv[1:]
    asyncio.run(globals()[command](*args))


if __name__ == "__main__":
    main()
