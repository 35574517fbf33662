"""A Workflow made at import, then two forked children call one run id at once.

Usage: python fork_worker.py DB LEDGER

Each execution of the step body appends ``charge <pid>`` to LEDGER. The children
start 0.3 s apart; the body takes 1 s, so the second asks for the run while the first
holds it. Each child prints its answer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time

from durable import Workflow

DB, LEDGER = sys.argv[1], sys.argv[2]
wf = Workflow("forked", db=DB, lease_seconds=30.0, default_retries=0)


@wf.task
async def charge(card: str) -> str:
    with open(LEDGER, "a") as out:  # noqa: ASYNC230 - written before the body goes on
        out.write(f"charge {os.getpid()}\n")
    await asyncio.sleep(1.0)
    return f"charged {card}"


@wf.workflow(id="order-1")
async def order() -> str:
    return await charge("4242")


def child(delay: float) -> None:
    time.sleep(delay)

    async def go() -> None:
        async with wf:
            print(f"answer {await order()}", flush=True)

    asyncio.run(go())


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    children = [multiprocessing.Process(target=child, args=(delay,)) for delay in (0.0, 0.3)]
    for process in children:
        process.start()
    for process in children:
        process.join()
    sys.exit(max(abs(p.exitcode or 0) for p in children))
