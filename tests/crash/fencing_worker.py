"""One owner of a six-step run, as a process a test can pause with SIGSTOP.

Usage: python fencing_worker.py DB ROLE LEDGER PAUSE_AT [body|sleep]

Each step body appends ``ROLE start I`` to LEDGER before it returns ``ROLE-I``. The
owner with role ``a`` prints ``ready`` in the body of step PAUSE_AT and then blocks for
half a second, long enough for the test to SIGSTOP it there (``body``, the default);
or, with ``sleep``, prints ``ready`` in a durable sleep of 0.2 s just before
step PAUSE_AT. The lease is one second,
so another process takes the run over while ``a`` is stopped. At the end the worker
prints its answer as JSON: the result, or the error's type.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from durable import Workflow

STEPS = 6


def main() -> None:
    db, role, ledger, pause_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    where = sys.argv[5] if len(sys.argv) > 5 else "body"
    wf = Workflow("fence", db=db, lease_seconds=1.0, default_retries=0)

    @wf.task
    async def work(i: int) -> str:
        with open(ledger, "a") as out:  # noqa: ASYNC230 - written before the body returns
            out.write(f"{role} start {i}\n")
            out.flush()
            os.fsync(out.fileno())
        if role == "a" and i == pause_at and where == "body":
            print("ready", flush=True)
            time.sleep(0.5)  # the test stops the process in here  # noqa: ASYNC251
        return f"{role}-{i}"

    @wf.workflow(id="fenced-run")
    async def six() -> list[str]:
        done: list[str] = []
        for i in range(STEPS):
            if i == pause_at and where == "sleep":
                if role == "a":
                    print("ready", flush=True)  # the test stops the process in the sleep
                await wf.sleep(0.2)  # shorter than a heartbeat period: it wakes first
            done.append(await work(i, step_id=f"step-{i}"))
        return done

    async def run() -> None:
        async with wf:
            try:
                answer: dict[str, object] = {"result": await six()}
            except Exception as exc:
                answer = {"error": type(exc).__name__, "message": str(exc)}
            print(json.dumps(answer), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
