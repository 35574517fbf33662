"""durable: async workflows that resume after a crash, with a decorator.

    from durable import Workflow

    wf = Workflow("app")                 # checkpoints in ./durable.db (SQLite)

    @wf.task
    async def fetch(url: str) -> dict: ...

    @wf.workflow(id="sync-{source}")
    async def sync(source: str) -> None:
        data = await fetch(f"https://example.com/{source}")

A run interrupted at any point resumes when called again with the same id:
completed steps replay from the store, only the rest runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backoff import BackoffStrategy, constant, exponential, linear
from .context import RunContext, current_run
from .datastore import DataStore, RunData
from .errors import (
    DurableError,
    IdTemplateError,
    InputsConflictError,
    LeaseLostError,
    MissingPluginError,
    NonDeterminismError,
    NotInWorkflowError,
    PluginConflictError,
    PluginError,
    PluginLoadError,
    RecursiveRunError,
    RetriesExhaustedError,
    RunCancelledError,
    RunConflictError,
    RunFailedError,
    SerializationError,
    SignalTimeoutError,
    StepIdConflictError,
    StoreError,
    StoreGuaranteeWarning,
    SyncFunctionError,
    UnknownStoreError,
    UnsupportedOperation,
)
from .flows import WorkflowFunction
from .memory import InMemoryStore
from .plugins import register_store
from .settings import SettingError, SettingTypeError
from .steps import RetryPolicy, StepRunner, run_step
from .store import RunClaim, RunRecord, RunStatus, SignalRecord, StepRecord, Store
from .task import Task
from .workflow import Workflow

if TYPE_CHECKING:  # the plugin packages' names, for type checkers
    from durable_pydantic_ai import DurableAgent as DurableAgent
    from durable_pydantic_ai import TaskConfig as TaskConfig
    from durable_pydantic_ai import durable_pipeline as durable_pipeline
    from durable_pydantic_ai import durable_tool as durable_tool
    from durable_redis import RedisStore as RedisStore
    from durable_sqlite import SQLiteStore as SQLiteStore

__version__ = "0.3.0"

# The seed's import paths of names that now live in plugin packages, for the hint when
# the plugin is not installed: (its module, the pip requirement that provides it). An
# installed plugin is found through its entry point instead (plugins.plugin_export).
_SEED_PATHS: dict[str, tuple[str, str]] = {
    "SQLiteStore": ("durable_sqlite", "python-durable"),
    "RedisStore": ("durable_redis", "python-durable[redis]"),
    "DurableAgent": ("durable_pydantic_ai", "python-durable[pydantic-ai]"),
    "TaskConfig": ("durable_pydantic_ai", "python-durable[pydantic-ai]"),
    "durable_tool": ("durable_pydantic_ai", "python-durable[pydantic-ai]"),
    "durable_pipeline": ("durable_pydantic_ai", "python-durable[pydantic-ai]"),
}


def __getattr__(name: str) -> Any:
    if name.startswith("_"):  # private and dunder lookups (copy, pickle, pytest ...)
        raise AttributeError(f"module 'durable' has no attribute {name!r}")
    return import_plugin_attr(name, *_SEED_PATHS.get(name, ("", "")))


def import_plugin_attr(name: str, module: str, requirement: str) -> Any:
    """``name`` from the installed plugin that exports it (through its entry point), or
    the seed path's install hint, or AttributeError."""
    from .plugins import import_module, plugin_export

    found, value = plugin_export(name, module)
    if found:
        return value
    if not module:
        raise AttributeError(f"module 'durable' has no attribute {name!r}")
    # Installed without its entry points (a copy on the path): the seed's import.
    found, plugin = import_module(module)
    if not found:
        raise MissingPluginError(
            f"durable.{name} comes from the {module.replace('_', '-')} package, which is "
            f'not installed: pip install "{requirement}"'
        ) from None
    return getattr(plugin, name)


__all__ = [
    "BackoffStrategy",
    "DataStore",
    "DurableError",
    "IdTemplateError",
    "InMemoryStore",
    "InputsConflictError",
    "LeaseLostError",
    "MissingPluginError",
    "NonDeterminismError",
    "NotInWorkflowError",
    "PluginConflictError",
    "PluginError",
    "PluginLoadError",
    "RecursiveRunError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "RunCancelledError",
    "RunClaim",
    "RunConflictError",
    "RunContext",
    "RunData",
    "RunFailedError",
    "RunRecord",
    "RunStatus",
    "SerializationError",
    "SettingError",
    "SettingTypeError",
    "SignalRecord",
    "SignalTimeoutError",
    "StepIdConflictError",
    "StepRecord",
    "StepRunner",
    "Store",
    "StoreError",
    "StoreGuaranteeWarning",
    "SyncFunctionError",
    "Task",
    "UnknownStoreError",
    "UnsupportedOperation",
    "Workflow",
    "WorkflowFunction",
    "constant",
    "current_run",
    "exponential",
    "linear",
    "register_store",
    "run_step",
]
