"""Fixtures of the pydantic-ai integration suite: offline agents on FunctionModel.

``wf``        a Workflow on a fresh InMemoryStore.
``store``     that store, to look at the steps a run recorded.
``ledger``    a list every scripted model appends the turn it serves to: model calls, counted.
``tool_loop`` builds an agent that calls its ``step`` tool once per turn and answers on the
              last turn; ``tools_ran`` lists the tool calls it executed. ``fail_once_at=n``
              makes tool call n raise ConnectionError the first time.

Test modules are imported with --import-mode=importlib and cannot import this file, so the
few helpers they share are fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import InMemoryStore, Workflow
from durable.backoff import constant


def turn_of(messages: list[ModelMessage]) -> int:
    """Which model turn these messages ask for: 1 + the responses already in them."""
    return 1 + sum(1 for m in messages if isinstance(m, ModelResponse))


def tool_loop_model(turns: int, ledger: list[int]) -> FunctionModel:
    """Calls the ``step`` tool on turns 1 .. turns-1, then answers in text."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = turn_of(messages)
        ledger.append(turn)
        if turn < turns:
            return ModelResponse(parts=[ToolCallPart("step", {"n": turn}, f"call-{turn}")])
        return ModelResponse(parts=[TextPart(f"finished after {turn} turns")])

    return FunctionModel(respond)


@pytest.fixture(name="turn_of")
def turn_of_fixture() -> Callable[[list[ModelMessage]], int]:
    return turn_of


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def wf(store: InMemoryStore) -> Workflow:
    return Workflow("test-app", db=store, default_backoff=constant(0))


@pytest.fixture
def ledger() -> list[int]:
    return []


@pytest.fixture
def tools_ran() -> list[int]:
    return []


@pytest.fixture
def tool_loop(ledger: list[int], tools_ran: list[int]) -> Callable[..., Agent[Any, str]]:
    def build(
        turns: int = 5,
        *,
        name: str = "looper",
        capabilities: list[AbstractCapability[Any]] | None = None,
        fail_once_at: int | None = None,
    ) -> Agent[Any, str]:
        agent = Agent(tool_loop_model(turns, ledger), name=name, capabilities=capabilities)
        failures = [fail_once_at]

        @agent.tool_plain
        async def step(n: int) -> str:
            if n in failures:
                failures.clear()
                raise ConnectionError(f"the backend of tool call {n} went away")
            tools_ran.append(n)
            return f"step {n} done"

        return agent

    return build
