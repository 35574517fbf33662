"""The seed's import path ``durable.pydantic_ai``; the integration is durable-pydantic-ai."""

from typing import Any

# durable_pydantic_ai's public names (its __all__), so either import path gives them all.
_NAMES = frozenset(
    {
        "NON_RETRYABLE_ERRORS",
        "TOOL_METADATA_KEY",
        "DurableAgent",
        "DurableTool",
        "StepNotRecordedError",
        "StreamingNotSupportedError",
        "TaskConfig",
        "WorkflowDurability",
        "WorkflowOperationBackend",
        "durable_pipeline",
        "durable_tool",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import import_plugin_attr

    return import_plugin_attr(name, "durable_pydantic_ai", "python-durable[pydantic-ai]")


def __dir__() -> list[str]:
    return sorted(_NAMES)
