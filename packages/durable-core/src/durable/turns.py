"""Durable's share of the event loop: no turn of the loop is held for long.

Everything made ready in one turn of an asyncio loop runs before the loop looks at
anything else, timers and sockets included. Steps that never wait (a fast checkpoint,
a replay) would keep one workflow on the loop for its whole length, and a thousand
workflows started at once would each run up to their first wait in the same turn.

So workflow starts and step boundaries pass :func:`take_turn`. While the current turn
has spent less than :data:`TURN_BUDGET` seconds on durable work, they go on; after
that they wait in line, first come first served. Early in each later turn, a few of
them are let go (they run in the turn after): as many as kept recent turns near the
budget, halving when a turn ran long, growing when it ran short. A task arriving in a
turn with budget left goes on even while others wait: they are already on their way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

#: Seconds of durable work a turn of the loop may take before the rest waits. A turn
#: also holds work the budget does not bound (a group commit, ~0.25 ms, and the tasks
#: it wakes), so under load turns last ~2-3x this; 0.15 ms keeps C200's stalls under
#: ~0.8 ms where 0.2 ms gave ~0.95, for ~6% of its throughput.
TURN_BUDGET = 0.00015
#: Most waiting tasks let go in one turn.
MOST_RELEASED = 1024


class _Turns:
    """The waiting line of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: float | None = None  # when durable work began in this turn
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.released_per_turn = 4
        self._armed = False

    def must_wait(self) -> bool:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
            self._arm()
            return False
        return now - self.started >= TURN_BUDGET

    async def wait(self) -> None:
        ticket = self.loop.create_future()
        self.waiting.append(ticket)
        self._arm()
        await ticket

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            self.loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        # Runs early in the turn after the one that armed it: the end of that turn,
        # and (while others wait) the start of this one.
        self._armed = False
        now = time.perf_counter()
        if self.started is not None:
            spent = now - self.started
            if spent > 2 * TURN_BUDGET:
                self.released_per_turn = max(1, self.released_per_turn // 2)
            else:
                grown = self.released_per_turn + 1 + self.released_per_turn // 4
                self.released_per_turn = min(MOST_RELEASED, grown)
        self.started = None
        released = 0
        while self.waiting and released < self.released_per_turn:
            ticket = self.waiting.popleft()
            if not ticket.done():  # a waiter cancelled meanwhile is skipped
                ticket.set_result(None)
                released += 1
        if self.waiting:
            # This turn counts from here: what ran before the released tasks (a group
            # commit, tasks it woke) uses up its budget too.
            self.started = now
            self._arm()


_local = threading.local()


def line_to_wait_in(loop: asyncio.AbstractEventLoop | None = None) -> _Turns | None:
    """The waiting line of ``loop`` (by default the running one) if this turn has no
    time left for durable work, else None.

    For the engine's hot paths: ``if (line := line_to_wait_in()) is not None: await
    line.wait()`` is :func:`take_turn` without a coroutine made on every step. (A caller
    that has the running loop passes it: on Python 3.11 asking for it is a system call.)
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    turns: _Turns | None = getattr(_local, "turns", None)
    if turns is None or turns.loop is not loop:
        turns = _local.turns = _Turns(loop)
    return turns if turns.must_wait() else None


async def take_turn() -> None:
    """Go on if this turn of the loop has time left for durable work, else wait in line."""
    if (line := line_to_wait_in()) is not None:
        await line.wait()
