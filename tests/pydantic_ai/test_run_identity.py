"""A DurableAgent run id stands for one call: its prompt, history, deps and answer-changing options.

The same run id called with other inputs raises ``InputsConflictError`` before anything
runs (no model call, no tool call); the same call again replays the recorded answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext, StructuredDict, ToolOutput
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import UsageLimits

from durable import InputsConflictError, Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig
from durable_pydantic_ai.identity import describe, digest, run_options


class Verdict(BaseModel):
    verdict: str


def prompt_of(messages: list[ModelMessage]) -> str:
    prompts = [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    return str(prompts[-1])


def answering_model(calls: list[str]) -> FunctionModel:
    """Answers in text, or through the output tool when the run asks for structured output."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = prompt_of(messages)
        calls.append(prompt)
        temperature = (info.model_settings or {}).get("temperature")
        if info.output_tools:
            tool = info.output_tools[0]
            return ModelResponse(parts=[ToolCallPart(tool.name, {"verdict": f"ok: {prompt}"})])
        return ModelResponse(parts=[TextPart(f"answer to {prompt} at {temperature}")])

    return FunctionModel(respond)


async def test_a_completed_run_called_with_another_output_type_is_refused(wf: Workflow) -> None:
    calls: list[str] = []
    agent = DurableAgent(Agent(answering_model(calls), name="judge"), wf)
    first = await agent.run("is it fine?", run_id="case-1")
    assert first.output == "answer to is it fine? at None"

    with pytest.raises(InputsConflictError, match=r"'case-1'.*other inputs.*output_type"):
        await agent.run("is it fine?", run_id="case-1", output_type=Verdict)
    assert calls == ["is it fine?"]  # nothing ran

    again = await agent.run("is it fine?", run_id="case-1")  # the same call: replayed
    assert again.output == first.output
    assert calls == ["is it fine?"]


async def test_a_completed_run_called_with_other_model_settings_is_refused(wf: Workflow) -> None:
    calls: list[str] = []
    agent = DurableAgent(Agent(answering_model(calls), name="judge"), wf)
    settings = ModelSettings(temperature=0.1)
    first = await agent.run("go", run_id="case-2", model_settings=settings)
    assert first.output == "answer to go at 0.1"

    with pytest.raises(InputsConflictError, match=r"'case-2'.*model_settings"):
        await agent.run("go", run_id="case-2", model_settings=ModelSettings(temperature=0.9))
    with pytest.raises(InputsConflictError, match=r"model_settings"):
        await agent.run("go", run_id="case-2")  # none given: other settings too

    # An equal settings object built anew is the same call.
    again = await agent.run("go", run_id="case-2", model_settings={"temperature": 0.1})
    assert again.output == first.output
    assert calls == ["go"]


async def test_the_same_structured_call_replays_its_answer(wf: Workflow) -> None:
    calls: list[str] = []
    agent = DurableAgent(Agent(answering_model(calls), name="judge"), wf)
    first = await agent.run("fine?", run_id="case-3", output_type=ToolOutput(Verdict, name="v"))
    assert first.output == Verdict(verdict="ok: fine?")
    again = await agent.run("fine?", run_id="case-3", output_type=ToolOutput(Verdict, name="v"))
    assert again.output == first.output
    assert calls == ["fine?"]
    with pytest.raises(InputsConflictError, match="output_type"):
        await agent.run("fine?", run_id="case-3", output_type=ToolOutput(Verdict, name="w"))


@dataclass
class Account:
    customer: str
    client: object  # a live object: counts by its type only


async def test_a_failed_run_resumed_with_other_deps_or_prompt_is_refused_before_any_tool(
    wf: Workflow,
) -> None:
    tools: list[str] = []
    fail = [True]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("lookup", {"order": prompt_of(messages)})])
        if fail:
            fail.clear()
            raise ConnectionError("the model went away")
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(respond), name="orders", deps_type=Account)

    @agent.tool
    async def lookup(ctx: RunContext[Account], order: str) -> str:
        tools.append(f"{ctx.deps.customer}:{order}")
        return "shipped"

    durable_agent = DurableAgent(agent, wf, model_task_config=TaskConfig(retries=0))
    with pytest.raises(ConnectionError):
        await durable_agent.run("1001", deps=Account("ann", object()), run_id="order-run")
    assert tools == ["ann:1001"]

    with pytest.raises(InputsConflictError, match=r"'order-run'.*deps"):
        await durable_agent.run("1001", deps=Account("bob", object()), run_id="order-run")
    with pytest.raises(InputsConflictError, match=r"'order-run'.*prompt"):
        await durable_agent.run("1002", deps=Account("ann", object()), run_id="order-run")
    assert tools == ["ann:1001"]  # nothing ran

    # The same call, with a new client object: resumed, the tool call replayed.
    result = await durable_agent.run("1001", deps=Account("ann", object()), run_id="order-run")
    assert result.output == "done"
    assert tools == ["ann:1001"]


async def test_limits_are_not_inputs_and_a_handler_counts_by_being_given(wf: Workflow) -> None:
    calls: list[str] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        calls.append(prompt_of(messages))
        yield "answer to "
        yield prompt_of(messages)

    agent = DurableAgent(Agent(FunctionModel(stream_function=stream), name="streamer"), wf)
    seen: list[str] = []

    def handler_for(label: str) -> Any:
        async def handler(ctx: Any, events: Any) -> None:
            async for _ in events:
                seen.append(label)

        return handler

    await agent.run("go", run_id="case-4", event_stream_handler=handler_for("first"))
    limits = UsageLimits(request_limit=5)
    again = await agent.run(
        "go", run_id="case-4", event_stream_handler=handler_for("again"), usage_limits=limits
    )
    assert again.output == "answer to go"
    assert calls == ["go"]
    assert "again" in seen  # the replayed steps delivered their events to the new handler
    # Without a handler the model requests would not be streamed: other steps.
    with pytest.raises(InputsConflictError, match="event_stream_handler"):
        await agent.run("go", run_id="case-4")


async def test_a_run_recorded_before_options_were_inputs_still_resumes(wf: Workflow) -> None:
    # A run of the previous version: a workflow "judge.run" of inputs (prompt, history).
    old = Workflow("test-app", db=wf.store)

    @old.workflow(name="judge.run")
    async def run_agent(prompt: Any, message_history: list[Any] | None) -> dict[str, Any]:
        raise ConnectionError("the process of the old version failed")

    with pytest.raises(ConnectionError):
        await run_agent.run("legacy", "go", None)

    calls: list[str] = []
    agent = DurableAgent(Agent(answering_model(calls), name="judge"), wf)
    result = await agent.run("go", run_id="legacy", model_settings={"temperature": 0.3})
    assert result.output == "answer to go at 0.3"
    with pytest.raises(InputsConflictError, match=r"inputs that differ: prompt\)"):
        await agent.run("other", run_id="legacy")


# -- the digests: stable descriptions, never addresses -------------------------------------------


def test_equal_options_built_anew_have_one_digest() -> None:
    def options() -> dict[str, str]:
        return run_options(
            Account("ann", object()),
            {
                "output_type": [ToolOutput(Verdict, name="v"), str],
                "model_settings": ModelSettings(temperature=0.2, max_tokens=10),
                "instructions": prompt_of,
                "usage_limits": UsageLimits(request_limit=object()),  # type: ignore[arg-type]  # not an input
            },
        )

    first = options()
    assert first == options()
    assert set(first) == {"deps", "output_type", "model_settings", "instructions"}
    assert digest(ModelSettings(temperature=0.2)) != digest(ModelSettings(temperature=0.3))
    assert digest(Account("ann", object())) != digest(Account("bob", object()))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert digest(StructuredDict(schema, name="A")) == digest(StructuredDict(schema, name="A"))
    assert digest(StructuredDict(schema, name="A")) != digest(StructuredDict(schema, name="B"))
    for value in (Account("ann", object()), lambda: None, FunctionModel(lambda m, i: None)):
        assert " at 0x" not in json.dumps(describe(value))


def test_digests_are_the_same_in_another_process(tmp_path: Path) -> None:
    script = tmp_path / "digests.py"
    script.write_text(
        textwrap.dedent(
            """
            import json
            from dataclasses import dataclass
            from pydantic import BaseModel
            from pydantic_ai import StructuredDict, ToolOutput
            from pydantic_ai.models.test import TestModel
            from durable_pydantic_ai.identity import run_options

            class Verdict(BaseModel):
                verdict: str

            @dataclass
            class Deps:
                customer: str
                client: object

            def instructions() -> str:
                return "be brief"

            schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
            print(json.dumps(run_options(Deps("ann", object()), {
                "output_type": [ToolOutput(Verdict), StructuredDict(schema, name="A")],
                "model_settings": {"temperature": 0.2, "extra_headers": {"x": "y"}},
                "model": TestModel(),
                "instructions": [instructions, "and kind"],
            })))
            """
        )
    )

    def digests() -> Any:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)

    first = digests()
    assert first == digests()
    assert set(first) == {"deps", "output_type", "model_settings", "model", "instructions"}
