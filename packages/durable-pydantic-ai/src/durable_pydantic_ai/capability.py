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
from collections.abc import Generator, Mapping
from contextlib import contextmanager
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
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset

from durable import NonDeterminismError, SerializationError
from durable import RunContext as DurableRunContext
from durable.scopes import Scope
from durable.steps import run_step

from .backend import (
    TOOL_METADATA_KEY,
    WorkflowOperationBackend,
    agent_run_scope,
    claim_reservation,
    in_agent_run,
    reservation_here,
    tool_call_scope,
)
from .config import ResolvedTaskConfig, TaskConfig
from .steps import active_run, executable
from .toolsets import as_dynamic_toolset, is_custom_leaf, refuse_unnamed_leaves


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
        #: Labels of the agent's custom leaf toolsets without an ``id``, found when bound:
        #: refused inside a workflow run (they would run with no checkpoint).
        self._unnamed_leaves: list[str] = []

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

    # -- custom leaf toolsets ------------------------------------------------------------------

    def _bind_to_agent(self, agent: Any) -> None:
        self._unnamed_leaves = []  # the bound copy's own (copy.copy shares the original's)
        super()._bind_to_agent(agent)

    def _wrap_leaf_toolset(
        self, ts: AbstractToolset[AgentDepsT]
    ) -> WrapperToolset[AgentDepsT] | None:
        # pydantic-ai's dispatch reaches _wrap_other_leaf_toolset only when its MCP extra
        # is installed (it returns None when `pydantic_ai.mcp` fails to import): custom
        # leaves are taken here first.
        if is_custom_leaf(ts):
            return self._wrap_other_leaf_toolset(ts)
        return super()._wrap_leaf_toolset(ts)

    def _wrap_other_leaf_toolset(
        self, ts: AbstractToolset[AgentDepsT]
    ) -> WrapperToolset[AgentDepsT] | None:
        # A leaf toolset other than function, MCP and dynamic (a user's AbstractToolset):
        # its discovery and each tool call become steps, as a dynamic toolset's do
        # ("{agent}.toolset:{id}.get_tools", "{agent}.tool_call:{tool}@{call id}").
        if not is_custom_leaf(ts):
            return None
        if ts._explicit_id is None:  # pyright: ignore[reportPrivateUsage]
            # Left as is, so the agent still runs outside a workflow; refused inside one.
            self._unnamed_leaves.append(ts.label)
            return None
        wrapped = self._build_dynamic_toolset(as_dynamic_toolset(ts))
        # The wrapper stands for ``ts`` itself: pydantic-ai swaps a leaf for the wrapper
        # registered under its id only when ``wrapper.wrapped is`` that leaf. Outside a
        # workflow the wrapper hands the run ``ts`` (``wrapped.for_run``); inside one its
        # steps reach ``ts`` through the dynamic toolset built above.
        wrapped.wrapped = ts
        return wrapped

    def refuse_unnamed_leaves(self) -> None:
        """Inside a workflow run: raise pydantic-ai's ``UserError`` if the agent has a custom
        leaf toolset without an ``id``, before anything runs."""
        if self._unnamed_leaves and active_run() is not None:
            refuse_unnamed_leaves(self._unnamed_leaves)

    def get_wrapper_toolset(
        self, toolset: AbstractToolset[AgentDepsT]
    ) -> AbstractToolset[AgentDepsT] | None:
        self.refuse_unnamed_leaves()
        return super().get_wrapper_toolset(toolset)

    # -- hooks that give each unit a replay-stable step id ------------------------------------

    async def wrap_run(
        self, ctx: RunContext[AgentDepsT], *, handler: WrapRunHandler
    ) -> AgentRunResult[Any]:
        run = active_run()
        if run is None:
            return await super().wrap_run(ctx, handler=handler)
        self.refuse_unnamed_leaves()
        # This hook runs in a task of pydantic-ai's, made when the run got here: the scope
        # was taken where the run was called, in program order (backend.Reservation).
        reservation = claim_reservation(run, self.name, ctx.run_id)
        if reservation is not None:
            with agent_run_scope(reservation.scope, reservation.counters):
                return await super().wrap_run(ctx, handler=handler)
        # A pydantic-ai that asks for no default run or conversation id: the n-th run of
        # this agent in the workflow run gets "support", "support#1" ..., counted run-wide.
        # That is program order only while one such run is in progress at a time.
        with _unreserved_run(run, self.name):
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

    # pydantic-ai calls these in the caller's task, where the run is called: each takes the
    # run's scope there if nothing has yet (backend.reservation_here), for wrap_run.

    def get_default_run_id(self) -> str | None:
        run = active_run()
        if run is None:
            return None
        self.refuse_unnamed_leaves()
        reservation = reservation_here(run, self.name, None)
        if reservation.agent_run_id is None:
            reservation.agent_run_id = f"{run.run_id}:{reservation.scope}"
        return reservation.agent_run_id

    def get_default_conversation_id(self, run_id: str) -> str | None:
        run = active_run()
        if run is None:
            return None
        reservation_here(run, self.name, run_id)
        from pydantic_ai.durable_exec import conversation_id_from_run_id

        return conversation_id_from_run_id(run_id)

    async def get_run_start_time(self, run_id: str) -> dt.datetime | None:
        run = active_run()
        if run is None:
            return None
        self.refuse_unnamed_leaves()

        async def now() -> str:
            return dt.datetime.now(dt.UTC).isoformat()

        reservation = reservation_here(run, self.name, run_id)
        step_id = run.next_step_id(f"{reservation.scope}.started_at", reservation.counters)
        started = await run_step(run, step_id, executable(run, step_id, now), _RECORD_ONCE.policy)
        return dt.datetime.fromisoformat(started)


_RECORD_ONCE = ResolvedTaskConfig(retries=0, backoff=lambda retry: 0.0)

# The agents with a run in progress under a run-wide scope, per workflow run (by its
# run-wide counters, which only it has): two runs of one agent at once are numbered by timing.
_unreserved: set[tuple[Scope, str]] = set()


@contextmanager
def _unreserved_run(run: DurableRunContext, name: str) -> Generator[None]:
    if in_agent_run():  # an agent run inside a tool of another: that tool's step orders it
        yield
        return
    key = (run.run_wide_scope(), name)
    if key in _unreserved:
        raise NonDeterminismError(
            f"run {run.run_id!r}: a run of agent {name!r} started while another run of it "
            "in this workflow run was in progress, and this pydantic-ai did not say where "
            "each was called (it asks durability capabilities for no default run or "
            "conversation id), so their steps would be numbered by timing. Call the agent "
            "through DurableAgent(agent, wf).run(...), which takes each run's scope where "
            "it is called, run the agents one after another, or upgrade pydantic-ai"
        )
    _unreserved.add(key)
    try:
        yield
    finally:
        _unreserved.discard(key)
