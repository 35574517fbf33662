"""A 40-step workflow on SQLite, run as its own process so a test can SIGKILL it.

Usage: python worker.py DB LEDGER [STEP_SECONDS [STEPS [MAX_RECOVERIES]]]

Every step body appends its step id to LEDGER (outside the store) before it returns,
so the ledger shows each time a body ran; the store shows what was checkpointed.
On completion the result is printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from durable import Workflow

STEPS = 40


def main() -> None:
    db, ledger = sys.argv[1], sys.argv[2]
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else STEPS
    # Killed again and again on purpose: by default never dead-letter this run.
    max_recoveries = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    wf = Workflow("crash", db=db, default_retries=0, max_recoveries=max_recoveries)

    @wf.task
    async def square(i: int) -> dict[str, int]:
        with open(ledger, "a") as out:  # noqa: ASYNC230 - the ledger must be written before returning
            out.write(f"step-{i}\n")
            out.flush()
            os.fsync(out.fileno())
        await asyncio.sleep(pause)
        return {"i": i, "square": i * i}

    @wf.workflow(id="crash-run")
    async def squares() -> int:
        total = 0
        for i in range(steps):
            total += (await square(i, step_id=f"step-{i}"))["square"]
        return total

    async def run() -> None:
        async with wf:
            print(json.dumps({"result": await squares()}), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
