"""Riding out a broken connection or a restarting server, the same with any redis-py.

redis-py's own retries differ by version and by how a client is built: 8.x resends
10 times for ``Redis(host=...)`` and never for ``Redis.from_url(...)``, and before 8 a
connection that cannot be opened again is not retried at all. So the store makes its
own client without retries and resends here, on ``ConnectionError`` and
``TimeoutError`` only, with a growing wait, for up to ``retry_seconds``. Resending is
safe: every write of the store gives the same outcome when run twice (the scripts
make sure of it, DESIGN §7), and reads have no effect.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from durable.errors import StoreError

from .urls import mask_url

T = TypeVar("T")

#: Errors after which the command may not have reached the server, or its reply got
#: lost: worth sending again ("loading the dataset" after a restart is one of them).
RESENDABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError)
#: ... except these: wrong credentials do not get better by waiting.
_FINAL = tuple(
    getattr(redis_errors, name)
    for name in ("AuthenticationError", "AuthorizationError", "ExternalAuthProviderError")
    if hasattr(redis_errors, name)
)
#: redis-py puts the failed command of a pipeline (arguments included, so possibly a
#: run's inputs or result) in front of the error; messages keep only the error.
_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def resendable(exc: RedisError) -> bool:
    return isinstance(exc, RESENDABLE) and not isinstance(exc, _FINAL)


class Resender:
    """Runs store operations, resending them while the server cannot be reached."""

    def __init__(self, where: str, retry_seconds: float) -> None:
        self.where = where
        self.retry_seconds = retry_seconds

    async def run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, again after a broken connection; a StoreError at last."""
        try:
            return await call()
        except RedisError as exc:
            if not resendable(exc):
                raise self.error(what, exc) from exc
            return await self.resend(what, call, exc)

    async def resend(self, what: str, call: Callable[[], Awaitable[T]], first: RedisError) -> T:
        """The slow path of :meth:`run`, after ``first`` broke the first attempt."""
        deadline = time.monotonic() + self.retry_seconds
        failure: RedisError = first
        for attempt in range(1_000_000):
            # 50 ms, 100 ms, 200 ms ... up to 1 s, each with up to half of it as jitter,
            # so that many clients do not reconnect in step.
            delay = min(1.0, 0.05 * 2**attempt)
            delay = min(delay / 2 + random.uniform(0, delay / 2), deadline - time.monotonic())
            if delay <= 0:
                break
            await asyncio.sleep(delay)
            try:
                return await call()
            except RedisError as exc:
                if not resendable(exc):
                    raise self.error(what, exc) from exc
                failure = exc
        raise self.error(what, failure) from failure

    def error(self, what: str, exc: RedisError) -> StoreError:
        """A StoreError naming the server (password masked) and what failed."""
        reason = _PIPELINE_PREFIX.sub("", str(exc))
        return StoreError(f"Redis store {self.where}: could not {what}: {reason}")


def describe(url: str, client: Redis | RedisCluster | None) -> str:
    """Where the store's data is, for messages: its URL, or the given client's server."""
    if client is None:
        return mask_url(url)
    if isinstance(client, RedisCluster):
        startup: Any = getattr(client.nodes_manager, "startup_nodes", {})
        return f"redis-cluster://{','.join(startup) or '?'}"
    try:
        kwargs: dict[str, Any] = dict(client.connection_pool.connection_kwargs)
    except AttributeError:  # a client of another kind
        return f"<{type(client).__name__}>"
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
