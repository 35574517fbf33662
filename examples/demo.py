"""The demo: an order workflow whose process is killed mid-run, then resumed.

    python examples/demo.py

Run 1 happens in a child process that is killed with SIGKILL while charging the card
(no cleanup, no exception handler: a real crash). Run 2 calls the same workflow with
the same order id in a fresh process: the steps that had completed replay from the
SQLite file, and only the rest executes.
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

from durable import Workflow
from durable.backoff import constant


@dataclass
class Receipt:
    order_id: str
    amount: float
    charge_id: str


async def process_in_this_process(db: Path, crash_in: str | None) -> None:
    wf = Workflow("shop", db=db, default_backoff=constant(0.1))

    def executing(step: str) -> None:
        print(f"  ran       {step}", flush=True)
        if step == crash_in:
            print(f"  ** process killed (SIGKILL) in the middle of {step} **", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    @wf.task
    async def fetch_order(order_id: str) -> dict[str, float]:
        executing("fetch_order")
        return {"amount": 42.5}

    @wf.task
    async def reserve_stock(order_id: str) -> bool:
        executing("reserve_stock")
        return True

    @wf.task(retries=5)
    async def charge_card(order_id: str, amount: float) -> Receipt:
        executing("charge_card")
        return Receipt(order_id, amount, charge_id=f"ch_{order_id}")

    @wf.task
    async def send_receipt(receipt: Receipt) -> None:
        executing("send_receipt")

    @wf.workflow(id="order-{order_id}")
    async def process_order(order_id: str) -> Receipt:
        order = await fetch_order(order_id)
        await reserve_stock(order_id)
        receipt = await charge_card(order_id, order["amount"])
        await send_receipt(receipt)
        return receipt

    async with wf:
        receipt = await process_order(order_id="1001")
        print(f"  result    {receipt}")


class ShowReplays(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("replayed "):
            print(f"  replayed  {record.args[0]}", flush=True)  # type: ignore[index]


def child(db: Path, crash_in: str | None) -> None:
    logger = logging.getLogger("durable")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(ShowReplays())
    asyncio.run(process_in_this_process(db, crash_in))


def run_child(db: Path, crash_in: str | None) -> int:
    args = [sys.executable, __file__, "--child", str(db)] + ([crash_in] if crash_in else [])
    return subprocess.run(args, check=False).returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shop.db"
        print(f"checkpoints go to {db}\n")
        print("run 1: process_order(order_id='1001'), killed while charging the card")
        code = run_child(db, crash_in="charge_card")
        print(f"  (the process died with exit code {code})\n")
        print("run 2: the same call in a new process resumes the run")
        code = run_child(db, crash_in=None)
        if code != 0:
            sys.exit(code)
        print("\nfetch_order and reserve_stock replayed from the store; charge_card, whose")
        print("checkpoint never committed, ran again (keep side effects keyed on the run id).")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        main()
