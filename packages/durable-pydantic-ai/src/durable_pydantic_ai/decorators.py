"""The seed's decorators: ``@durable_tool`` (a checkpointed tool function) and
``@durable_pipeline`` (a workflow that composes agents)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from durable import Task, Workflow, WorkflowFunction
from durable.backoff import BackoffStrategy, exponential

P = ParamSpec("P")
R = TypeVar("R")


class DurableTool(Task[P, R]):
    """A ``@wf.task`` that pydantic-ai recognises as an async tool.

    pydantic-ai runs a tool whose ``__call__`` is not ``async def`` in a worker thread; a
    task's ``__call__`` returns a coroutine without being one, so it is made one here.
    """

    async def __call__(self, *args: Any, **kwargs: Any) -> R:
        result: R = await super().__call__(*args, **kwargs)
        return result


def durable_tool(
    wf: Workflow,
    *,
    name: str | None = None,
    retries: int = 2,
    backoff: BackoffStrategy | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], DurableTool[P, R]]:
    """Make an async tool function a durable task of ``wf`` (default 2 retries).

        @durable_tool(wf, retries=3)
        async def web_search(query: str) -> str: ...

        agent = Agent(model, tools=[web_search])

    Inside a workflow each call is checkpointed under ``name`` (``name#1`` ... in call order,
    or ``step_id=``); outside one it is a plain call, easy to unit-test. Tools of an agent
    that carries :class:`~durable_pydantic_ai.WorkflowDurability` (or runs through
    :class:`~durable_pydantic_ai.DurableAgent`) are checkpointed per call already; this
    decorator is for tools used on their own, or for a finer checkpoint inside one.
    """
    strategy = backoff if backoff is not None else exponential(base=2, max=30)

    def decorate(fn: Callable[P, Awaitable[R]]) -> DurableTool[P, R]:
        task = wf.task(name=name, retries=retries, backoff=strategy)(fn)  # checks it is async
        return DurableTool(task.fn, name=task.name, retries=task.retries, backoff=task.backoff)

    return decorate


def durable_pipeline(
    wf: Workflow,
    *,
    id: str,  # noqa: A002 - the seed's keyword
) -> Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]:
    """``@wf.workflow(id=...)`` under the seed's name, for workflows that compose agents.

    @durable_pipeline(wf, id="research-{topic}")
    async def research(topic: str) -> str:
        plan = await planner.run(f"Plan research on {topic}")
        ...
    """
    return wf.workflow(id=id)
