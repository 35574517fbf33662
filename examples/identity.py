"""The README's Identity section, run: conflicts are loud, branches replay in order.

    python examples/identity.py

Runs on an in-memory store, offline, in well under a second. Each block prints what
happened; the test suite (tests/core/test_identity_example.py) checks the output.
"""

from __future__ import annotations

import asyncio
import random

from durable import InputsConflictError, RunConflictError, StepIdConflictError, Workflow

wf = Workflow("shop", db="memory://")
CARRIERS = ("dhl", "ups", "fedex")
executed: list[str] = []


@wf.task
async def fetch_rate(carrier: str) -> float:
    await asyncio.sleep(random.random() / 100)  # carriers answer in any order
    executed.append(f"fetch_rate({carrier})")
    return {"dhl": 10.0, "ups": 12.0, "fedex": 11.0}[carrier]


@wf.task
async def apply_discount(rate: float) -> float:
    return round(rate * 0.9, 2)


@wf.task
async def charge(amount: float) -> str:
    return f"charged {amount}"


@wf.task
async def print_label(parcel: str) -> str:
    await asyncio.sleep(random.random() / 100)
    return f"label:{parcel}"


@wf.workflow(id="quotes-{order_id}")
async def quotes(order_id: str) -> list[float]:
    async def quote(carrier: str) -> float:
        rate = await fetch_rate(carrier)  # a step in this branch's scope
        return await apply_discount(rate)

    return list(await asyncio.gather(*(quote(c) for c in CARRIERS)))


@wf.workflow(id="ship-{order_id}")
async def ship(order_id: str, parcels: list[str]) -> list[str]:
    charged = await wf.gather(charge(1.5), charge(2.5))  # results in argument order
    labels = await wf.map(print_label, parcels, max_concurrency=8)  # in item order
    return charged + labels


@wf.workflow(id="ship-{order_id}", name="refund")
async def refund(order_id: str, parcels: list[str]) -> str:
    return "refunded"


@wf.workflow(id="twice")
async def twice() -> list[str]:
    return [await charge(1.0, step_id="pay"), await charge(2.0, step_id="pay")]


async def main() -> None:
    print("quotes:", await quotes("A1"))
    run = await wf.get_run("quotes-A1")
    assert run is not None
    print("steps: ", ", ".join(sorted(step.step_id for step in run.steps)))
    executed.clear()
    print("again: ", await quotes("A1"), f"(executed {len(executed)} steps)")

    print("ship:  ", await ship("A1", ["p1", "p2", "p3"]))
    try:
        await refund("A1", ["p1", "p2", "p3"])
    except RunConflictError as exc:
        print("refund:", type(exc).__name__)
    try:
        await ship("A1", ["p9"])
    except InputsConflictError as exc:
        print("ship p9:", type(exc).__name__, "-", str(exc).split("(")[1].split(")")[0])
    try:
        await twice()
    except StepIdConflictError as exc:
        print("twice: ", type(exc).__name__)


if __name__ == "__main__":
    asyncio.run(main())
