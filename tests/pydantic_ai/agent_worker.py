"""A 5-turn tool-calling agent run on SQLite, as its own process so a test can SIGKILL it.

Usage: python agent_worker.py DB LEDGER [HANG_AT | recover]

The model answers turns 1-4 with a call of the ``step`` tool and turn 5 in text. Every model
call appends ``model-N`` and every tool call ``tool-N`` to LEDGER (outside the store, fsynced)
before doing anything else, so the ledger shows each time a body ran. HANG_AT (``model-4``,
``tool-3`` ...) makes that call hang, for the test to kill the process there; ``recover``
resumes the interrupted run through ``wf.recover()`` instead of calling ``run()`` again. On
completion the result is printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.pydantic_ai import DurableAgent

TURNS = 5


def main() -> None:
    db, ledger = sys.argv[1], sys.argv[2]
    hang_at = sys.argv[3] if len(sys.argv) > 3 else None

    async def entered(call: str) -> None:
        with open(ledger, "a") as out:  # noqa: ASYNC230 - written before the call goes on
            out.write(f"{call}\n")
            out.flush()
            os.fsync(out.fileno())
        if call == hang_at:
            await asyncio.sleep(120)  # killed here

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = 1 + sum(1 for m in messages if isinstance(m, ModelResponse))
        await entered(f"model-{turn}")
        if turn < TURNS:
            return ModelResponse(parts=[ToolCallPart("step", {"n": turn}, f"call-{turn}")])
        return ModelResponse(parts=[TextPart(f"finished after {turn} turns")])

    agent = Agent(FunctionModel(respond), name="worker")

    @agent.tool_plain
    async def step(n: int) -> str:
        await entered(f"tool-{n}")
        return f"step {n} done"

    wf = Workflow("crash-agent", db=db)
    durable_agent = DurableAgent(agent, wf)

    async def recover() -> None:
        async with wf:
            resumed = await wf.recover()  # the engine restarts the run from its stored inputs
            record = await wf.get_run("agent-run")
            assert record is not None
            print(json.dumps({"resumed": resumed, "result": record.result}), flush=True)

    async def run() -> None:
        if hang_at == "recover":
            return await recover()
        async with wf:
            result = await durable_agent.run("work through five turns", run_id="agent-run")
            print(
                json.dumps(
                    {
                        "output": result.output,
                        "requests": result.usage.requests,
                        "messages": len(result.all_messages()),
                    }
                ),
                flush=True,
            )

    asyncio.run(run())


if __name__ == "__main__":
    main()
