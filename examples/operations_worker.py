"""Recovery: a worker finishes the runs of a process that died, without being asked.

    python examples/operations_worker.py

Run 1 happens in a child process that starts three invoice runs and is killed with
SIGKILL in the middle of them. Nobody calls those workflows again. Run 2 is a
service process with ``async with wf.worker(poll=...)``: it finds the orphaned runs
(their owner is a dead process), rebuilds their arguments from the inputs each run
stored, and finishes them; checkpointed steps replay, the rest run. While the worker
is up, another process dies mid-run, and the worker picks that run up too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from durable import Workflow, WorkflowFunction
from durable.backoff import constant

STEP_SECONDS = 0.15


@dataclass
class Customer:
    name: str
    email: str


def define(db: Path, crash_after: int | None) -> tuple[Workflow, WorkflowFunction[..., str]]:
    wf = Workflow("billing", db=db, default_backoff=constant(0.1))
    steps_run = 0

    def executing(what: str) -> None:
        nonlocal steps_run
        print(f"  ran       {what}", flush=True)
        steps_run += 1
        if steps_run == crash_after:
            print(f"  ** process killed (SIGKILL) in the middle of {what} **", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    @wf.task
    async def render(invoice_id: int, customer: Customer) -> str:
        await asyncio.sleep(STEP_SECONDS)
        executing(f"render({invoice_id})")
        return f"invoice-{invoice_id}.pdf"

    @wf.task
    async def charge(invoice_id: int, amount: float) -> str:
        await asyncio.sleep(STEP_SECONDS)
        executing(f"charge({invoice_id}, {amount})")
        return f"ch_{invoice_id}"

    @wf.task
    async def email(customer: Customer, pdf: str) -> str:
        await asyncio.sleep(STEP_SECONDS)
        executing(f"email({customer.email})")
        return f"sent {pdf} to {customer.email}"

    @wf.workflow(id="invoice-{invoice_id}")
    async def invoice(invoice_id: int, customer: Customer, amount: float) -> str:
        pdf = await render(invoice_id, customer)
        await charge(invoice_id, amount)
        return await email(customer, pdf)

    return wf, invoice


CUSTOMERS = [Customer("Ann", "ann@example.com"), Customer("Bo", "bo@example.com")]


async def start_invoices(db: Path, first: int, count: int, crash_after: int) -> None:
    """A process that starts invoices and dies in the middle of them."""
    wf, invoice = define(db, crash_after)
    async with wf:
        await asyncio.gather(
            *(invoice(n, CUSTOMERS[n % 2], 10.0 * n) for n in range(first, first + count))
        )


async def serve(db: Path) -> None:
    """A long-lived service process with a recovery worker."""
    wf, _ = define(db, crash_after=None)
    async with wf, wf.worker(poll=0.2):
        print("  worker    started: it recovers orphans now and every 0.2 s", flush=True)
        await until_all_completed(wf, 3)
        print("\nrun 3: while the worker is up, another process dies mid-run")
        dying = await asyncio.create_subprocess_exec(*child_command(db, "start", 4, 1, 2))
        code = await dying.wait()  # the worker keeps polling meanwhile
        print(f"  (that process died with exit code {code})", flush=True)
        await until_all_completed(wf, 4)
        print("  worker    every run is completed; leaving the worker block\n")
        for run in sorted(await wf.list_runs(), key=lambda run: run.run_id):
            taken = f"{run.recoveries} takeover" + ("s" if run.recoveries != 1 else "")
            print(f"  {run.run_id:<10} {run.status:<10} {taken:<12} {run.result!r}")


async def until_all_completed(wf: Workflow, count: int) -> None:
    while True:
        runs = await wf.list_runs(status="completed")
        if len(runs) >= count:
            return
        await asyncio.sleep(0.05)


def child_command(db: Path, *args: object) -> list[str]:
    return [sys.executable, __file__, "--child", str(db), *map(str, args)]


def child(db: Path, *args: object) -> int:
    return subprocess.run(child_command(db, *args), check=False).returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "billing.db"
        print(f"checkpoints go to {db}\n")
        print("run 1: a process starts invoices 1, 2 and 3, and dies after 4 steps")
        code = child(db, "start", 1, 3, 4)
        print(f"  (the process died with exit code {code})\n")
        print("run 2: a service process starts a worker; nobody calls the invoices again")
        code = child(db, "serve")
        if code != 0:
            sys.exit(code)
        print("\nEach run was finished from the inputs it stored. Checkpointed steps were")
        print("not run again; a step killed before its checkpoint committed ran again.")


if __name__ == "__main__":
    logging.getLogger("durable").setLevel(logging.ERROR)
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        db = Path(sys.argv[2])
        if sys.argv[3] == "serve":
            asyncio.run(serve(db))
        else:
            first, count, crash_after = map(int, sys.argv[4:7])
            asyncio.run(start_invoices(db, first, count, crash_after))
    else:
        main()
