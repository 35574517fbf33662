"""Human in the loop: an agent proposes a refund, a manager approves it days later.

    python examples/agent_approval.py

A workflow runs a triage agent (structured output: a ``RefundDecision``), then waits
durably for a manager's approval signal, then issues the refund with a durable tool. The
process stops while it waits; the approval arrives while nothing runs; a new process
resumes the workflow: the agent's model call replays from the store (no second LLM call),
the signal is there, the refund is issued once.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow, WorkflowFunction
from durable.pydantic_ai import DurableAgent, durable_pipeline, durable_tool


class RefundDecision(BaseModel):
    refund: bool
    amount: float
    reason: str


def triage_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    print("  ran       triage model (an LLM call)")
    decision = {"refund": True, "amount": 19.5, "reason": "item arrived broken"}
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, decision, "decide")])


def build(db: Path) -> tuple[Workflow, WorkflowFunction[[str, str], str]]:
    wf = Workflow("refunds", db=db)
    triage = DurableAgent(
        Agent(FunctionModel(triage_model), name="triage", output_type=RefundDecision), wf
    )

    @durable_tool(wf)
    async def issue_refund(order_id: str, amount: float) -> str:
        print(f"  ran       issue_refund({order_id!r}, {amount})")
        return f"refund of {amount} EUR on order {order_id}"

    @durable_pipeline(wf, id="refund-{order_id}")
    async def refund_flow(order_id: str, complaint: str) -> str:
        decision = (await triage.run(complaint)).output  # its steps belong to this run
        print(f"  decision  {decision!r}")
        if not decision.refund:
            return "no refund"
        print("  waiting   for the manager's approval ...")
        approval = await triage.signal("manager-approval", poll=0.1)
        if not approval["approved"]:
            return "refund declined by the manager"
        return await issue_refund(order_id, decision.amount)

    return wf, refund_flow


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "refunds.db"

        print("process 1: triage, then wait for approval; the process stops while waiting")
        wf, refund_flow = build(db)
        async with wf:
            waiting = asyncio.create_task(refund_flow("1001", "My mug arrived broken."))
            await asyncio.sleep(0.5)
            waiting.cancel()  # the process goes away; the run's checkpoints stay
            await asyncio.gather(waiting, return_exceptions=True)

        print("\nthe manager approves (from a web handler, a CLI ...) while nothing runs")
        wf, _ = build(db)
        async with wf:
            await wf.complete("refund-1001", "manager-approval", {"approved": True})

        print("\nprocess 2: the same call resumes the run")
        wf, refund_flow = build(db)
        async with wf:
            result = await refund_flow("1001", "My mug arrived broken.")
            print(f"  result    {result}")
            print("\nprocess 2, again: the run completed, its recorded result comes back")
            print(f"  result    {await refund_flow('1001', 'My mug arrived broken.')}")


if __name__ == "__main__":
    asyncio.run(main())
