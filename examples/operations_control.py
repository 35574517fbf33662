"""Seeing and steering runs: list, inspect, cancel, resume and prune, in code and
with the ``durable`` command.

    python examples/operations_control.py

A batch import runs one step per file. It is cancelled while it works: the file being
imported finishes and is checkpointed, no further one starts. ``get_run`` shows the
checkpoints; ``resume`` finishes the run from them; the ``durable`` command (run here
as ``python -m durable.cli``) lists and shows the same runs from another process,
and ``delete_runs`` prunes finished runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from durable import RunCancelledError, Workflow

FILES = [f"part-{i}.csv" for i in range(5)]


def durable_cli(*args: str) -> str:
    command = [sys.executable, "-m", "durable.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout


async def main(db: Path) -> None:
    wf = Workflow("imports", db=db, default_retries=0)
    part_2_started = asyncio.Event()

    @wf.task
    async def import_file(name: str) -> int:
        print(f"  ran       import_file({name!r})", flush=True)
        if name == "part-2.csv":
            part_2_started.set()
        await asyncio.sleep(0.1)
        return 100 + 10 * FILES.index(name)  # its row count

    @wf.workflow(id="batch-{day}")
    async def batch(day: str, files: list[str]) -> int:
        rows = 0
        for name in files:
            rows += await import_file(name, step_id=name)
        return rows

    async with wf:
        print("1. start the batch, cancel it while it imports part-2.csv")
        running = asyncio.create_task(batch("2030-01-02", FILES))
        await part_2_started.wait()
        record = await wf.cancel("batch-2030-01-02")
        assert record is not None
        print(f"  cancel    requested (status {record.status}, "
              f"cancel_requested={record.cancel_requested})")  # fmt: skip
        try:
            await running
        except RunCancelledError as exc:
            print(f"  caller    got RunCancelledError: {exc}")

        print("\n2. inspect it")
        run = await wf.get_run("batch-2030-01-02")
        assert run is not None
        print(f"  status    {run.status}")
        print(f"  inputs    {run.inputs}")
        for step in run.steps:
            print(f"  step      {step.step_id:<12} attempt {step.attempt}  value {step.value}")
        print(f"  cancelled {[r.run_id for r in await wf.list_runs(status='cancelled')]}")

        print("\n3. resume it: the checkpointed files replay, the rest are imported")
        rows = await wf.resume("batch-2030-01-02")
        print(f"  result    {rows} rows")

    print("\n4. the durable command, from another process")
    for args in (["runs", "list"], ["runs", "show", "batch-2030-01-02"]):
        print(f"$ durable {' '.join(args)} --db imports.db")
        print(durable_cli(*args, "--db", str(db)).rstrip() + "\n")

    async with wf:
        print("5. prune finished runs (here: everything older than now)")
        deleted = await wf.delete_runs(older_than=dt.timedelta(0))
        print(f"  deleted   {deleted} run(s); left: {len(await wf.list_runs())}")


if __name__ == "__main__":
    logging.getLogger("durable").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imports.db"
        print(f"checkpoints go to {path}\n")
        asyncio.run(main(path))
