"""Processes the Redis tests start: ``python worker.py <command> <args...>``.

same <url> <ledger> <run_id> <steps> <t0>   run one shared run id; each step body logs
                                            "start|end <pid> <step> <time>" to the ledger
wait <url> <run_id> <poll>                  wait for signal "go"; print WAITING, then
                                            WOKE <epoch time> and RESULT <payload json>

``url`` is a ``db=`` URL (with ``?prefix=``); ``t0`` an epoch time to start at, so that
several processes overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from durable import Workflow
from durable.backoff import constant


def say(*parts: object) -> None:
    print(*parts, flush=True)


def log_line(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:  # one short append per line: lines never interleave
        f.write(line + "\n")


async def same(url: str, ledger: str, run_id: str, steps: str, t0: str) -> None:
    wf = Workflow("same", db=url, default_retries=0, default_backoff=constant(0))

    @wf.task
    async def step(i: int) -> int:
        log_line(ledger, f"start {os.getpid()} {i} {time.time():.6f}")
        await asyncio.sleep(0.05)
        log_line(ledger, f"end {os.getpid()} {i} {time.time():.6f}")
        return i

    @wf.workflow
    async def flow() -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(int(steps))])

    delay = float(t0) - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    say("STARTED")
    try:
        say("RESULT", await flow.run(run_id))
    finally:
        await wf.close()


async def wait(url: str, run_id: str, poll: str) -> None:
    wf = Workflow("signals", db=url, default_retries=0)

    @wf.workflow
    async def approval() -> Any:
        say("WAITING")
        payload = await wf.signal("go", poll=float(poll))
        say("WOKE", f"{time.time():.6f}")
        return payload

    try:
        say("RESULT", json.dumps(await approval.run(run_id)))
    finally:
        await wf.close()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    asyncio.run({"same": same, "wait": wait}[command](*args))
