"""Checked by pyright and mypy in CI (not run by pytest): decorators keep signatures.

Each wrong call carries an ignore comment for the error it must produce; both checkers
report an ignore that is no longer needed, so a decorator that lost its signature
fails the type check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

from durable import Workflow

wf = Workflow("typed", db="memory://")


@dataclass
class Receipt:
    total: float


@wf.task
async def charge(order_id: str, amount: float = 1.0) -> Receipt:
    return Receipt(amount)


@wf.task(retries=2)
async def notify(receipt: Receipt) -> None:
    return None


@wf.workflow(id="order-{order_id}")
async def process(order_id: str) -> Receipt:
    receipt = await charge(order_id, 2.0)
    assert_type(receipt, Receipt)
    assert_type(await charge(order_id, step_id="charge-again"), Receipt)
    await notify(receipt)
    return receipt


async def callers() -> None:
    assert_type(await process("42"), Receipt)
    assert_type(await process.run("explicit", "42"), Receipt)
    assert_type(process.run_id_for(order_id="42"), str)
    await charge(42)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    await process(order_id=42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await process("1", "2")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
