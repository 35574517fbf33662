"""Group commit: concurrent writes share transactions, and no commit holds the loop long.

A task writing alone commits each write at once on the loop's thread (~15 µs, as fast
as a commit gets). Once a second task writes during the same turn of the event loop,
writes queue up, and the queue is committed from the next turn on: in each turn, one
transaction holding as many writes as fit in :data:`SLICE` seconds (~50 checkpoints).
While writes stay concurrent, the first writer of each turn queues too, until a batch
holds a single write. So 1,000 concurrent workflows make a few dozen commits per round
of steps instead of 1,000, and the loop is never held by one commit for more than a
fraction of a millisecond. When the file is busy (another process is writing),
durability is ``"full"`` or the WAL is being flushed before a checkpoint, a batch goes
to the patient connection's thread instead.

A write is an async body of a :class:`~durable_sqlite.connection.Tx`. A body that raises
rolls its transaction back; it alone gets the error, and the other writes of the batch
are committed again without it. A write whose caller was cancelled before its batch
began is dropped, never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from durable.store import after_commit

from .transactions import FastTx, PatientTx, complete_now, is_busy

if TYPE_CHECKING:
    from .connection import Database
    from .transactions import Tx

T = TypeVar("T")
Body = Callable[["Tx"], Awaitable[T]]

#: Seconds of statements one transaction on the loop's thread may take before it commits.
SLICE = 0.00015
#: Writes in one transaction of the patient thread (it holds the file's write lock).
PATIENT_BATCH = 32
#: While another process holds the write lock, the queue tries again on the loop's
#: thread after these waits (doubling), for up to BUSY_ON_LOOP seconds: other writers
#: commit in well under a millisecond, and a try costs ~5 µs where a hand-off to the
#: patient thread costs ~85 µs and contends for the GIL. Then the patient thread waits
#: (a busy_timeout shorter than BUSY_ON_LOOP shortens the tries on the loop).
FIRST_RETRY = 0.0005
LAST_RETRY = 0.004
BUSY_ON_LOOP = 0.05


class _Busy:
    """What a write tried at once returns when another process holds the file."""


BUSY = _Busy()


class _Write:
    __slots__ = ("body", "done", "result")

    def __init__(self, body: Body[Any], done: asyncio.Future[Any]) -> None:
        self.body = body
        self.done = done
        self.result: Any = None


class CommitQueue:
    """Commits the writes of one :class:`Database`, alone or in groups."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[_Write] = deque()
        self._flush_scheduled = False
        self._patient: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._busy_since: float | None = None
        self._busy_tries = 0
        #: How many times a batch found the file locked by another connection.
        self.times_busy = 0
        # The task that committed at once during this turn of the loop: any other task
        # writing in the same turn means writes are concurrent, and they queue.
        self._turn_writer: asyncio.Task[Any] | None = None
        # Set when a second task wrote in a turn; cleared by a batch of one write. Meanwhile
        # the first writer of a turn queues too, so a turn's writes share one commit.
        self._concurrent = False

    async def write(self, body: Body[T]) -> T:
        """Run ``body`` in a write transaction and return its result once committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        if self._may_commit_now():
            task = asyncio.current_task(loop)
            if self._turn_writer is None:
                self._turn_writer = task
                loop.call_soon(self._end_turn)
            if self._turn_writer is task:
                result = self._commit_alone(body)
                if result is not BUSY:
                    return cast(T, result)
            else:
                self._concurrent = True
        done: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Write(body, done))
        self._schedule_flush()
        return await done

    def _may_commit_now(self) -> bool:
        db = self._db
        return db.writes_on_loop and not (
            self._concurrent or self._pending or self._patient or db.holding_writes
        )

    def resume(self) -> None:
        """Commit what queued up while writes were held (a WAL checkpoint)."""
        if self._pending and self._loop is not None:
            self._schedule_flush()

    async def drain(self) -> None:
        """Commit every queued write (before the connections close)."""
        if self._loop is not asyncio.get_running_loop():
            return  # queued on a loop that is gone: nobody waits for them
        while self._pending or self._patient is not None:
            if self._patient is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._patient)
            elif self._retry is not None or self._db.holding_writes:
                await asyncio.sleep(FIRST_RETRY)
            else:
                self._flush()
                await asyncio.sleep(0)

    # -- on the loop's thread ---------------------------------------------------------

    def _commit_alone(self, body: Body[T]) -> T | _Busy:
        conn = self._db.fast
        if not self._begin(conn):
            return BUSY
        try:
            result = complete_now(body(FastTx(conn)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        after_commit()
        self._db.committed(1)
        return result

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._patient is not None or self._retry is not None or self._db.holding_writes:
            return  # the patient batch, the retry or the WAL restart flushes next
        self._drop_abandoned()
        if not self._pending:
            return
        if not self._db.writes_on_loop:
            self._commit_off_loop()
            return
        try:
            done_here = self._commit_slice()
        except Exception as exc:  # BEGIN or COMMIT failed: every taken write fails
            done_here = True
            _fail_all(self._pending, exc)
            self._pending.clear()
        if done_here:
            self._busy_since = None
        elif not self._retry_on_loop():
            self._commit_off_loop()
        if self._pending and self._retry is None and self._patient is None:
            self._schedule_flush()

    def _commit_off_loop(self) -> None:
        assert self._loop is not None
        self._patient = self._loop.create_task(self._commit_patiently())

    def _retry_on_loop(self) -> bool:
        """Try a busy file again soon on the loop's thread; False once that took too long."""
        self.times_busy += 1
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since, self._busy_tries = now, 0
        if now - self._busy_since > min(BUSY_ON_LOOP, self._db.busy_timeout):
            self._busy_since = None
            return False
        delay = min(LAST_RETRY, FIRST_RETRY * 2**self._busy_tries)
        self._busy_tries += 1
        assert self._loop is not None
        self._retry = self._loop.call_later(delay, self._retry_now)
        return True

    def _retry_now(self) -> None:
        self._retry = None
        self._flush()

    def _commit_slice(self) -> bool:
        """Commit the queue's head on the loop's thread; False when the file is busy."""
        conn = self._db.fast
        if not self._begin(conn):
            return False
        taken: list[_Write] = []
        deadline = time.perf_counter() + SLICE
        try:
            # At least one write a turn, however late this thread got here.
            while self._pending and (not taken or time.perf_counter() < deadline):
                write = self._pending.popleft()
                if write.done.done():
                    continue
                taken.append(write)
                try:
                    write.result = complete_now(write.body(FastTx(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK")
                    taken.pop()
                    self._pending.extendleft(reversed(taken))  # written again next turn
                    _fail(write, exc)
                    return True
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _fail_all(taken, exc)
            return True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._pending.extendleft(reversed(taken))
            raise
        self._settle(taken)
        return True

    def _begin(self, conn: sqlite3.Connection) -> bool:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or self._db.in_memory:
                raise
            return False
        return True

    # -- on the patient thread --------------------------------------------------------

    async def _commit_patiently(self) -> None:
        batch: list[_Write] = []
        while self._pending and len(batch) < PATIENT_BATCH:
            write = self._pending.popleft()
            if not write.done.done():
                batch.append(write)
        try:
            async with self._db.patient_turn() as conn:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    for index, write in enumerate(batch):
                        try:
                            write.result = await write.body(PatientTx(conn))
                        except Exception as exc:
                            await conn.execute("ROLLBACK")
                            others = batch[:index] + batch[index + 1 :]
                            self._pending.extendleft(reversed(others))
                            batch = []
                            _fail(write, exc)
                            return
                    await conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                    raise
            self._settle(batch)
        except Exception as exc:
            _fail_all(batch, exc)
        except BaseException:
            for write in batch:
                write.done.cancel()
            raise
        finally:
            self._patient = None
            if self._pending:
                self._schedule_flush()

    # -- bookkeeping ----------------------------------------------------------------------

    def _settle(self, committed: list[_Write]) -> None:
        after_commit()
        self._db.committed(len(committed))
        if len(committed) == 1 and not self._pending:
            self._concurrent = False  # a lone writer again: it commits at once from now on
        for write in committed:
            if not write.done.done():
                write.done.set_result(write.result)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            assert self._loop is not None
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _end_turn(self) -> None:
        self._turn_writer = None

    def _drop_abandoned(self) -> None:
        while self._pending and self._pending[0].done.done():
            self._pending.popleft()

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        # Writes queued on another (finished) loop can never be awaited again.
        self._loop = loop
        self._pending.clear()
        self._flush_scheduled = False
        self._patient = None
        self._retry = None
        self._busy_since = None
        self._turn_writer = None
        self._concurrent = False


def _fail(write: _Write, exc: BaseException) -> None:
    if not write.done.done():
        write.done.set_exception(exc)


def _fail_all(writes: Iterable[_Write], exc: BaseException) -> None:
    for write in writes:
        _fail(write, exc)
