"""The workflow behind ``DurableAgent.run()``: one per (Workflow, agent name).

A call hands its live objects (the agent, deps, options, the prompt as given) to the
workflow body through a context variable. The workflow's inputs are the prompt and the
message history, stored as JSON in pydantic-ai's own message format, and a digest of
each run option that changes the answer (``deps``, ``output_type``, ``model_settings``
...; see :mod:`.identity`). So the engine's identity check refuses a run id called again
with other inputs before anything runs, and a run the engine restarts by itself
(``wf.resume``, ``wf.recover``, ``wf.worker``) gets its prompt and history back exactly,
and runs with the agent of that name built last, without deps or other run options.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary, ref

from pydantic import ConfigDict, TypeAdapter
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, UserContent
from pydantic_ai.run import AgentRunResult
from pydantic_core import PydanticSerializationError, to_jsonable_python

from durable import DurableError, SerializationError, Workflow, WorkflowFunction, current_run

if TYPE_CHECKING:
    from .agent import DurableAgent

Prompt = str | Sequence[UserContent] | None

# The same byte encoding as pydantic-ai's ModelMessagesTypeAdapter.
_prompt_adapter: TypeAdapter[Prompt] = TypeAdapter(
    Prompt, config=ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
)


@dataclass
class Call:
    """What one ``run()`` call hands to its workflow body: live objects, never stored."""

    agent: DurableAgent[Any, Any]
    prompt: Prompt
    message_history: Sequence[ModelMessage] | None
    deps: Any = None
    options: dict[str, Any] = field(default_factory=dict[str, Any])
    result: AgentRunResult[Any] | None = None


current_call: ContextVar[Call | None] = ContextVar("durable_pydantic_ai_call", default=None)

AgentWorkflow = WorkflowFunction[[Any, list[Any] | None, dict[str, str] | None], dict[str, Any]]

# Shared by every DurableAgent of one name: a Workflow refuses two workflow functions with
# one name, and a DurableAgent built per request must find the runs of earlier ones. Nothing
# here keeps a Workflow (or an agent) alive.
_workflows: WeakKeyDictionary[Workflow, dict[str, AgentWorkflow]] = WeakKeyDictionary()
_latest: WeakKeyDictionary[Workflow, dict[str, ref[DurableAgent[Any, Any]]]] = WeakKeyDictionary()


def agent_workflow(wf: Workflow, agent: DurableAgent[Any, Any]) -> AgentWorkflow:
    """The workflow ``{agent.name}.run`` of ``wf``, made on first use."""
    name = agent.name
    _latest.setdefault(wf, {})[name] = ref(agent)
    flows = _workflows.setdefault(wf, {})
    if (flow := flows.get(name)) is not None:
        return flow
    wf_ref = ref(wf)

    # ``options``: {option: digest} (identity.run_options), for the identity check only;
    # None in runs recorded before it was an input.
    async def run_agent(
        prompt: Any, message_history: list[Any] | None, options: dict[str, str] | None = None
    ) -> dict[str, Any]:
        call = current_call.get()
        if call is None:  # restarted by the engine from the run's stored inputs
            call = Call(_latest_agent(wf_ref, name), *decode_inputs(prompt, message_history))
        run = current_run()
        call.result = await call.agent.run_agent(
            call.prompt,
            call.deps,
            call.message_history,
            None if run is None else run.run_id,
            call.options,
        )
        # For the run record (wf.get_run); the result itself is rebuilt from the steps.
        return {"output": to_jsonable_python(call.result.output, fallback=repr)}

    flow = flows[name] = wf.workflow(name=f"{name}.run")(run_agent)
    return flow


def _latest_agent(wf_ref: ref[Workflow], name: str) -> DurableAgent[Any, Any]:
    wf = wf_ref()
    latest = None if wf is None else _latest.get(wf, {}).get(name)
    agent = None if latest is None else latest()
    if agent is None:
        raise DurableError(f"no DurableAgent named {name!r} exists to run {name}.run")
    return agent


def encode_inputs(
    prompt: Prompt, message_history: Sequence[ModelMessage] | None
) -> tuple[Any, list[Any] | None]:
    """The prompt and message history as JSON data, for the run's stored inputs."""
    try:
        history = (
            None
            if message_history is None
            else ModelMessagesTypeAdapter.dump_python(list(message_history), mode="json")
        )
        return _prompt_adapter.dump_python(prompt, mode="json"), history
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise SerializationError(f"the prompt or message history has no JSON form: {exc}") from exc


def decode_inputs(
    prompt: Any, message_history: list[Any] | None
) -> tuple[Prompt, list[ModelMessage] | None]:
    """:func:`encode_inputs` undone (through JSON text, where bytes are base64)."""
    history = (
        None
        if message_history is None
        else ModelMessagesTypeAdapter.validate_json(json.dumps(message_history))
    )
    return _prompt_adapter.validate_json(json.dumps(prompt)), history


def differing_inputs(
    recorded: Any, prompt: Any, message_history: list[Any] | None, options: dict[str, str]
) -> list[str] | None:
    """Which of a call's agent inputs differ from a run's stored ``recorded`` inputs
    (``[]``: none), or None when the stored inputs do not tell."""
    if not isinstance(recorded, dict):
        return None
    stored = typing.cast("dict[str, Any]", recorded)
    names: list[str] = []
    if stored.get("prompt") != prompt:
        names.append("prompt")
    if stored.get("message_history") != message_history:
        names.append("message_history")
    old: dict[str, str] = stored.get("options") or {}
    names.extend(name for name in sorted({*old, *options}) if old.get(name) != options.get(name))
    return names
