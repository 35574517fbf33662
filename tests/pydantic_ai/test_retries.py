"""Model requests and tool calls retry with their configured backoff; permanent errors do not."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError, UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.backoff import constant
from durable_pydantic_ai import DurableAgent, TaskConfig, WorkflowDurability


class FlakyModel:
    """Raises the given errors on its first calls, then answers; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ModelResponse(parts=[TextPart("answer")])


class RecordingBackoff:
    """A backoff strategy that records the retry numbers it is asked about."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.asked: list[int] = []

    def __call__(self, retry: int) -> float:
        self.asked.append(retry)
        return self.seconds


def http_error(status: int) -> ModelHTTPError:
    return ModelHTTPError(status_code=status, model_name="function", body={"error": "x"})


async def run_agent(wf: Workflow, model: FlakyModel, config: TaskConfig) -> str:
    agent = Agent(
        FunctionModel(model.respond),
        name="flaky",
        capabilities=[WorkflowDurability(model_task_config=config)],
    )

    @wf.workflow(id="retry-{n}")
    async def flow(n: int) -> str:
        return (await agent.run("go")).output

    return await flow(1)


async def test_transient_model_errors_retry_with_the_configured_backoff(wf: Workflow) -> None:
    backoff = RecordingBackoff(0.05)
    model = FlakyModel(http_error(503), http_error(429), http_error(408))
    started = time.monotonic()
    assert await run_agent(wf, model, TaskConfig(retries=3, backoff=backoff)) == "answer"
    assert model.calls == 4
    assert backoff.asked == [0, 1, 2]
    assert time.monotonic() - started >= 0.15  # the three waits happened


async def test_retries_stop_after_the_configured_number(wf: Workflow) -> None:
    model = FlakyModel(*(http_error(500) for _ in range(5)))
    with pytest.raises(ModelHTTPError):
        await run_agent(wf, model, TaskConfig(retries=2, backoff=constant(0)))
    assert model.calls == 3


@pytest.mark.parametrize(
    "error",
    [
        http_error(400),
        http_error(401),
        http_error(403),
        http_error(404),
        http_error(422),
        UserError("the agent is misconfigured"),
    ],
    ids=["400", "401", "403", "404", "422", "UserError"],
)
async def test_permanent_errors_are_not_retried(wf: Workflow, error: Exception) -> None:
    model = FlakyModel(error)
    with pytest.raises(type(error)):
        await run_agent(wf, model, TaskConfig(retries=5, backoff=constant(0)))
    assert model.calls == 1


async def test_users_mark_more_errors_as_permanent(wf: Workflow) -> None:
    class QuotaExhausted(Exception):
        pass

    model = FlakyModel(ConnectionError("blip"), QuotaExhausted("done for today"))
    config = TaskConfig(retries=5, backoff=constant(0), non_retryable=(QuotaExhausted,))
    with pytest.raises(QuotaExhausted):
        await run_agent(wf, model, config)
    assert model.calls == 2  # the connection error was retried, the quota error was not


async def test_a_failing_tool_retries_with_the_tool_config(wf: Workflow) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("fetch", {}, "f-1")])
        return ModelResponse(parts=[TextPart("fetched")])

    backoff = RecordingBackoff()
    agent = Agent(FunctionModel(respond), name="tools")
    attempts: list[int] = []

    @agent.tool_plain
    async def fetch() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TimeoutError("slow backend")
        return "data"

    durable = DurableAgent(agent, wf, tool_task_config=TaskConfig(retries=2, backoff=backoff))
    assert (await durable.run("go")).output == "fetched"
    assert len(attempts) == 3
    assert backoff.asked == [0, 1]


def test_default_retries_are_the_seeds(wf: Workflow) -> None:
    durable = DurableAgent(Agent(FunctionModel(FlakyModel().respond)), wf)
    assert (durable.model_config.retries, durable.tool_config.retries) == (3, 2)
    assert [durable.model_config.backoff(i) for i in range(3)] == [2, 4, 8]
    assert durable.tool_config.backoff(10) == 30
    custom: Any = constant(1)
    tuned = DurableAgent(
        Agent(FunctionModel(FlakyModel().respond)),
        wf,
        model_task_config=TaskConfig(retries=7),
        tool_task_config=TaskConfig(backoff=custom),
    )
    assert tuned.model_config.retries == 7
    assert tuned.tool_config.backoff is custom
    assert tuned.tool_config.retries == 2
