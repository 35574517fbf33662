"""The seed's import path ``durable.pydantic_ai``; the integration is durable-pydantic-ai."""

from typing import Any

_NAMES = ("DurableAgent", "TaskConfig", "durable_tool", "durable_pipeline")


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import import_plugin_attr

    return import_plugin_attr(name, "durable_pydantic_ai", "python-durable[pydantic-ai]")
