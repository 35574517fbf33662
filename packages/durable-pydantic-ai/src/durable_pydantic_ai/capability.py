"""``WorkflowDurability``: pydantic-ai's durability capability, backed by a durable ``Workflow``.

Attach it to an agent and call ``agent.run()`` inside a ``@wf.workflow``: every model request,
tool call, MCP call and event-handler call of the run becomes one checkpointed step of the
workflow run. Outside a workflow the capability does nothing and the agent runs as usual.

    wf = Workflow("support")
    agent = Agent(model, name="support", capabilities=[WorkflowDurability()])

    @wf.workflow(id="ticket-{ticket_id}")
    async def answer(ticket_id: str, question: str) -> str:
        return (await agent.run(question)).output
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.capabilities import (
    RawToolArgs,
    ValidatedToolArgs,
    WrapRunHandler,
    WrapToolExecuteHandler,
    WrapToolValidateHandler,
)
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationBackend,
)
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import AgentDepsT, RunContext, ToolDefinition

from durable import SerializationError

from .backend import (
    TOOL_METADATA_KEY,
    WorkflowOperationBackend,
    agent_run_scope,
    next_unit_id,
    tool_call_scope,
)
from .config import ResolvedTaskConfig, TaskConfig
from .steps import active_run, checkpointed


def _unstorable(error: Exception) -> BaseException:
    return SerializationError(f"a step's result cannot be stored as JSON: {error}")


@dataclass(init=False, kw_only=True)
class WorkflowDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes each model request and tool call of an agent run a step of the current workflow run.

    Args:
        name: Names the agent's steps (``{name}.model_request`` ...). Defaults to the agent's
            ``name``; one of them is required, and it must stay the same across releases of
            your code, or runs in flight will not find their steps.
        models: More models the run may switch to, by key (see pydantic-ai's durable docs).
        event_stream_handler: Receives the run's events: model events live inside each model
            request step, every other event in a step of its own.
        model_task_config: Retries and backoff of model requests (default: 3 retries,
            ``exponential(base=2, max=60)``).
        tool_task_config: Retries and backoff of tool and MCP calls (default: 2 retries,
            ``exponential(base=2, max=30)``). One tool can override it with
            ``metadata={"durable": TaskConfig(...)}``, or opt out of its own step with
            ``metadata={"durable": False}``.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="durable",
        durable_unit_noun="step",
        durable_container_noun="workflow",
        # Stores keep JSON: payloads are reduced to JSON data inside the step, before recording.
        codec=JSON_CODEC,
        serialization_failure=_unstorable,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-always",
            "dynamic": "enter-never",
        },
        tool_call_result_upgrade_lenient=False,  # a new engine: no recordings of older formats
        journal_discovery=True,
        # Tool steps are keyed by the model's tool-call ids, not by arrival order: parallel is fine.
        sequential_tools_in_durable_context=False,
        # A toolset passed to one run was not wrapped when the agent was bound: its calls would
        # run again on every replay, so it is refused inside a workflow.
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_config_key=TOOL_METADATA_KEY,
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        models: Mapping[str, Model] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: TaskConfig | None = None,
    ) -> None:
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self.model_task_config = model_task_config
        self.tool_task_config = tool_task_config
        self._backend: WorkflowOperationBackend | None = None

    @property
    def in_durable_context(self) -> bool:
        return active_run() is not None

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        # Built on first use by the copy bound to an agent, which knows the agent's name.
        backend = self._backend
        if backend is None or backend.agent_name != self.name:
            backend = self._backend = WorkflowOperationBackend(
                agent_name=self.name,
                model_config=self.model_task_config,
                tool_config=self.tool_task_config,
            )
        return backend

    # -- hooks that give each unit a replay-stable step id ------------------------------------

    async def wrap_run(
        self, ctx: RunContext[AgentDepsT], *, handler: WrapRunHandler
    ) -> AgentRunResult[Any]:
        run = active_run()
        if run is None:
            return await super().wrap_run(ctx, handler=handler)
        # The n-th run of this agent within the workflow run gets the scope "support",
        # "support#1" ... counted run-wide: this hook runs in a task of pydantic-ai's, whose
        # place among the workflow's tasks is pydantic-ai's business, not the run's.
        scope = run.next_step_id(self.name, run.run_wide_scope())
        with agent_run_scope(scope, run.new_scope()):
            return await super().wrap_run(ctx, handler=handler)

    async def wrap_tool_validate(
        self,
        ctx: RunContext[AgentDepsT],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: RawToolArgs,
        handler: WrapToolValidateHandler,
    ) -> ValidatedToolArgs:
        with tool_call_scope(call.tool_name, call.tool_call_id):
            return await handler(args)

    async def wrap_tool_execute(
        self,
        ctx: RunContext[AgentDepsT],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        with tool_call_scope(call.tool_name, call.tool_call_id):
            return await handler(args)

    # -- replay-stable identity and clock (pydantic-ai versions that ask for them) -------------

    def get_default_run_id(self) -> str | None:
        run = active_run()
        if run is None:
            return None
        return next_unit_id(run, f"{run.run_id}:{self.name}")

    def get_default_conversation_id(self, run_id: str) -> str | None:
        if active_run() is None:
            return None
        from pydantic_ai.durable_exec import conversation_id_from_run_id

        return conversation_id_from_run_id(run_id)

    async def get_run_start_time(self, run_id: str) -> dt.datetime | None:
        run = active_run()
        if run is None:
            return None

        async def now() -> str:
            return dt.datetime.now(dt.UTC).isoformat()

        step_id = next_unit_id(run, f"{self.name}.started_at")
        started = await checkpointed(run, step_id, now, _RECORD_ONCE)
        return dt.datetime.fromisoformat(started)


_RECORD_ONCE = ResolvedTaskConfig(retries=0, backoff=lambda retry: 0.0)
