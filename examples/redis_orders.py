"""An order workflow on Redis: checkpoints, an approval from elsewhere, a replay.

    redis-server &                 # any Redis 6.2 or newer
    python examples/redis_orders.py

``REDIS_URL`` picks another server (default ``redis://localhost:6379/0``); its keys
go under the prefix ``redis-orders-example`` and expire an hour after the run's last
change. The approval is sent through a second ``Workflow`` object, as a web handler in
another process would, and reaches the waiting run through Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass

from durable import StoreError, Workflow
from durable.backoff import constant

URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
DB = f"{URL}{'&' if '?' in URL else '?'}prefix=redis-orders-example&ttl=3600"

wf = Workflow("shop", db=DB)


@dataclass
class Receipt:
    order_id: str
    amount: float
    charge_id: str


@wf.task
async def reserve_stock(order_id: str) -> list[str]:
    print(f"  ran       reserve_stock({order_id})")
    return ["book", "lamp"]


@wf.task(retries=3, backoff=constant(0.1))
async def charge_card(order_id: str, amount: float) -> Receipt:
    print(f"  ran       charge_card({order_id}, {amount})")
    return Receipt(order_id, amount, f"ch_{order_id}")


@wf.task
async def ship(order_id: str, items: list[str]) -> str:
    print(f"  ran       ship({order_id}, {items})")
    return f"TRACK-{order_id}"


@wf.workflow(id="order-{order_id}")
async def process_order(order_id: str, amount: float) -> dict[str, object]:
    items = await reserve_stock(order_id)
    receipt = await charge_card(order_id, amount)
    print("  waiting   for the 'approval' signal")
    decision = await wf.signal("approval", poll=5.0)
    if not decision["approved"]:
        return {"order": order_id, "status": "rejected"}
    return {"order": order_id, "charge": receipt.charge_id, "tracking": await ship(order_id, items)}


async def approve_later(run_id: str) -> None:
    """What a web handler in another process would do."""
    await asyncio.sleep(0.3)
    async with Workflow("shop", db=DB) as elsewhere:
        delivered = await elsewhere.complete(run_id, "approval", {"approved": True})
        print(f"  signal    approval delivered from another Workflow: {delivered}")


async def main() -> int:
    print(f"connecting to {wf.store!r}")
    try:
        await wf.store.setup()  # connect now, to say clearly when Redis is not there
    except StoreError as exc:
        print(f"Redis is not reachable: {exc}", file=sys.stderr)
        print("Start one (redis-server) or set REDIS_URL=redis://host:6379/0", file=sys.stderr)
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
        record = await wf.get_run(run_id)
        assert record is not None
        assert again == result
        print(f"record: status={record.status} workflow={record.workflow} inputs={record.inputs}")
    finally:
        await wf.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
