"""DurableAgent's surface (issue 16, item 6): the re-export, the required name, and a clear
error for each AbstractAgent method it does not run durably."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable_pydantic_ai import DurableAgent, StreamingNotSupportedError, WorkflowDurability


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("answered")])


def test_the_seed_path_re_exports_the_capability() -> None:
    import durable_pydantic_ai
    from durable.pydantic_ai import StepNotRecordedError  # type: ignore[attr-defined]
    from durable.pydantic_ai import WorkflowDurability as Reexported  # type: ignore[attr-defined]

    assert Reexported is WorkflowDurability
    assert StepNotRecordedError is durable_pydantic_ai.StepNotRecordedError
    import durable.pydantic_ai as seed

    assert set(durable_pydantic_ai.__all__) <= set(dir(seed))


async def test_an_unnamed_durable_agent_is_refused_when_it_runs(wf: Workflow) -> None:
    calls: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return answer(messages, info)

    agent = DurableAgent(Agent(FunctionModel(respond)), wf)
    with pytest.raises(UserError, match="needs a unique `name`"):
        await agent.run("go", run_id="unnamed")
    assert calls == []
    assert await wf.get_run("unnamed") is None  # refused before a run was recorded


async def test_an_unnamed_durable_agent_is_refused_inside_a_workflow(wf: Workflow) -> None:
    agent = DurableAgent(Agent(FunctionModel(answer)), wf)

    @wf.workflow(id="outer-{n}")
    async def outer(n: int) -> str:
        return (await agent.run("go")).output

    with pytest.raises(UserError, match="needs a unique `name`"):
        await outer(1)


async def test_a_name_given_to_the_durable_agent_is_enough(wf: Workflow) -> None:
    agent = DurableAgent(Agent(FunctionModel(answer)), wf, name="named")
    assert (await agent.run("go", run_id="named-1")).output == "answered"


def test_an_unnamed_plain_agent_with_the_capability_is_refused() -> None:
    # pydantic-ai's own check, when the capability is bound to the agent.
    with pytest.raises(UserError, match="unique `name`"):
        Agent(FunctionModel(answer), capabilities=[WorkflowDurability()])


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("iter", lambda agent: agent.iter("go")),
        ("run_stream_events", lambda agent: agent.run_stream_events("go")),
        ("run_stream_sync", lambda agent: agent.run_stream_sync("go")),
        ("run_stream", lambda agent: agent.run_stream("go")),
    ],
)
def test_streaming_methods_raise_a_clear_error(
    wf: Workflow, method: str, call: Callable[[Any], Any]
) -> None:
    agent = DurableAgent(Agent(FunctionModel(answer), name="surface"), wf)
    with pytest.raises(StreamingNotSupportedError, match=rf"DurableAgent\.{method}\(\)") as err:
        call(agent)
    assert "event_stream_handler" in str(err.value)
    assert isinstance(err.value, NotImplementedError)


@pytest.mark.parametrize("method", ["realtime", "to_cli", "to_cli_sync"])
def test_other_undurable_methods_raise_a_clear_error(wf: Workflow, method: str) -> None:
    agent = DurableAgent(Agent(FunctionModel(answer), name="surface"), wf)
    with pytest.raises(NotImplementedError, match=rf"DurableAgent\.{method}\(\).*\.agent\."):
        getattr(agent, method)()


def test_every_public_abstract_agent_member_is_there(wf: Workflow) -> None:
    agent = DurableAgent(Agent(FunctionModel(answer), name="surface"), wf)
    static = {
        "is_call_tools_node",
        "is_end_node",
        "is_model_request_node",
        "is_user_prompt_node",
        "parallel_tool_call_execution_mode",
        "using_sleep",
        "using_thread_executor",
    }
    missing = [
        name
        for name in dir(AbstractAgent)
        if not name.startswith("_") and name not in static and not hasattr(agent, name)
    ]
    assert missing == []
    assert agent.output_type is str
    assert agent.toolsets == agent.agent.toolsets
    assert agent.output_json_schema() == agent.agent.output_json_schema()


async def test_override_delegates_to_the_wrapped_agent(wf: Workflow) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(info.instructions or "no instructions")])

    agent = DurableAgent(Agent(FunctionModel(respond), name="overridden"), wf)
    with agent.override(instructions="from the override"):
        result = await agent.run("go", run_id="override-1")
    assert result.output == "from the override"
    assert (await agent.run("go", run_id="override-2")).output == "no instructions"


def test_a_member_a_later_pydantic_ai_adds_is_refused_when_called(
    wf: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic-ai may add public AbstractAgent members (2.78 added compact_history): a
    DurableAgent that does not know one yet has it, and refuses it with what to use."""

    def added_later(self: Any) -> str:
        return "ran outside any workflow"

    monkeypatch.setattr(AbstractAgent, "added_later", added_later, raising=False)
    agent = DurableAgent(Agent(FunctionModel(answer), name="surface"), wf)
    assert hasattr(agent, "added_later")
    with pytest.raises(NotImplementedError, match=r"durable_agent\.agent\.added_later"):
        agent.added_later()
    assert not hasattr(agent, "not_a_member")
