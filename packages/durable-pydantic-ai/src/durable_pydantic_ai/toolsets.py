"""Custom leaf toolsets: any ``AbstractToolset`` that lists and calls its own tools and is not
one of pydantic-ai's function, MCP or dynamic toolsets (those are wrapped by pydantic-ai).

Inside a workflow run a custom leaf is checkpointed as a dynamic toolset is: its tool
discovery (``get_tools`` with ``get_instructions``) is the step ``{agent}.toolset:{id}.get_tools``
of each agent step, and each tool call the step ``{agent}.tool_call:{tool}@{tool-call id}``.
The toolset is entered inside the first of its steps that runs, once per agent run, so a
run rebuilt from its checkpoints neither enters nor calls it. Its ``id`` names the steps: a
custom leaf without one is refused inside a workflow run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from pydantic_ai.exceptions import UserError
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import (
    AbstractToolset,
    DynamicToolset,
    ExternalToolset,
    FunctionToolset,
    WrapperToolset,
)
from pydantic_ai.toolsets.combined import CombinedToolset


@functools.cache
def _builtin_leaf_types() -> tuple[type[AbstractToolset[Any]], ...]:
    types: list[type[AbstractToolset[Any]]] = [FunctionToolset, DynamicToolset, ExternalToolset]
    try:
        from pydantic_ai.mcp import MCPToolset
    except ImportError:  # pragma: no cover - the MCP extra is not installed
        pass
    else:
        types.append(MCPToolset)
    return tuple(types)


def is_custom_leaf(toolset: AbstractToolset[Any]) -> bool:
    """Whether ``toolset`` is a leaf that executes its own tools, not one of pydantic-ai's.

    ``ExternalToolset`` (deferred tools) executes nothing and is left alone.
    """
    return not isinstance(toolset, (*_builtin_leaf_types(), WrapperToolset, CombinedToolset))


def unnamed_custom_leaves(toolsets: Iterable[AbstractToolset[Any]]) -> list[str]:
    """The labels of the custom leaf toolsets without an ``id`` in ``toolsets``."""
    found: list[str] = []

    def visit(leaf: AbstractToolset[Any]) -> None:
        if is_custom_leaf(leaf) and leaf._explicit_id is None:  # pyright: ignore[reportPrivateUsage]
            found.append(leaf.label)

    for toolset in toolsets:
        toolset.apply(visit)
    return found


def refuse_unnamed_leaves(labels: Sequence[str]) -> NoReturn:
    names = ", ".join(labels)
    raise UserError(
        f"toolset {names} has no `id`: a custom toolset (an AbstractToolset that lists and "
        "calls its own tools) needs a unique, stable `id` to run inside a durable workflow run, "
        "as pydantic-ai's Temporal integration requires. The id names its steps "
        "('{agent}.toolset:{id}.get_tools'), so its calls are checkpointed and not run again on "
        "a resume or a replay. Give it one: return it from the toolset's `id` property, e.g. "
        "pass `id='...'` to its constructor."
    )


def as_dynamic_toolset(toolset: AbstractToolset[AgentDepsT]) -> DynamicToolset[AgentDepsT]:
    """``toolset`` as a dynamic toolset of the same id, resolved once per run, so that
    pydantic-ai's durable dynamic toolset (discovery and calls as durable operations,
    the toolset entered inside the first of them) serves it."""

    def resolve(ctx: RunContext[AgentDepsT]) -> AbstractToolset[AgentDepsT]:
        return toolset

    return DynamicToolset(resolve, per_run_step=False, id=toolset.id)
