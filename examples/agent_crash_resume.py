"""A support agent whose process is killed mid-loop, then resumed: no model call is repeated.

    python examples/agent_crash_resume.py

The agent (a pydantic-ai Agent on an offline FunctionModel standing in for an LLM) answers
in 4 model turns, calling a tool after each of the first three. Run 1 happens in a child
process that is killed with SIGKILL while the model serves turn 3. Run 2 calls the same
run id in a fresh process: turns 1-2 and their tool calls replay from the SQLite file, and
only turn 3 onwards reaches the model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.pydantic_ai import DurableAgent

# What the "LLM" does on each turn: call a tool, or answer.
SCRIPT: list[tuple[str, dict[str, str]] | str] = [
    ("lookup_order", {"order_id": "1001"}),
    ("check_stock", {"sku": "mug-blue"}),
    ("reserve_replacement", {"sku": "mug-blue"}),
    "Your blue mug is on its way again: replacement reserved.",
]


def build_agent(crash_in_turn: int | None) -> Agent[None, str]:
    async def llm(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = 1 + sum(1 for m in messages if isinstance(m, ModelResponse))
        print(f"  ran       model turn {turn}", flush=True)
        if turn == crash_in_turn:
            print(f"  ** process killed (SIGKILL) during model turn {turn} **", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        move = SCRIPT[turn - 1]
        if isinstance(move, str):
            return ModelResponse(parts=[TextPart(move)])
        tool, args = move
        return ModelResponse(parts=[ToolCallPart(tool, args, f"call-{turn}")])

    agent = Agent(FunctionModel(llm), name="support")

    @agent.tool_plain
    async def lookup_order(order_id: str) -> str:
        print(f"  ran       tool lookup_order({order_id!r})", flush=True)
        return "order 1001: one blue mug, arrived broken"

    @agent.tool_plain
    async def check_stock(sku: str) -> int:
        print(f"  ran       tool check_stock({sku!r})", flush=True)
        return 12

    @agent.tool_plain
    async def reserve_replacement(sku: str) -> str:
        print(f"  ran       tool reserve_replacement({sku!r})", flush=True)
        return "reserved R-77"

    return agent


class ShowReplays(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("replayed step "):
            print(f"  replayed  {record.args[0]}", flush=True)  # type: ignore[index]


async def run_in_this_process(db: Path, crash_in_turn: int | None) -> None:
    wf = Workflow("support", db=db)
    agent = DurableAgent(build_agent(crash_in_turn), wf)
    async with wf:
        result = await agent.run("My mug arrived broken (order 1001).", run_id="ticket-42")
    print(f"  result    {result.output}")
    print(f"  usage     {result.usage.requests} model requests in all (replayed ones included)")


def child(db: Path, crash_in_turn: int | None) -> None:
    logger = logging.getLogger("durable")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(ShowReplays())
    asyncio.run(run_in_this_process(db, crash_in_turn))


def run_child(db: Path, crash_in_turn: int | None) -> int:
    args = [sys.executable, __file__, "--child", str(db)]
    args += [str(crash_in_turn)] if crash_in_turn else []
    return subprocess.run(args, check=False).returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "support.db"
        print("run 1: the agent answers ticket-42, and its process is killed in model turn 3")
        code = run_child(db, crash_in_turn=3)
        print(f"  (the process died with exit code {code})\n")
        print("run 2: the same run id in a new process resumes the agent loop")
        code = run_child(db, crash_in_turn=None)
        if code != 0:
            sys.exit(code)
        print("\nTurns 1-2 and their tool calls replayed from the store (no model call);")
        print("turn 3, whose checkpoint never committed, reached the model again.")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        main()
