"""Concurrent checkpoints share round trips: one statement and one commit for many.

Under light load every checkpoint is sent alone, at once. When as many statements
are in flight as the pool has connections, new checkpoints queue, and each statement
that comes back takes the queue with it in one batched statement. So throughput
grows with load (a commit, and its fsync, per batch rather than per step) while a
lone workflow pays nothing for it. Every checkpoint still waits for the commit of its
own batch before the workflow goes on, and each is fenced on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The most checkpoints one batched statement carries.
MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class Checkpoint:
    run_id: str
    step_id: str
    value: str
    attempt: int
    owner: str | None


#: The store's answer for a checkpoint: (the writer holds the run or is unfenced,
#: cancellation was requested, the run's status or None without a record).
Outcome = tuple[bool, bool, str | None]


@dataclass
class _Waiting:
    checkpoint: Checkpoint
    outcome: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """Sends checkpoints alone while connections are free, in batches once they are not."""

    def __init__(
        self,
        send_one: Callable[[Checkpoint], Awaitable[Outcome]],
        send_many: Callable[[Sequence[Checkpoint]], Awaitable[Sequence[Outcome]]],
        in_flight_limit: Callable[[], int],
    ) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._limit = in_flight_limit
        self._queue: list[_Waiting] = []
        self._in_flight = 0
        self._sending: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def checkpoint(self, checkpoint: Checkpoint) -> Outcome:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a second asyncio.run()): what the old one had in flight
            # will never come back, and its queue is its own.
            self._loop, self._queue, self._in_flight, self._sending = loop, [], 0, set()
        if self._in_flight < self._limit() and not self._queue:
            self._in_flight += 1
            try:
                return await self._send_one(checkpoint)
            finally:
                self._in_flight -= 1
                self._send_queue()
        waiting = _Waiting(checkpoint)
        self._queue.append(waiting)
        return await waiting.outcome

    def _send_queue(self) -> None:
        if self._queue and self._in_flight < self._limit():
            batch = self._take_batch()
            self._in_flight += 1
            self._start(self._send(batch))

    def _start(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(sending)
        self._sending.add(task)  # referenced until done: a task nobody holds may vanish
        task.add_done_callback(self._sending.discard)

    def _take_batch(self) -> list[_Waiting]:
        # At most one checkpoint per (run, step) in a statement: a step written twice
        # at once (never by the engine, perhaps by a user's store calls) waits a turn.
        batch: list[_Waiting] = []
        seen: set[tuple[str, str]] = set()
        rest: list[_Waiting] = []
        for waiting in self._queue:
            key = (waiting.checkpoint.run_id, waiting.checkpoint.step_id)
            if len(batch) >= MAX_BATCH or key in seen or waiting.outcome.done():
                if not waiting.outcome.done():  # a caller cancelled: nothing to send
                    rest.append(waiting)
                continue
            seen.add(key)
            batch.append(waiting)
        self._queue = rest
        return batch

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                outcomes: Sequence[Outcome] = [await self._send_one(batch[0].checkpoint)]
            else:
                outcomes = await self._send_many([w.checkpoint for w in batch])
        except BaseException as exc:
            # A batch that failed (a bad value of one step, a store error) is sent
            # again one checkpoint at a time, so that one step's error is its own.
            self._in_flight -= 1
            if len(batch) == 1 or isinstance(exc, asyncio.CancelledError):
                for waiting in batch:
                    _fail(waiting, exc)
            else:
                for waiting in batch:
                    self._start(self._alone(waiting))
            self._send_queue()
            return
        self._in_flight -= 1
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if not waiting.outcome.done():
                waiting.outcome.set_result(outcome)
        self._send_queue()

    async def _alone(self, waiting: _Waiting) -> None:
        self._in_flight += 1
        try:
            outcome = await self._send_one(waiting.checkpoint)
        except BaseException as exc:
            _fail(waiting, exc)
        else:
            if not waiting.outcome.done():
                waiting.outcome.set_result(outcome)
        finally:
            self._in_flight -= 1
            self._send_queue()


def _fail(waiting: _Waiting, exc: BaseException) -> None:
    if not waiting.outcome.done():
        waiting.outcome.set_exception(exc)
