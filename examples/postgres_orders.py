"""An order workflow on PostgreSQL: checkpoints, an approval from elsewhere, a take-over.

    python examples/postgres_orders.py   # a PostgreSQL 13+ server, any database

``DATABASE_URL`` picks the server (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
the store keeps its tables in the schema ``orders_example``, made on first use. The
approval comes through a second ``Workflow`` object, as a web handler on another
machine would send it, and wakes the waiting run through ``LISTEN/NOTIFY``. Then a
second process takes an order and dies half-way; ``recover()`` takes its run over
(as a worker on any machine would, once the lease runs out by the database's clock)
and finishes it from its last checkpoint: the stock reserved there is not reserved again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass

from durable import StoreError, Workflow

URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = f"{URL}{'&' if '?' in URL else '?'}schema=orders_example"

# A short lease, so that a take-over comes within a second (the default is 30 s).
wf = Workflow("shop", db=DB, lease_seconds=1.0)
DIE_HERE = sys.argv[1:2] == ["--die-after-reserving"]


@dataclass
class Receipt:
    order_id: str
    amount: float
    charge_id: str


@wf.task
async def reserve_stock(order_id: str) -> list[str]:
    print(f"  ran       reserve_stock({order_id})")
    return ["book", "lamp"]


@wf.task
async def charge_card(order_id: str, amount: float) -> Receipt:
    if DIE_HERE:
        os._exit(3)  # no clean-up at all: the run keeps its owner and lease
    print(f"  ran       charge_card({order_id}, {amount})")
    return Receipt(order_id, amount, f"ch_{order_id}")


@wf.task
async def ship(order_id: str, items: list[str]) -> str:
    print(f"  ran       ship({order_id}, {items})")
    return f"TRACK-{order_id}"


@wf.workflow(id="order-{order_id}")
async def process_order(order_id: str, amount: float, approve: bool = True) -> dict[str, object]:
    items = await reserve_stock(order_id)
    receipt = await charge_card(order_id, amount)
    if approve:
        print("  waiting   for the 'approval' signal")
        decision = await wf.signal("approval", poll=5.0)
        if not decision["approved"]:
            return {"order": order_id, "status": "rejected"}
    return {"order": order_id, "charge": receipt.charge_id, "tracking": await ship(order_id, items)}


async def approve_later(run_id: str) -> None:
    """What a web handler on another machine would do."""
    await asyncio.sleep(0.3)
    async with Workflow("shop", db=DB) as elsewhere:
        delivered = await elsewhere.complete(run_id, "approval", {"approved": True})
        print(f"  signal    approval delivered from another Workflow: {delivered}")


async def crashed_process(order_id: str) -> None:
    """Another process takes an order and dies (``os._exit``, as a kill would end it)
    after the stock is reserved: its run stays ``running`` under a lease of its own."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--die-after-reserving", order_id,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    for line in out.decode().splitlines():
        print(f"  (process B) {line.strip()}")
    print(f"  (process B) exited with code {child.returncode}, its run left running")


async def main() -> int:
    print(f"connecting to {wf.store!r}")
    try:
        await wf.store.setup()  # connect now, to say clearly when PostgreSQL is not there
    except StoreError as exc:
        print(f"PostgreSQL is not reachable: {exc}", file=sys.stderr)
        print("Start one, or set DATABASE_URL=postgresql://user@host:5432/db", file=sys.stderr)
        return 1
    try:
        order_id = str(int(time.time() * 1000))  # a fresh order on every run of the example
        run_id = process_order.run_id_for(order_id, 42.5)
        print(f"run 1: process_order({order_id!r}) executes")
        approval = asyncio.create_task(approve_later(run_id))
        result = await process_order(order_id, 42.5)
        await approval
        print(f"  result    {result}")
        print("run 2: the same call again returns the recorded result, nothing runs")
        again = await process_order(order_id, 42.5)
        print(f"  result    {again}")
        assert again == result
        record = await wf.get_run(run_id)
        assert record is not None
        print(f"record: status={record.status} workflow={record.workflow} inputs={record.inputs}")

        print("run 3: another process died inside a run; recover() takes it over")
        orphan = f"{order_id}-b"
        await crashed_process(orphan)
        await asyncio.sleep(1.2)  # its lease runs out (judged by the database's clock)
        recovered = await wf.recover()
        print(f"  recovered {recovered}")
        taken = await wf.get_run(process_order.run_id_for(orphan, 10.0, False))
        assert taken is not None
        print(f"  result    {taken.result}")
        print(f"record: status={taken.status} recoveries={taken.recoveries}")
    finally:
        await wf.close()
    return 0


async def die_after_reserving(order_id: str) -> None:
    await process_order(order_id, 10.0, False)


if __name__ == "__main__":
    if DIE_HERE:
        asyncio.run(die_after_reserving(sys.argv[2]))
    sys.exit(asyncio.run(main()))
