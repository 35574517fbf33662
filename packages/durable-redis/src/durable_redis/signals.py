"""Waking workflows that wait for a signal, or for any change of their run, through one
pub/sub subscription per store.

The ``set_signal`` script publishes ``[run id, name]`` on the prefix's channel in the
same call that stores the payload, and ``request_cancel`` publishes ``[run id]``. Each
store keeps one subscription to that channel (a dedicated connection, opened the first
time a workflow waits) and wakes its waiters from it: a signal's waiters on its own
message, a run's change waiters (``wait_for_change``) on either. So a delivery or a
cancellation from any process wakes the run within milliseconds. (A listener of a
version before change waits ignores ``[run id]``, which is no ``[run id, name]``.)

Pub/sub is at most once: a message published while the subscription is down (the
server restarting, say) is lost. So every (re)subscription wakes every waiter to look
at the store again, and a waiter that never hears anything still returns after its
``max_wait``: the engine then polls, as it does with a store without notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis

from durable.waits import raise_if_cancel_lost

log = logging.getLogger("durable.redis")

#: Who waits: (run id, signal name), or (run id, None) for any change of the run.
WaitKey = tuple[str, str | None]


def signal_message(run_id: str, name: str) -> str:
    """What ``set_signal`` publishes: signal ``name`` of the run was delivered."""
    return json.dumps([run_id, name])


def change_message(run_id: str) -> str:
    """What ``request_cancel`` publishes: the run changed (no signal of it)."""
    return json.dumps([run_id])


class SignalListener:
    """One subscription to ``channel``, dispatching its messages to local waiters."""

    def __init__(self, client: Redis, channel: str, where: str) -> None:
        self._client = client
        self._channel = channel
        self._where = where  # the masked URL, for log messages
        self._waiters: dict[WaitKey, set[asyncio.Future[None]]] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The client offers no pub/sub (an asyncio RedisCluster before redis-py 8): waiters poll.
        self._unsupported = False

    async def wait(
        self,
        run_id: str,
        name: str | None,
        max_wait: float,
        delivered: Callable[[], Awaitable[bool]],
    ) -> None:
        """Return once ``run_id``'s signal ``name`` may be there (``name`` None: once the
        run may have changed), or after ``max_wait`` s.

        ``delivered`` checks the store; it runs once the subscription is live, which
        closes the gap between the engine's own check and the subscription.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        if self._unsupported:
            await asyncio.sleep(max_wait)
            return
        self._start()
        key = (run_id, name)
        woken: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(key, set()).add(woken)
        try:
            if not self._subscribed.is_set():
                # asyncio.wait, not wait_for: before Python 3.12, wait_for could swallow
                # a cancellation that came as the event was set, and then this waiter
                # would sleep out all of max_wait.
                subscribed = loop.create_task(self._subscribed.wait())
                try:
                    await asyncio.wait({subscribed}, timeout=deadline - loop.time())
                finally:
                    subscribed.cancel()
            if self._subscribed.is_set() and await delivered():
                return
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait({woken}, timeout=remaining)
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[key]

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake_all()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name=f"durable-redis signals {self._channel}"
            )

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            try:
                pubsub: Any = _loose(self._client).pubsub()
            except (AttributeError, NotImplementedError):
                log.warning("%s offers no pub/sub: waiting workflows poll", self._where)
                self._unsupported = True
                self._wake_all()
                return
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    raise_if_cancel_lost()  # a cancellation redis-py swallowed
                    # A bounded wait, not timeout=None: before redis-py 8 a blocking
                    # read of a subscription gave up after socket_timeout.
                    message: Any = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
                        backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "signal subscription to %s lost (%s); waiting workflows poll until it "
                    "is back", self._where, exc,
                )  # fmt: skip
            finally:
                self._subscribed.clear()
                self._wake_all()  # each waiter looks at the store, then waits again
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = _text(message.get("type"))
        if kind == "subscribe":
            if self._subscribed.is_set():
                # Sent again after redis-py reconnected on its own: deliveries made in
                # between were not heard, so every waiter looks at the store again.
                self._wake_all()
            self._subscribed.set()
        elif kind == "message":
            try:
                decoded: object = json.loads(_text(message.get("data")))
            except ValueError:
                return  # not ours: someone else publishing on the channel
            words = cast("list[object]", decoded) if isinstance(decoded, list) else []
            if len(words) not in (1, 2):
                return  # not ours either
            run_id = str(words[0])
            if len(words) == 2:  # a signal: its waiters, and the run's change waiters
                self._wake(self._waiters.get((run_id, str(words[1])), ()))
            self._wake(self._waiters.get((run_id, None), ()))

    def _wake_all(self) -> None:
        for waiters in list(self._waiters.values()):
            self._wake(waiters)

    @staticmethod
    def _wake(waiters: set[asyncio.Future[None]] | tuple[()]) -> None:
        for woken in list(waiters):
            if not woken.done():
                woken.set_result(None)


def _loose(value: object) -> Any:
    """redis-py objects whose annotations are partly untyped, as ``Any``."""
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
