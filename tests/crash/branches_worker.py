"""A workflow with concurrent branches, run as its own process so a test can SIGKILL it.

Usage: python branches_worker.py DB LEDGER MODE ORDER

MODE is how the branches are made: gather, taskgroup, create_task or wf_map. ORDER
"first" makes branch i wait longer than branch i+1 before its step, "resume" the
reverse, so the branches reach their steps in opposite orders in the two processes.
After the branches the workflow blocks in a step ("hold") on the first run, where the
test kills it; on the resume that step returns at once. Every step body appends a line
to LEDGER before it returns; on completion the result is printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from durable import Workflow

ITEMS = (1, 2, 3, 4)


def note(ledger: str, line: str) -> None:
    with open(ledger, "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def main() -> None:
    db, ledger, mode, order = sys.argv[1:5]
    wf = Workflow("branches", db=db, default_retries=0)
    waits = [0.02 * (len(ITEMS) - i) for i in range(len(ITEMS))]
    if order == "resume":
        waits.reverse()

    @wf.task
    async def price(item: int) -> int:
        note(ledger, f"price {item}")
        return item * 10

    @wf.task
    async def hold() -> None:
        note(ledger, "hold")
        if order == "first":
            await asyncio.sleep(60)  # killed here

    async def branch(item: int) -> int:
        await asyncio.sleep(waits[item - 1])
        return await price(item) + 1

    async def branches() -> list[int]:
        if mode == "gather":
            return list(await asyncio.gather(*(branch(i) for i in ITEMS)))
        if mode == "taskgroup":
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(branch(i)) for i in ITEMS]
            return [t.result() for t in tasks]
        if mode == "create_task":
            tasks = [asyncio.create_task(branch(i)) for i in ITEMS]
            return [await t for t in tasks]
        return await wf.map(branch, ITEMS, max_concurrency=2)

    @wf.workflow(id="branches")
    async def flow() -> list[int]:
        out = await branches()
        await hold()
        return out

    async def run() -> None:
        async with wf:
            print(json.dumps({"result": await flow()}), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
