"""The seed's import path ``durable.redis_store.RedisStore``; the store is in durable-redis."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "RedisStore":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import import_plugin_attr

    return import_plugin_attr("RedisStore", "durable_redis", "python-durable[redis]")
