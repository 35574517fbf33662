"""DurableAgent and the seed's helpers: the names of ``durable.pydantic_ai``, all of them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.run import AgentRunResult

import durable
import durable_pydantic_ai
from durable import InMemoryStore, RunConflictError, Workflow
from durable.pydantic_ai import DurableAgent, TaskConfig, durable_pipeline, durable_tool
from durable_pydantic_ai import WorkflowDurability

ToolLoop = Callable[..., Agent[Any, str]]
SEED_NAMES = ("DurableAgent", "TaskConfig", "durable_tool", "durable_pipeline")


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_seed_name_imports_from_durable_and_is_the_plugins(name: str) -> None:
    import durable.pydantic_ai as seed_path

    assert getattr(seed_path, name) is getattr(durable_pydantic_ai, name)
    assert getattr(durable, name) is getattr(durable_pydantic_ai, name)


def test_the_plugin_is_registered_as_an_integration() -> None:
    found = metadata.entry_points(group="durable.integrations", name="pydantic_ai")
    assert [ep.value for ep in found] == ["durable_pydantic_ai"]


async def test_a_run_without_run_id_gets_a_fresh_id_and_shares_nothing_by_prompt(
    wf: Workflow, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    agent = DurableAgent(tool_loop(2), wf)
    first = await agent.run("the same prompt")
    second = await agent.run("the same prompt")
    assert isinstance(first, AgentRunResult)
    assert first.output == second.output == "finished after 2 turns"
    assert ledger == [1, 2, 1, 2]  # the second call ran the model again
    assert first.run_id != second.run_id
    assert first.run_id.startswith("looper-")
    record = await wf.get_run(first.run_id)
    assert record is not None
    assert record.status == "completed"
    assert record.workflow == "test-app.looper.run"


async def test_a_completed_run_is_rebuilt_from_its_steps_without_model_calls(
    wf: Workflow, tool_loop: ToolLoop, ledger: list[int], tools_ran: list[int]
) -> None:
    agent = DurableAgent(tool_loop(4), wf)
    first = await agent.run("go", run_id="ticket-7")
    assert first.run_id == "ticket-7"
    ledger.clear()
    tools_ran.clear()

    again = await agent.run("go", run_id="ticket-7")
    assert (ledger, tools_ran) == ([], [])
    assert again.output == first.output

    # The model's responses come back as recorded; requests are rebuilt by the agent loop
    # (with new timestamps).
    def responses(result: AgentRunResult[str]) -> list[Any]:
        return [
            (m.parts, m.usage, m.model_name)
            for m in result.all_messages()
            if isinstance(m, ModelResponse)
        ]

    assert responses(again) == responses(first)
    assert [type(m) for m in again.all_messages()] == [ModelRequest, ModelResponse] * 4
    assert again.usage == first.usage
    assert again.usage.requests == 4


async def test_a_durable_agent_built_per_request_finds_the_runs_of_earlier_ones(
    wf: Workflow, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    first = await DurableAgent(tool_loop(2), wf).run("go", run_id="per-request")
    ledger.clear()
    again = await DurableAgent(tool_loop(2), wf).run("go", run_id="per-request")
    assert ledger == []
    assert again.output == first.output


async def test_rebuilding_a_run_the_agent_no_longer_matches_says_so(
    wf: Workflow, tool_loop: ToolLoop
) -> None:
    await DurableAgent(tool_loop(2), wf).run("go", run_id="old")
    renamed = DurableAgent(tool_loop(2), wf, name="renamed")
    # The run belongs to the agent "looper"'s workflow: another agent may not take it.
    with pytest.raises(RunConflictError, match=r"looper\.run.*renamed\.run"):
        await renamed.run("go", run_id="old")


@dataclass
class Shop:
    name: str
    discount: float


async def test_deps_and_message_history_pass_through(wf: Workflow) -> None:
    seen: list[list[ModelMessage]] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        if len(messages) < 4:
            return ModelResponse(parts=[ToolCallPart("price", {"amount": 100}, "p-1")])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(respond), name="shop", deps_type=Shop)

    @agent.tool
    async def price(ctx: RunContext[Shop], amount: float) -> str:
        return f"{ctx.deps.name}: {amount * (1 - ctx.deps.discount)}"

    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart("earlier question")]),
        ModelResponse(parts=[TextPart("earlier answer")]),
    ]
    durable_agent = DurableAgent(agent, wf)
    result = await durable_agent.run(
        "what does it cost?", deps=Shop("Ghent shop", 0.25), message_history=history
    )
    assert result.output == "done"
    assert seen[0][:2] == history
    assert "Ghent shop: 75.0" in str(result.all_messages()[-2])
    assert result.new_messages() == result.all_messages()[2:]


def test_run_sync(tool_loop: ToolLoop, tmp_path: Any) -> None:
    wf = Workflow("sync-app", db=f"sqlite:///{tmp_path / 'sync.db'}")
    agent = DurableAgent(tool_loop(2), wf)
    result = agent.run_sync("go", run_id="sync-1")
    assert result.output == "finished after 2 turns"
    assert agent.run_sync("go", run_id="sync-1").output == result.output


async def test_run_stream_says_what_to_use_instead(wf: Workflow, tool_loop: ToolLoop) -> None:
    with pytest.raises(NotImplementedError, match="event_stream_handler") as caught:
        DurableAgent(tool_loop(2), wf).run_stream("go")
    assert isinstance(caught.value, durable.DurableError)


async def test_events_reach_a_handler_per_step(wf: Workflow, tool_loop: ToolLoop) -> None:
    events: list[str] = []

    async def handler(ctx: RunContext[Any], stream: Any) -> None:
        async for event in stream:
            events.append(event.event_kind)

    def stream_turns(ledger: list[int]) -> Any:
        async def stream(messages: list[ModelMessage], info: AgentInfo) -> Any:
            ledger.append(1)
            yield "streamed answer"

        return stream

    calls: list[int] = []
    agent = DurableAgent(
        Agent(FunctionModel(stream_function=stream_turns(calls)), name="streamer"), wf
    )
    result = await agent.run("go", event_stream_handler=handler)
    assert result.output == "streamed answer"
    assert "part_start" in events
    assert "final_result" in events


async def test_inside_a_workflow_the_agent_runs_as_steps_of_that_run(
    wf: Workflow, store: InMemoryStore, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    agent = DurableAgent(tool_loop(2), wf)

    @durable_pipeline(wf, id="twice-{topic}")
    async def twice(topic: str) -> list[str]:
        return [(await agent.run(topic)).output, (await agent.run(topic)).output]

    assert await twice(topic="x") == ["finished after 2 turns"] * 2
    steps = await store.load_steps("twice-x")
    assert steps is not None
    assert {"looper.model_request", "looper#1.model_request#1"} <= set(steps)
    assert await wf.get_run("looper-x") is None  # no run of its own


async def test_an_agent_that_carries_the_capability_is_used_as_is(
    wf: Workflow, tool_loop: ToolLoop, ledger: list[int]
) -> None:
    agent = DurableAgent(tool_loop(2, capabilities=[WorkflowDurability()]), wf)
    await agent.run("go", run_id="own")
    await agent.run("go", run_id="own")
    assert ledger == [1, 2]


async def test_tool_checkpoints_one_call_and_rebuilds_its_type(
    wf: Workflow, tool_loop: ToolLoop
) -> None:
    agent = tool_loop(2)
    looked_up: list[str] = []

    @agent.tool_plain
    async def lookup(city: str) -> Shop:
        looked_up.append(city)
        return Shop(city, 0.1)

    durable_agent = DurableAgent(agent, wf)
    assert await durable_agent.tool("lookup", {"city": "Ghent"}) == Shop("Ghent", 0.1)

    crash = [True]

    @wf.workflow(id="tool-{city}")
    async def flow(city: str) -> str:
        shop = await durable_agent.tool("lookup", {"city": city}, step_id="lookup-0")
        assert isinstance(shop, Shop)  # a Shop when executed and when replayed
        await durable_agent.tool("lookup", {"city": city})  # step "looper.tool_call"
        if crash:
            crash.clear()
            raise RuntimeError("crash once after both tool calls")
        return shop.name

    with pytest.raises(RuntimeError):
        await flow(city="Bruges")
    assert await flow(city="Bruges") == "Bruges"
    assert looked_up == ["Ghent", "Bruges", "Bruges"]  # both replayed the second time
    with pytest.raises(ValueError, match="lookup"):
        await durable_agent.tool("nope", {})


class Approval(BaseModel):
    approved: bool


async def test_signal_waits_for_a_human(wf: Workflow, tool_loop: ToolLoop) -> None:
    agent = DurableAgent(tool_loop(2), wf)

    @wf.workflow(id="signal-test")
    async def review() -> dict[str, Any]:
        draft = await agent.run("Review this", run_id="signal-inner")
        decision = await agent.signal("approval", poll=0.05)
        return {"draft": draft.output, "approval": decision}

    running = asyncio.create_task(review())
    await asyncio.sleep(0.05)
    assert await wf.complete("signal-test", "approval", {"approved": True})
    assert await running == {"draft": "finished after 2 turns", "approval": {"approved": True}}


async def test_durable_tool_is_a_checkpointed_task_and_an_async_pydantic_ai_tool(
    wf: Workflow,
) -> None:
    calls: list[str] = []

    @durable_tool(wf, retries=1)
    async def search(query: str) -> str:
        """Search the web."""
        calls.append(query)
        return f"results for {query}"

    assert inspect.iscoroutinefunction(search.__call__)
    assert await search("plain call") == "results for plain call"  # outside a workflow

    @wf.workflow(id="search-{q}")
    async def flow(q: str) -> str:
        return await search(q)

    assert await flow(q="durable") == await flow(q="durable") == "results for durable"
    assert calls == ["plain call", "durable"]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("search", {"query": "agents"}, "s")])
        return ModelResponse(parts=[TextPart(str(messages[-1].parts[0].content))])

    agent = Agent(FunctionModel(respond), tools=[search])
    assert (await agent.run("go")).output == "results for agents"
    assert [t.description for t in agent._function_toolset.tools.values()] == ["Search the web."]


async def test_durable_pipeline_is_a_workflow_with_an_id_template(wf: Workflow) -> None:
    ran: list[str] = []

    @wf.task
    async def process_item(item: str) -> str:
        ran.append(item)
        return f"processed-{item}"

    @durable_pipeline(wf, id="loop-pipe-{batch}")
    async def batch_pipeline(batch: str) -> list[str]:
        return [await process_item(i, step_id=f"item-{i}") for i in ("a", "b", "c")]

    assert await batch_pipeline(batch="t") == ["processed-a", "processed-b", "processed-c"]
    assert await batch_pipeline(batch="t") == ["processed-a", "processed-b", "processed-c"]
    assert ran == ["a", "b", "c"]
    assert batch_pipeline.run_id_for(batch="t") == "loop-pipe-t"


def test_name_and_repr(wf: Workflow, tool_loop: ToolLoop) -> None:
    assert DurableAgent(tool_loop(2), wf).name == "looper"
    assert DurableAgent(tool_loop(2), wf, name="custom-name").name == "custom-name"
    assert DurableAgent(
        Agent(FunctionModel(lambda m, i: ModelResponse([])), name=None), wf
    ).name == ("agent")
    assert repr(DurableAgent(tool_loop(2), wf)) == (
        "<DurableAgent name='looper' model_retries=3 tool_retries=2>"
    )
    assert TaskConfig(5).retries == 5


async def test_the_engine_resumes_a_run_from_its_stored_prompt_and_history(wf: Workflow) -> None:
    seen: list[list[ModelMessage]] = []
    fail = [True]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        if fail:
            fail.clear()
            raise UserError("a bug, fixed before the resume")
        return ModelResponse(parts=[TextPart("resumed")])

    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart("earlier question")]),
        ModelResponse(parts=[TextPart("earlier answer")]),
    ]
    agent = DurableAgent(Agent(FunctionModel(respond), name="resumable"), wf)
    with pytest.raises(UserError):
        await agent.run("now this", message_history=history, run_id="r-1")
    record = await wf.get_run("r-1")
    assert record is not None
    assert record.inputs["prompt"] == "now this"
    assert record.inputs["message_history"][1]["parts"][0]["content"] == "earlier answer"

    assert await wf.resume("r-1") == {"output": "resumed"}
    assert seen[1][:2] == history  # rebuilt as pydantic-ai messages, equal to the originals
    assert seen[1][2].parts[0].content == "now this"  # type: ignore[union-attr]
