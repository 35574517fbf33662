"""Custom leaf toolsets (an AbstractToolset that is not function, MCP or dynamic) are
checkpointed inside a durable run: tool discovery and each tool call are steps."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from durable import InMemoryStore, Workflow
from durable_pydantic_ai import DurableAgent, WorkflowDurability

ARGS = SchemaValidator(
    core_schema.typed_dict_schema({"city": core_schema.typed_dict_field(core_schema.str_schema())})
)


class RemoteWeather(AbstractToolset[Any]):
    """A remote tool server: counts its discoveries and its calls."""

    def __init__(self, toolset_id: str | None = "weather") -> None:
        self._id = toolset_id
        self.listed = 0
        self.calls: list[str] = []

    @property
    def id(self) -> str | None:
        return self._id

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        self.listed += 1
        tool_def = ToolDefinition(
            name="forecast",
            parameters_json_schema={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
        return {
            "forecast": ToolsetTool(
                toolset=self, tool_def=tool_def, max_retries=1, args_validator=ARGS
            )
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        self.calls.append(tool_args["city"])
        return f"sunny in {tool_args['city']} (call {len(self.calls)})"


def weather_model(crash_on_second_request: list[bool] | None = None) -> FunctionModel:
    """Calls ``forecast`` on the first turn, answers with the tool's return on the second."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = 1 + sum(1 for m in messages if isinstance(m, ModelResponse))
        if turn == 1:
            return ModelResponse(parts=[ToolCallPart("forecast", {"city": "Oslo"}, "call-1")])
        if crash_on_second_request:
            crash_on_second_request.pop()
            raise UserError("the process dies here")
        returned = messages[-1].parts[0]
        return ModelResponse(parts=[TextPart(f"answer: {getattr(returned, 'content', '')}")])

    return FunctionModel(respond)


async def test_a_custom_toolsets_discovery_and_call_are_steps(
    wf: Workflow, store: InMemoryStore
) -> None:
    remote = RemoteWeather()
    agent = Agent(
        weather_model(), name="weather", toolsets=[remote], capabilities=[WorkflowDurability()]
    )

    @wf.workflow(id="w-{n}")
    async def flow(n: int) -> str:
        return (await agent.run("weather?")).output

    assert await flow(1) == "answer: sunny in Oslo (call 1)"
    assert remote.calls == ["Oslo"]
    steps = await store.load_steps("w-1")
    assert steps is not None
    assert "weather.tool_call:forecast@call-1" in steps
    assert "weather.toolset:weather.get_tools" in steps


async def test_a_resume_after_a_crash_does_not_call_the_tool_again(wf: Workflow) -> None:
    remote = RemoteWeather()
    crash = [True]
    agent = Agent(
        weather_model(crash), name="weather", toolsets=[remote], capabilities=[WorkflowDurability()]
    )

    @wf.workflow(id="crashy")
    async def flow() -> str:
        return (await agent.run("weather?")).output

    with pytest.raises(UserError, match="dies here"):
        await flow()
    assert remote.calls == ["Oslo"]
    assert await flow() == "answer: sunny in Oslo (call 1)"
    assert remote.calls == ["Oslo"]


async def test_a_completed_run_rebuilt_calls_neither_the_tool_nor_get_tools(wf: Workflow) -> None:
    remote = RemoteWeather()
    agent = DurableAgent(Agent(weather_model(), name="weather", toolsets=[remote]), wf)

    first = await agent.run("weather?", run_id="done")
    assert first.output == "answer: sunny in Oslo (call 1)"
    assert remote.calls == ["Oslo"]
    listed = remote.listed
    assert listed >= 1

    again = await agent.run("weather?", run_id="done")
    assert again.output == first.output
    assert remote.calls == ["Oslo"]
    assert remote.listed == listed


async def test_the_same_run_outside_a_workflow_calls_the_toolset_as_usual() -> None:
    remote = RemoteWeather()
    agent = Agent(
        weather_model(), name="weather", toolsets=[remote], capabilities=[WorkflowDurability()]
    )
    assert (await agent.run("weather?")).output == "answer: sunny in Oslo (call 1)"
    assert (await agent.run("weather?")).output == "answer: sunny in Oslo (call 2)"
    assert remote.calls == ["Oslo", "Oslo"]


async def test_a_custom_toolset_without_id_is_refused_inside_a_workflow(wf: Workflow) -> None:
    remote = RemoteWeather(toolset_id=None)
    agent = Agent(
        weather_model(), name="weather", toolsets=[remote], capabilities=[WorkflowDurability()]
    )

    @wf.workflow(id="no-id")
    async def flow() -> str:
        return (await agent.run("weather?")).output

    with pytest.raises(UserError, match=r"RemoteWeather.*has no `id`.*id="):
        await flow()
    assert remote.calls == []
    assert remote.listed == 0


async def test_durable_agent_refuses_a_custom_toolset_without_id_before_running(
    wf: Workflow, store: InMemoryStore
) -> None:
    remote = RemoteWeather(toolset_id=None)
    agent = DurableAgent(Agent(weather_model(), name="weather", toolsets=[remote]), wf)

    with pytest.raises(UserError, match=r"RemoteWeather.*has no `id`.*id="):
        await agent.run("weather?", run_id="refused")
    assert remote.calls == []
    assert remote.listed == 0
    assert await store.load_steps("refused") in (None, {})
