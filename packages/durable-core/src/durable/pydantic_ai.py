"""The seed's import path ``durable.pydantic_ai``; the integration is durable-pydantic-ai.

Every public name of ``durable_pydantic_ai`` comes through here, read from the package
when asked for: core keeps no list of the integration's names.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import import_plugin_attr

    return import_plugin_attr(name, "durable_pydantic_ai", "python-durable[pydantic-ai]")


def __dir__() -> list[str]:
    from .plugins import import_module

    found, plugin = import_module("durable_pydantic_ai")
    return sorted(getattr(plugin, "__all__", ())) if found else []
