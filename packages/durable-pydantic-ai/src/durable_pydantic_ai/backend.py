"""pydantic-ai's durable operations, executed as checkpointed steps of the current run.

pydantic-ai's ``BaseDurabilityCapability`` turns every model request, tool call, MCP call and
event-handler call of an agent run into a *durable operation* and hands it to a backend.
:class:`WorkflowOperationBackend` is ours: it names the operation's step and runs it through
core's step engine, :func:`durable.steps.run_step`.

Step ids are persisted data, stable across releases, and unique within a workflow run::

    support.model_request                 the first model request of agent "support"
    support.model_request#1               the second
    support.tool_call:get_weather@call_7  a tool call, keyed by the model's tool-call id
    support#1.model_request               the second run of "support" in the same workflow run

Tool calls are keyed by the id the model gave the call (it is part of the recorded response,
so it is the same on replay) rather than by call order, so tools can run in parallel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic_ai.durable_exec import (
    CallableOperationBackend,
    CapabilityOperationId,
    DurableOperationId,
    EventStreamHandlerId,
    JournalOperationNamer,
    ModelCancelSuspendedResponseId,
    ModelCompactMessagesId,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
    ToolsetGetInstructionsId,
    ToolsetGetToolsId,
    ToolsetValidateToolArgumentsId,
)
from pydantic_ai.exceptions import UserError

from durable import RunContext as DurableRunContext
from durable.scopes import Scope
from durable.steps import run_step

from .config import (
    DEFAULT_EVENT_CONFIG,
    DEFAULT_MODEL_CONFIG,
    DEFAULT_TOOL_CONFIG,
    ResolvedTaskConfig,
    TaskConfig,
    resolve,
)
from .steps import active_run, executable

#: The tool metadata key for per-tool settings: ``metadata={"durable": TaskConfig(retries=5)}``,
#: or ``{"durable": False}`` to run a tool without a checkpoint of its own.
TOOL_METADATA_KEY = "durable"

# The scope of the agent run in progress ("support", "support#1" ...), set around each run,
# with the counters of its units: they run one after another (or are told apart by their
# tool-call ids) but in tasks of pydantic-ai's, so the run's per-task counters would not do.
_agent_run_scope: ContextVar[tuple[str, Scope] | None] = ContextVar(
    "durable_pydantic_ai_scope", default=None
)
# (tool name, tool-call id) of the tool call in progress, set around its validation and execution.
_tool_call: ContextVar[tuple[str, str] | None] = ContextVar(
    "durable_pydantic_ai_tool", default=None
)


@dataclass(eq=False)
class Reservation:
    """An agent run's scope ("support", "$0/support" ...), taken where the run is called.

    Automatic step ids are fixed by program order in the asyncio task that asks for them
    (:mod:`durable.scopes`). ``wrap_run`` runs in a task of pydantic-ai's, made when the
    run gets there: two branches of a ``gather`` would number their agent runs by which
    got there first. So the scope is taken in the caller's task, when the call is made
    (``DurableAgent.run``, or the first hook pydantic-ai calls there), and ``wrap_run``
    claims it.
    """

    run: DurableRunContext
    name: str
    scope: str
    #: The counters of the run's units (they run one after another, or are told apart
    #: by their tool-call ids, in tasks of pydantic-ai's).
    counters: Scope
    #: The pydantic-ai run id it is for, once known.
    agent_run_id: str | None = None
    claimed: bool = False

    def fits(self, run: DurableRunContext, name: str, agent_run_id: str | None) -> bool:
        return (
            self.run is run
            and self.name == name
            and not self.claimed
            and (self.agent_run_id is None or self.agent_run_id == agent_run_id)
        )


_reserved: ContextVar[Reservation | None] = ContextVar("durable_pydantic_ai_reserved", default=None)


def reserve(run: DurableRunContext, name: str) -> Reservation:
    """The scope of a run of agent ``name`` called now, from the current asyncio task: in
    that task's scope, in program order (``name``, ``name#1`` ... in the workflow body)."""
    return Reservation(run, name, run.next_step_id(name), run.new_scope())


@contextmanager
def reserved(reservation: Reservation) -> Generator[None]:
    """Around one agent run: its ``wrap_run`` claims ``reservation``."""
    token = _reserved.set(reservation)
    try:
        yield
    finally:
        _reserved.reset(token)


def reservation_here(run: DurableRunContext, name: str, agent_run_id: str | None) -> Reservation:
    """In a hook pydantic-ai calls in the caller's task, before the run's own tasks: the
    run's reservation (``DurableAgent.run``'s, or one taken now)."""
    current = _reserved.get()
    if current is not None and current.fits(run, name, agent_run_id):
        if agent_run_id is not None:
            current.agent_run_id = agent_run_id
        return current
    reservation = reserve(run, name)
    reservation.agent_run_id = agent_run_id
    # Set in the caller's context, which the run's tasks copy; a later run there takes
    # its own (an unclaimed one for another pydantic-ai run id does not fit it).
    _reserved.set(reservation)
    return reservation


def claim_reservation(
    run: DurableRunContext, name: str, agent_run_id: str | None
) -> Reservation | None:
    """In ``wrap_run``: the scope taken for this agent run where it was called, if any."""
    current = _reserved.get()
    if current is None or not current.fits(run, name, agent_run_id):
        return None
    current.claimed = True
    return current


def in_agent_run() -> bool:
    """Whether an agent run of the current workflow run is in progress here (a tool)."""
    return _agent_run_scope.get() is not None


@contextmanager
def agent_run_scope(scope: str, counters: Scope) -> Generator[None]:
    token = _agent_run_scope.set((scope, counters))
    try:
        yield
    finally:
        _agent_run_scope.reset(token)


@contextmanager
def tool_call_scope(tool_name: str, tool_call_id: str) -> Generator[None]:
    token = _tool_call.set((tool_name, tool_call_id))
    try:
        yield
    finally:
        _tool_call.reset(token)


def next_unit_id(run: DurableRunContext, name: str) -> str:
    """The step id of the next unit called ``name``: counted within the agent run in
    progress, else run-wide (see ``wrap_run``)."""
    current = _agent_run_scope.get()
    return run.next_step_id(name, run.run_wide_scope() if current is None else current[1])


class StepNamer(JournalOperationNamer):
    """Operation names relative to the agent run's scope (which already names the agent)."""

    def operation_name(self, operation_id: DurableOperationId) -> str:
        match operation_id:
            case ModelRequestId(model_id=model_id, streaming=streaming):
                name = "model_request_stream" if streaming else "model_request"
                return name if model_id is None else f"{name}[{model_id}]"
            case ModelCompactMessagesId():
                return "compact_messages"
            case ModelCancelSuspendedResponseId():
                return "cancel_suspended_response"
            case EventStreamHandlerId():
                return "event_stream_handler"
            case CapabilityOperationId(capability_id=capability_id, operation=operation):
                return f"capability:{capability_id}.{operation}"
            case ToolsetGetToolsId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.get_tools"
            case ToolsetGetInstructionsId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.get_instructions"
            case ToolsetValidateToolArgumentsId(toolset_id=toolset_id):
                return f"validate:{toolset_id}"
            case ToolsetCallToolId(toolset_id=toolset_id):
                return f"tool_call:{toolset_id}"
            case _:  # pyright: ignore[reportUnnecessaryComparison] - the union grows in minor releases
                return type(operation_id).__name__


def step_base(operation_id: DurableOperationId, name: str, agent_name: str) -> str:
    """The step id of an operation, before ``#n`` is appended to repeats."""
    current = _agent_run_scope.get()
    scope = agent_name if current is None else current[0]
    call = _tool_call.get()
    if call is not None:
        tool_name, call_id = call
        if isinstance(operation_id, ToolsetCallToolId):
            return f"{scope}.tool_call:{tool_name}@{call_id}"
        if isinstance(operation_id, ToolsetValidateToolArgumentsId):
            return f"{scope}.validate:{tool_name}@{call_id}"
    return f"{scope}.{name}"


class WorkflowOperationBackend(CallableOperationBackend[ResolvedTaskConfig]):
    """Runs each durable operation as one checkpointed step of the active workflow run."""

    def __init__(
        self,
        *,
        agent_name: str,
        model_config: TaskConfig | None = None,
        tool_config: TaskConfig | None = None,
    ) -> None:
        model = resolve(model_config, DEFAULT_MODEL_CONFIG)
        tool = resolve(tool_config, DEFAULT_TOOL_CONFIG)

        def resolve_tool(
            operation_id: DurableOperationId, tool_object: object | None, tool_name: str
        ) -> ResolvedTaskConfig | Literal[False]:
            return _tool_config(tool_object, tool_name, tool)

        super().__init__(
            namer=StepNamer(agent_name),
            config=RoleBasedOperationConfig(
                model=model,
                event=DEFAULT_EVENT_CONFIG,
                capability=model,  # capability operations (summaries ...) are model calls too
                tool=tool,
                resolve_tool=resolve_tool,
            ),
        )
        self.agent_name = agent_name

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: ResolvedTaskConfig,
    ) -> object:
        run = active_run()
        if run is None:  # not reached through the capability, which checks first
            return await body()
        step_id = next_unit_id(run, step_base(operation_id, name, self.agent_name))
        return await run_step(run, step_id, executable(run, step_id, body), config.policy)


def _tool_config(
    tool: object | None, tool_name: str, default: ResolvedTaskConfig
) -> ResolvedTaskConfig | Literal[False]:
    """A tool's config from its ``metadata={"durable": ...}``: a TaskConfig, a dict, or False."""
    tool_def = getattr(tool, "tool_def", None)
    metadata: object = getattr(tool_def, "metadata", None)
    setting: object = (
        cast(dict[str, object], metadata).get(TOOL_METADATA_KEY)
        if isinstance(metadata, dict)
        else None
    )
    if setting is None:
        return default
    if setting is False:
        return False
    if isinstance(setting, TaskConfig):
        return setting.merged_over(default)
    if isinstance(setting, dict):
        fields = cast(dict[str, Any], setting)
        return TaskConfig(**fields).merged_over(default)
    raise UserError(
        f"tool {tool_name!r}: metadata[{TOOL_METADATA_KEY!r}] must be a TaskConfig, a dict of "
        f"its fields, or False; got {type(setting).__name__}"
    )
