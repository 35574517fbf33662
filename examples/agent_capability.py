"""The capability on its own: any pydantic-ai agent, inside your own workflow.

    python examples/agent_capability.py

``WorkflowDurability`` is pydantic-ai's durability capability backed by a durable
``Workflow``: attach it to an agent, call ``agent.run()`` inside a ``@wf.workflow``, and each
model request and tool call is one checkpointed step of the workflow run. Here the model
fails once with an HTTP 503 (retried with the configured backoff), and the steps the run
recorded are listed at the end.
"""

from __future__ import annotations

import asyncio

from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.backoff import constant
from durable_pydantic_ai import TaskConfig, WorkflowDurability

outages = [ModelHTTPError(503, "function", "overloaded")]


def llm(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if outages:
        print("  model     HTTP 503 (will be retried)")
        raise outages.pop()
    if len(messages) == 1:
        print("  model     asks for the weather tool")
        return ModelResponse(parts=[ToolCallPart("weather", {"city": "Ghent"}, "w-1")])
    print("  model     answers")
    return ModelResponse(parts=[TextPart("Ghent: 11 °C and drizzle. Take a coat.")])


agent = Agent(
    FunctionModel(llm),
    name="advisor",
    capabilities=[
        WorkflowDurability(model_task_config=TaskConfig(retries=2, backoff=constant(0.1)))
    ],
)


@agent.tool_plain
async def weather(city: str) -> str:
    print(f"  tool      weather({city!r})")
    return "11 °C, drizzle"


wf = Workflow("advice", db="memory://")


@wf.workflow(id="advice-{city}")
async def advise(city: str) -> str:
    result = await agent.run(f"What should I wear in {city} today?")
    return result.output


async def main() -> None:
    print("advise('Ghent')")
    print(f"  result    {await advise('Ghent')}")
    steps = await wf.store.load_steps("advice-Ghent") or {}
    print("steps recorded for run advice-Ghent:")
    for step_id in steps:
        print(f"  {step_id}")
    print("advise('Ghent') again: the run completed, nothing runs")
    print(f"  result    {await advise('Ghent')}")
    print("outside a workflow the capability is transparent: a plain agent run")
    print(f"  result    {(await agent.run('And tomorrow?')).output}")


if __name__ == "__main__":
    asyncio.run(main())
