"""WorkflowDurability: each model request and each tool call is its own step of the run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, FunctionToolset, ModelRetry, RunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import DynamicToolset

from durable import InMemoryStore, Workflow
from durable.backoff import constant
from durable_pydantic_ai import TaskConfig, WorkflowDurability

ToolLoop = Callable[..., Agent[Any, str]]


def turn_of(messages: list[ModelMessage]) -> int:
    return 1 + sum(1 for m in messages if isinstance(m, ModelResponse))


async def recorded_steps(store: InMemoryStore, run_id: str) -> list[str]:
    steps = await store.load_steps(run_id)
    assert steps is not None
    return sorted(steps)


async def test_every_model_request_and_tool_call_is_a_step(
    wf: Workflow, store: InMemoryStore, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    agent = tool_loop(3, capabilities=[WorkflowDurability()])

    @wf.workflow(id="loop-{n}")
    async def loop(n: int) -> str:
        return (await agent.run("go")).output

    assert await loop(1) == "finished after 3 turns"
    assert ledger == [1, 2, 3]
    assert await recorded_steps(store, "loop-1") == [
        "looper.model_request",
        "looper.model_request#1",
        "looper.model_request#2",
        "looper.tool_call:step@call-1",
        "looper.tool_call:step@call-2",
    ]


async def test_a_failed_run_resumes_with_the_recorded_turns_replayed(
    wf: Workflow, tool_loop: ToolLoop, ledger: list[int], tools_ran: list[int]
) -> None:
    # Tool call 3 fails (its retries disabled): the run fails after 3 model turns.
    agent = tool_loop(
        5, capabilities=[WorkflowDurability(tool_task_config=TaskConfig(0))], fail_once_at=3
    )

    @wf.workflow(id="resume")
    async def flow() -> tuple[str, int, int]:
        result = await agent.run("go")
        return result.output, result.usage.requests, len(result.all_messages())

    with pytest.raises(ConnectionError):
        await flow()
    assert ledger == [1, 2, 3]
    assert tools_ran == [1, 2]

    ledger.clear()
    tools_ran.clear()
    output, requests, messages = await flow()
    assert ledger == [4, 5]  # turns 1-3 came from the store: no model call for them
    assert tools_ran == [3, 4]  # tool call 3 had not committed, so it runs again
    assert output == "finished after 5 turns"
    assert requests == 5  # usage counts replayed and executed requests alike
    assert messages == 10


async def test_outside_a_workflow_the_capability_changes_nothing(
    store: InMemoryStore, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    agent = tool_loop(2, capabilities=[WorkflowDurability()])
    assert (await agent.run("go")).output == "finished after 2 turns"
    assert (await agent.run("go")).output == "finished after 2 turns"
    assert ledger == [1, 2, 1, 2]
    assert await store.list_runs() == []


async def test_tool_steps_are_keyed_by_call_id_so_parallel_calls_replay_right(
    wf: Workflow, store: InMemoryStore
) -> None:
    model_calls: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        model_calls.append(turn_of(messages))
        if turn_of(messages) == 1:
            return ModelResponse(
                parts=[ToolCallPart("double", {"x": x}, f"c{x}") for x in (3, 1, 2)]
            )
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        return ModelResponse(
            parts=[TextPart(",".join(f"{r.tool_call_id}={r.content}" for r in returns))]
        )

    agent = Agent(FunctionModel(respond), name="par", capabilities=[WorkflowDurability()])
    executed: list[int] = []

    @agent.tool_plain
    async def double(x: int) -> int:
        await asyncio.sleep(0.01 * x)  # finish in another order than started
        executed.append(x)
        return 2 * x

    @wf.workflow(id="parallel")
    async def flow() -> str:
        return (await agent.run("go")).output

    assert await flow() == "c3=6,c1=2,c2=4"
    assert sorted(executed) == [1, 2, 3]
    steps = await recorded_steps(store, "parallel")
    assert [s for s in steps if "tool_call" in s] == [
        "par.tool_call:double@c1",
        "par.tool_call:double@c2",
        "par.tool_call:double@c3",
    ]


class City(BaseModel):
    name: str
    population: int


@dataclass
class Forecast:
    city: str
    celsius: float


@pytest.mark.parametrize(
    ("output_type", "args", "expected"),
    [
        (City, {"name": "Ghent", "population": 265_000}, City(name="Ghent", population=265_000)),
        (Forecast, {"city": "Ghent", "celsius": 11.5}, Forecast("Ghent", 11.5)),
    ],
)
async def test_structured_output_replays_as_its_type(
    wf: Workflow, output_type: type[Any], args: dict[str, Any], expected: Any
) -> None:
    calls: list[int] = []
    fail_first = [True]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(turn_of(messages))
        if turn_of(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("lookup", {"q": "ghent"}, "look-1")])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args, "out-1")])

    agent = Agent(
        FunctionModel(respond),
        name="structured",
        output_type=output_type,
        capabilities=[WorkflowDurability(tool_task_config=TaskConfig(retries=0))],
    )

    @agent.tool_plain
    async def lookup(q: str) -> str:
        return q.title()

    @wf.workflow(id="structured")
    async def flow() -> None:
        result = await agent.run("tell me")
        if fail_first:
            fail_first.clear()
            raise RuntimeError("crash after the agent finished, before the workflow did")
        outputs.append(result.output)
        messages.extend(result.all_messages())

    outputs: list[Any] = []
    messages: list[ModelMessage] = []
    with pytest.raises(RuntimeError):
        await flow()
    await flow()
    assert calls == [1, 2]  # the second execution made no model call at all
    assert outputs == [expected]
    assert type(outputs[0]) is output_type
    # pydantic-ai's own message objects (the last request returns the output tool's call)
    assert [type(m) for m in messages] == [ModelRequest, ModelResponse] * 2 + [ModelRequest]
    assert isinstance(messages[1].parts[0], ToolCallPart)


async def test_a_tool_can_opt_out_of_its_own_step_or_set_its_retries(
    wf: Workflow, store: InMemoryStore
) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn_of(messages) == 1:
            return ModelResponse(
                parts=[ToolCallPart("cheap", {}, "a"), ToolCallPart("flaky", {}, "b")]
            )
        return ModelResponse(parts=[TextPart("ok")])

    toolset = FunctionToolset[Any](id="mine")
    attempts: list[str] = []

    @toolset.tool_plain(metadata={"durable": False})
    async def cheap() -> str:
        return "pure computation, no step"

    @toolset.tool_plain(metadata={"durable": TaskConfig(retries=4, backoff=constant(0))})
    async def flaky() -> str:
        attempts.append("flaky")
        if len(attempts) < 4:
            raise ConnectionError("try again")
        return "worked"

    agent = Agent(
        FunctionModel(respond),
        name="meta",
        toolsets=[toolset],
        capabilities=[WorkflowDurability(tool_task_config=TaskConfig(retries=0))],
    )

    @wf.workflow(id="meta")
    async def flow() -> str:
        return (await agent.run("go")).output

    assert await flow() == "ok"
    assert len(attempts) == 4
    steps = await recorded_steps(store, "meta")
    assert "meta.tool_call:flaky@b" in steps
    assert not [s for s in steps if "cheap" in s]


async def test_a_toolset_passed_to_one_run_is_refused_inside_a_workflow(
    wf: Workflow, tool_loop: ToolLoop
) -> None:
    agent = tool_loop(2, capabilities=[WorkflowDurability()])
    extra = FunctionToolset[Any](id="extra")

    @extra.tool_plain
    async def unwrapped() -> str:
        return "would run again on every replay"

    @wf.workflow(id="runtime-toolset")
    async def flow() -> str:
        return (await agent.run("go", toolsets=[extra])).output

    with pytest.raises(UserError, match="durable"):
        await flow()


async def test_agent_run_stream_inside_a_workflow_streams_per_checkpoint(
    wf: Workflow, store: InMemoryStore
) -> None:
    from pydantic_ai.models.function import DeltaToolCall, DeltaToolCalls

    calls: list[int] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> Any:
        calls.append(turn_of(messages))
        if turn_of(messages) == 1:
            tool_call: DeltaToolCalls = {0: DeltaToolCall(name="shout", json_args='{"word": "hi"}')}
            yield tool_call
        else:
            yield "HI "
            yield "there"

    agent = Agent(
        FunctionModel(stream_function=stream),
        name="streamer",
        capabilities=[WorkflowDurability()],
    )

    @agent.tool_plain
    async def shout(word: str) -> str:
        return word.upper()

    @wf.workflow(id="stream")
    async def flow() -> list[str]:
        async with agent.run_stream("go") as result:
            return [chunk async for chunk in result.stream_text(delta=True)]

    # The model's chunks arrive together, once its step has completed and been recorded.
    assert await flow() == ["HI there"]
    assert calls == [1, 2]
    assert "streamer.model_request_stream#1" in await recorded_steps(store, "stream")


async def test_a_dynamic_toolset_lists_and_calls_its_tools_in_steps(
    wf: Workflow, store: InMemoryStore
) -> None:
    # The same base-owned wrapping covers MCP toolsets (given an id): discovery and calls.
    built: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn_of(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("greet", {"name": "Ann"}, "g-1")])
        return ModelResponse(parts=[TextPart("greeted")])

    def greeters(ctx: RunContext[Any]) -> FunctionToolset[Any]:
        built.append(1)
        toolset = FunctionToolset[Any]()

        @toolset.tool_plain
        async def greet(name: str) -> str:
            return f"hello {name}"

        return toolset

    agent = Agent(
        FunctionModel(respond),
        name="dyn",
        toolsets=[DynamicToolset(greeters, id="greeters")],
        capabilities=[WorkflowDurability()],
    )

    @wf.workflow(id="dynamic")
    async def flow() -> str:
        return (await agent.run("go")).output

    assert await flow() == "greeted"
    assert await recorded_steps(store, "dynamic") == [
        "dyn.model_request",
        "dyn.model_request#1",
        "dyn.tool_call:greet@g-1",
        "dyn.toolset:greeters.get_tools",
        "dyn.toolset:greeters.get_tools#1",
    ]


async def test_a_model_retry_from_a_tool_is_recorded_and_replayed_not_rerun(
    wf: Workflow,
) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = turn_of(messages)
        if turn < 3:
            return ModelResponse(parts=[ToolCallPart("pick", {"x": turn}, f"p-{turn}")])
        return ModelResponse(parts=[TextPart("picked")])

    agent = Agent(FunctionModel(respond), name="picky", capabilities=[WorkflowDurability()])
    tool_calls: list[int] = []

    @agent.tool_plain
    async def pick(x: int) -> str:
        tool_calls.append(x)
        if x == 1:
            raise ModelRetry("x=1 is taken, pick another")
        return f"took {x}"

    crash = [True]

    @wf.workflow(id="model-retry")
    async def flow() -> str:
        result = await agent.run("go")
        if crash:
            crash.clear()
            raise RuntimeError("crash after the agent finished")
        return result.output

    with pytest.raises(RuntimeError):
        await flow()
    assert await flow() == "picked"
    assert tool_calls == [1, 2]  # the replay re-raised the recorded ModelRetry itself
