"""``DurableAgent``: the seed's front door, an agent whose runs are durable workflow runs.

    wf = Workflow("support")
    agent = DurableAgent(Agent(model, name="support", tools=[...]), wf)

    result = await agent.run("Where is my order?")          # a new run, id in result.run_id
    result = await agent.run("Where is my order?", run_id="ticket-7")   # resumable by id

Each call is one run of a workflow named ``{name}.run``; each model request and tool call of
the agent loop is one step of it, through :class:`~durable_pydantic_ai.WorkflowDurability`.
"""

from __future__ import annotations

import asyncio
import typing
import uuid
from collections.abc import Sequence
from typing import Any, Generic, cast

from pydantic import TypeAdapter
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage
from pydantic_ai.output import OutputDataT
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import AgentDepsT, Tool
from pydantic_ai.tools import RunContext as ToolRunContext
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset
from pydantic_ai.usage import RunUsage

from durable import InputsConflictError, RunContext, Workflow, current_run
from durable.steps import run_step

from .backend import reserve, reserved
from .capability import WorkflowDurability
from .config import DEFAULT_MODEL_CONFIG, DEFAULT_TOOL_CONFIG, TaskConfig, resolve
from .identity import run_options
from .runs import Call, Prompt, agent_workflow, current_call, differing_inputs, encode_inputs
from .steps import StreamingNotSupportedError, active_run, executable, rebuilding
from .toolsets import refuse_unnamed_leaves, unnamed_custom_leaves


class DurableAgent(Generic[AgentDepsT, OutputDataT]):
    """Runs a pydantic-ai agent so that every model request and tool call is a checkpoint.

    Args:
        agent: The agent. It is used as is; the durability capability is added per run
            (unless the agent already carries a :class:`WorkflowDurability`).
        wf: The workflow whose store keeps the checkpoints.
        name: Names the workflow (``{name}.run``) and the steps; defaults to ``agent.name``.
            One of them is required to run (a ``UserError`` says so), as pydantic-ai's own
            durable engines require. Keep it stable: runs in flight find their steps by it.
        model_task_config: Retries and backoff of model requests.
        tool_task_config: Retries and backoff of tool calls.
    """

    def __init__(
        self,
        agent: AbstractAgent[AgentDepsT, OutputDataT],
        wf: Workflow,
        *,
        name: str | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: TaskConfig | None = None,
    ) -> None:
        self.agent = agent
        self.wf = wf
        self.name: str = name or agent.name or "agent"
        #: Whether the agent was given a name: unnamed agents would all share the steps of
        #: the workflow ``agent.run``, so they are refused when they run (require_name).
        self._named = bool(name or agent.name)
        self.model_config = resolve(model_task_config, DEFAULT_MODEL_CONFIG)
        self.tool_config = resolve(tool_task_config, DEFAULT_TOOL_CONFIG)
        attached = WorkflowDurability[AgentDepsT].from_agent(agent)
        self._capability: WorkflowDurability[AgentDepsT] | None = (
            None
            if attached is not None
            else WorkflowDurability(
                name=self.name,
                model_task_config=model_task_config,
                tool_task_config=tool_task_config,
            )
        )
        # What the capability names the steps by: the scope of each run is taken by it.
        self._unit_name: str = (
            attached.name if attached is not None and attached.name else self.name
        )
        self._flow = agent_workflow(wf, self)

    # -- running ------------------------------------------------------------------------------

    async def run(
        self,
        prompt: Prompt = None,
        *,
        deps: AgentDepsT = None,  # type: ignore[assignment]  # as in Agent.run
        message_history: Sequence[ModelMessage] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> AgentRunResult[OutputDataT]:
        """Run the agent durably and return pydantic-ai's own result.

        Without ``run_id`` outside a workflow, the run gets a fresh id (``{name}-<uuid4 hex>``),
        returned as ``result.run_id``: pass it back as ``run_id=`` to resume that run after a
        crash. Calling a run that completed rebuilds its result from the checkpoints (no model
        call). Inside a ``@wf.workflow`` without ``run_id``, the agent's steps belong to the
        enclosing run. ``deps`` and ``**kwargs`` (any ``Agent.run`` argument) are handed to
        the agent as given and never stored: pass them again when resuming. The prompt, the
        message history, ``deps`` and the options that change the answer (``output_type``,
        ``model_settings`` ...) are the run's inputs: the run id called with other ones
        raises :class:`~durable.InputsConflictError` before anything runs.
        """
        self.require_name("run")
        self.require_toolset_ids()
        if run_id is None and current_run() is not None:
            return await self.run_agent(prompt, deps, message_history, None, kwargs)
        rid = run_id if run_id is not None else self.new_run_id()
        call = Call(self, prompt, message_history, deps, kwargs)
        prompt_data, history_data = encode_inputs(prompt, message_history)
        options = run_options(deps, kwargs)
        token = current_call.set(call)
        try:
            await self._flow.run(rid, prompt_data, history_data, options)
        except InputsConflictError as conflict:
            await self._run_conflicting(conflict, rid, prompt_data, history_data, options)
        finally:
            current_call.reset(token)
        if call.result is not None:
            return call.result
        # The run had completed (here or in another process): replay it from its checkpoints.
        return await self._rebuild(rid, prompt, deps, message_history, kwargs)

    async def _run_conflicting(
        self,
        conflict: InputsConflictError,
        run_id: str,
        prompt: Any,
        message_history: list[Any] | None,
        options: dict[str, str],
    ) -> None:
        """After the engine refused ``run_id`` for other inputs: say which agent inputs
        differ, or resume a run recorded before the run options were inputs."""
        record = await self.wf.get_run(run_id)
        if record is None or record.workflow != self._flow.workflow_id:
            raise conflict  # not this run's conflict (a workflow the agent's tools ran)
        differ = differing_inputs(record.inputs, prompt, message_history, options)
        if differ is None:
            raise conflict
        if "options" not in typing.cast("dict[str, Any]", record.inputs):
            # Recorded by a version before the run options were inputs: what they were is
            # not known. The same prompt and history are the same call, as they were then.
            if not {"prompt", "message_history"} & set(differ):
                await self._flow.run_call(self._flow.call_from_record(record, what="this call"))
                return
            differ = [name for name in differ if name in ("prompt", "message_history")]
        if not differ:
            raise conflict  # the same agent inputs: the conflict is not about them
        raise InputsConflictError(
            f"run {run_id!r} of agent {self.name!r} was started with other inputs than this "
            f"call gives (inputs that differ: {', '.join(differ)}); nothing was run. A run id "
            "stands for one agent call: call run() again with the run's own prompt, message "
            "history, deps and options to resume or replay it, or use a new run id for new inputs"
        ) from None

    def run_sync(
        self,
        prompt: Prompt = None,
        *,
        deps: AgentDepsT = None,  # type: ignore[assignment]  # as in Agent.run
        message_history: Sequence[ModelMessage] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> AgentRunResult[OutputDataT]:
        """:meth:`run` in a new event loop (not from inside a running one)."""

        async def run_and_close() -> AgentRunResult[OutputDataT]:
            try:
                return await self.run(
                    prompt, deps=deps, message_history=message_history, run_id=run_id, **kwargs
                )
            finally:
                await self.wf.close()  # its connections belong to this loop, which ends here

        return asyncio.run(run_and_close())

    def run_stream(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: a stream is consumed outside the run, where nothing is checkpointed."""
        raise StreamingNotSupportedError(
            "DurableAgent.run_stream() is not supported: the stream would be consumed outside "
            "the workflow run, so its model requests could not be checkpointed. Use "
            "run(..., event_stream_handler=handler) to receive each step's events as the step "
            "completes, or call agent.run_stream() / agent.iter() inside your own @wf.workflow "
            "on an agent with the WorkflowDurability capability (events arrive per checkpoint)."
        )

    def require_toolset_ids(self) -> None:
        """Raise pydantic-ai's ``UserError`` if a custom leaf toolset of the agent has no
        ``id``: inside a durable run its calls would have no step to be checkpointed in."""
        unnamed = unnamed_custom_leaves(self.agent.toolsets)
        if unnamed:
            refuse_unnamed_leaves(unnamed)

    def require_name(self, method: str) -> None:
        """Raise pydantic-ai's ``UserError`` if the agent has no name: its durable run
        would share the workflow and the steps of every other unnamed agent."""
        if self._named:
            return
        raise UserError(
            f"DurableAgent.{method}(): the agent needs a unique `name` to run durably: "
            'pass Agent(..., name="support") or DurableAgent(agent, wf, name="support"). '
            f"It names the workflow ({{name}}.run) and the steps; without one every unnamed "
            f"agent would share the workflow {self._flow.workflow_id!r} and each other's "
            "checkpoints. Keep it stable: runs in flight find their steps by it"
        )

    # -- AbstractAgent's other members ----------------------------------------------------------

    @property
    def model(self) -> Any:
        """The wrapped agent's model."""
        return self.agent.model

    @property
    def deps_type(self) -> type[Any]:
        return self.agent.deps_type

    @property
    def output_type(self) -> Any:
        return self.agent.output_type

    @property
    def description(self) -> str | None:
        return self.agent.description

    @property
    def event_stream_handler(self) -> Any:
        return self.agent.event_stream_handler

    @property
    def toolsets(self) -> Sequence[AbstractToolset[AgentDepsT]]:
        return self.agent.toolsets

    @property
    def root_capability(self) -> Any:
        return self.agent.root_capability

    def output_json_schema(self, *args: Any, **kwargs: Any) -> Any:
        return self.agent.output_json_schema(*args, **kwargs)

    def system_prompt_parts(self, **kwargs: Any) -> Any:
        return self.agent.system_prompt_parts(**kwargs)

    def override(self, **kwargs: Any) -> Any:
        """The wrapped agent's ``override()`` (a context manager), e.g. to swap the model
        in a test. What it overrides is not an input of the run id: a run resumed or replayed
        under another override is not told apart from the original."""
        return self.agent.override(**kwargs)

    def iter(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: the graph would be driven outside the workflow run."""
        _no_stream(
            "iter",
            "the agent graph would be driven outside the workflow run, so its nodes could "
            "not be checkpointed. Use run(...) (with event_stream_handler=handler for "
            "events), or call agent.iter()",
        )

    def run_stream_events(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: the events would be consumed outside the workflow run."""
        _no_stream(
            "run_stream_events",
            "the events would be consumed outside the workflow run, where nothing is "
            "checkpointed. Use run(..., event_stream_handler=handler) to receive each "
            "step's events as the step completes, or agent.run_stream_events()",
        )

    def run_stream_sync(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported, as :meth:`run_stream`."""
        _no_stream(
            "run_stream_sync",
            "the stream would be consumed outside the workflow run. Use "
            "run_sync(..., event_stream_handler=handler), or agent.run_stream()",
        )

    def __getattr__(self, name: str) -> Any:
        # Only for names the class lacks: a public member of pydantic-ai's AbstractAgent
        # that a later pydantic-ai added and this DurableAgent does not know yet. Refused
        # when called, with what to use instead: never run outside the workflow run.
        if name.startswith("_") or not hasattr(AbstractAgent, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def refused(*args: Any, **kwargs: Any) -> typing.NoReturn:
            self._not_supported(
                name,
                f"It came with a pydantic-ai newer than this durable-pydantic-ai knows. Use "
                f"durable_agent.agent.{name}(...) (not durable).",
            )

        return refused

    def _not_supported(self, method: str, instead: str) -> typing.NoReturn:
        raise NotImplementedError(
            f"DurableAgent.{method}() is not supported: it would run the agent outside a "
            f"workflow run, with nothing checkpointed. {instead}"
        )

    def realtime(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: a realtime session is not a sequence of checkpointable steps."""
        self._not_supported("realtime", "Use durable_agent.agent.realtime(...) (not durable).")

    def to_cli(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: the CLI drives its own runs of the agent."""
        self._not_supported("to_cli", "Use durable_agent.agent.to_cli() (not durable).")

    def to_cli_sync(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Not supported: the CLI drives its own runs of the agent."""
        self._not_supported("to_cli_sync", "Use durable_agent.agent.to_cli_sync() (not durable).")

    def new_run_id(self) -> str:
        """A fresh, unique run id (what :meth:`run` uses when given none)."""
        return f"{self.name}-{uuid.uuid4().hex}"

    async def run_agent(
        self,
        prompt: Prompt,
        deps: Any,
        message_history: Sequence[ModelMessage] | None,
        run_id: str | None,
        options: dict[str, Any],
    ) -> AgentRunResult[OutputDataT]:
        """One run of the wrapped agent, durable when a workflow run is active."""
        options = dict(options)
        capabilities: list[Any] = list(options.pop("capabilities", None) or ())
        if self._capability is not None:
            capabilities.append(self._capability)
        run = active_run()
        if run is not None:
            self.require_name("run")
            self.require_toolset_ids()
        if run is None:
            return await self.agent.run(
                prompt,
                deps=deps,
                message_history=message_history,
                run_id=run_id,
                capabilities=capabilities or None,
                **options,
            )
        # The run's scope is taken here, where it is called, in program order: two runs
        # in two branches of a gather keep theirs whichever reaches the agent loop first.
        with reserved(reserve(run, self._unit_name)):
            return await self.agent.run(
                prompt,
                deps=deps,
                message_history=message_history,
                run_id=run_id,
                capabilities=capabilities or None,
                **options,
            )

    async def _rebuild(
        self,
        run_id: str,
        prompt: Prompt,
        deps: Any,
        message_history: Sequence[ModelMessage] | None,
        options: dict[str, Any],
    ) -> AgentRunResult[OutputDataT]:
        await self.wf.get_run(run_id)  # sets the store up if this call did not
        store = self.wf.store
        steps = await store.load_steps(run_id)
        run = RunContext(
            run_id=run_id,
            workflow_id=self._flow.workflow_id,
            store=store,
            loaded_steps=None if steps is None else dict(steps),
        )
        with rebuilding(run):
            return await self.run_agent(prompt, deps, message_history, run_id, options)

    # -- single tools and signals -------------------------------------------------------------

    async def tool(
        self,
        tool_name: str,
        tool_args: dict[str, Any],
        *,
        step_id: str | None = None,
        deps: Any = None,
    ) -> Any:
        """Call one of the agent's function tools as a checkpointed step of the current run.

        The step id is ``step_id``, else ``{name}.tool_call``, ``{name}.tool_call#1`` ... in
        call order. The result is rebuilt into the tool's return annotation on replay. Outside
        a workflow this is a plain call: no checkpoint, no retries.
        """
        tool = self._function_tool(tool_name)
        schema = tool.function_schema
        return_type = typing.get_type_hints(schema.function).get("return", Any)
        adapter: TypeAdapter[Any] = TypeAdapter(return_type)

        async def call() -> Any:
            # Outside an agent run the tool gets a context with the agent's configured model.
            ctx = ToolRunContext[Any](
                deps=deps, model=cast(Any, self.agent.model), usage=RunUsage(), tool_name=tool_name
            )
            args = schema.validator.validate_python(tool_args)
            return await schema.call(args, ctx)

        run = active_run()
        if run is None:
            return await call()
        if step_id is None:
            self.require_name("tool")

        async def call_as_json() -> Any:
            return adapter.dump_python(await call(), mode="json")

        sid = step_id if step_id is not None else run.next_step_id(f"{self.name}.tool_call")
        payload = await run_step(
            run, sid, executable(run, sid, call_as_json), self.tool_config.policy
        )
        return adapter.validate_python(payload)

    def _function_tool(self, tool_name: str) -> Tool[Any]:
        found: list[Tool[Any]] = []

        def visit(toolset: AbstractToolset[Any]) -> None:
            if isinstance(toolset, FunctionToolset) and tool_name in toolset.tools:
                found.append(toolset.tools[tool_name])

        for toolset in self.agent.toolsets:
            toolset.apply(visit)
        if not found:
            names: list[str] = []
            for toolset in self.agent.toolsets:
                toolset.apply(
                    lambda ts: names.extend(ts.tools) if isinstance(ts, FunctionToolset) else None
                )
            raise ValueError(
                f"tool {tool_name!r} not found on agent {self.name!r}; its function tools: "
                f"{sorted(names)}"
            )
        return found[0]

    async def signal(self, name: str, *, poll: float = 2.0) -> Any:
        """Wait durably for the signal ``name`` of the current run (``wf.signal``)."""
        return await self.wf.signal(name, poll=poll)

    def __repr__(self) -> str:
        return (
            f"<DurableAgent name={self.name!r} model_retries={self.model_config.retries} "
            f"tool_retries={self.tool_config.retries}>"
        )


def _no_stream(method: str, why_and_instead: str) -> typing.NoReturn:
    """Refuse a DurableAgent method that would run the agent outside the workflow run."""
    raise StreamingNotSupportedError(
        f"DurableAgent.{method}() is not supported: {why_and_instead} inside your own "
        "@wf.workflow on an agent with the WorkflowDurability capability."
    )
