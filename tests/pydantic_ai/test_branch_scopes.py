"""Runs of one agent in branches of one workflow run keep their steps across a resume.

Each agent run's scope (``support``, ``$1/support`` ...) is taken where the run is called,
in the program order of the calling task (as ``@wf.task`` step ids are), not when the
agent loop first reaches a step: a branch that is slow on the first execution and fast
on the resume must not get the other branch's recorded answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import NonDeterminismError, Workflow, WorkflowFunction
from durable.backoff import constant
from durable_pydantic_ai import DurableAgent, WorkflowDurability


def echo(calls: list[str]) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = next(
            part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, UserPromptPart)
        )
        calls.append(str(prompt))
        return ModelResponse(parts=[TextPart(f"answer to {prompt}")])

    return FunctionModel(respond)


@dataclass
class Execution:
    """One process's view of the workflow: its own Workflow on the shared SQLite file."""

    wf: Workflow
    flow: WorkflowFunction[[], list[str]]
    model_calls: list[str]


def build(db: Path, execution: int, run_agent: Callable[..., Any] | None = None) -> Execution:
    wf = Workflow("branches", db=f"sqlite:///{db}", default_backoff=constant(0))
    calls: list[str] = []
    durable_agent = DurableAgent(Agent(echo(calls), name="support"), wf)
    plain_agent = Agent(echo(calls), name="support", capabilities=[WorkflowDurability()])

    async def run(prompt: str) -> str:
        if run_agent is None:
            return (await durable_agent.run(prompt)).output
        return str(await run_agent(plain_agent, prompt))

    @wf.task
    async def look_up(topic: str) -> str:
        if execution == 1:
            await asyncio.sleep(0.3)  # slow the first time only
        return topic

    @wf.task
    async def publish(answers: list[str]) -> list[str]:
        if execution == 1:
            raise ConnectionError("the publisher went away")  # the first execution fails here
        return answers

    @wf.workflow(id="two-branches")
    async def flow() -> list[str]:
        async def branch(topic: str) -> str:
            if topic == "alpha":
                topic = await look_up(topic)
            return await run(topic)

        answers = await asyncio.gather(branch("alpha"), branch("beta"))
        return await publish(list(answers))

    return Execution(wf, flow, calls)


async def plain_run(agent: Agent[Any, str], prompt: str) -> str:
    return (await agent.run(prompt)).output


@pytest.mark.parametrize("run_agent", [None, plain_run], ids=["DurableAgent", "capability"])
async def test_two_runs_of_one_agent_in_gather_branches_keep_their_answers_on_resume(
    tmp_path: Path, run_agent: Callable[..., Any] | None
) -> None:
    db = tmp_path / "branches.db"
    first = build(db, 1, run_agent)
    with pytest.raises(ConnectionError):
        await first.flow()
    # beta reached the agent first: alpha was still looking up.
    assert first.model_calls == ["beta", "alpha"]
    await first.wf.close()

    second = build(db, 2, run_agent)
    try:
        answers = await second.flow()
    finally:
        await second.wf.close()
    assert answers == ["answer to alpha", "answer to beta"]
    assert second.model_calls == []  # both answers replayed from the first execution


async def test_where_pydantic_ai_does_not_say_where_a_run_was_called_two_at_once_are_refused(
    wf: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pydantic-ai that calls neither the get_default_run_id nor the
    # get_default_conversation_id hook (2.36 does not have them).
    monkeypatch.setattr(WorkflowDurability, "get_default_run_id", lambda self: None)
    monkeypatch.setattr(WorkflowDurability, "get_default_conversation_id", lambda self, rid: None)
    in_model = asyncio.Event()

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1 and "slow" in str(messages[0]):
            in_model.set()
            await asyncio.sleep(0.2)
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(respond), name="support", capabilities=[WorkflowDurability()])

    @wf.workflow(id="unordered")
    async def flow() -> list[str]:
        # One after another is fine: the run-wide numbering is program order then.
        await agent.run("before")
        await agent.run("after")

        async def second() -> str:
            await in_model.wait()
            return (await agent.run("fast")).output

        async def first() -> str:
            return (await agent.run("slow")).output

        return list(await asyncio.gather(first(), second()))

    with pytest.raises(NonDeterminismError, match=r"'support'.*in progress.*DurableAgent"):
        await flow()
    steps = await wf.store.load_steps("unordered")
    assert steps is not None
    assert {"support.model_request", "support#1.model_request"} <= set(steps)
