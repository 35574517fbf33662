"""Two connections to one file: a fast one on the event loop, a patient one off it.

A WAL commit with ``synchronous=NORMAL`` takes ~10-15 µs here, while handing a call to
a thread and back takes ~85 µs. So every statement is first tried synchronously on the
event loop's thread, on a connection that never waits for a lock (``busy_timeout=0``).
Only when that attempt finds the database busy (another process is writing), or when
an fsync must happen (``durability="full"``), does the transaction go to an aiosqlite
connection that waits in its own thread. WAL checkpoints also run on that thread, so
the loop never waits for the disk.

A transaction is written once, as an ``async`` function of a :class:`Tx`; on the fast
connection every ``await`` completes at once, so the whole transaction runs without
yielding to the loop and nothing else can interleave with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import aiosqlite

from durable.faults import fault_point

log = logging.getLogger("durable.sqlite")

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any] | Mapping[str, Any]

#: Commits between two background WAL checkpoints.
CHECKPOINT_EVERY = 1000


class Tx(Protocol):
    """What a transaction body may do: run statements and read their rows."""

    async def execute(self, sql: str, params: Params = ()) -> list[Row]: ...


class _FastTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()


class _PatientTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return _rows(await self._conn.execute_fetchall(sql, params))


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class Database:
    """The connections of one store, and the rules for using them."""

    def __init__(
        self, path: str, *, synchronous: str, busy_timeout: float, read_only: bool
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.in_memory = path == ":memory:"
        # fsyncs must never stall the loop: with FULL every commit takes the thread.
        self.writes_on_loop = synchronous == "NORMAL" or self.in_memory
        self._fast: sqlite3.Connection | None = None
        self._patient: aiosqlite.Connection | None = None
        self._patient_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    # -- opening and closing ------------------------------------------------------------

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open the fast connection and run ``prepare`` (the migration) in a thread."""
        self._fast = await asyncio.to_thread(self._open_fast, prepare)

    def _connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        if self.in_memory:
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if self.read_only:
            uri = f"file:{_quote(self.path)}?mode=ro"
            return sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=check_same_thread
            )
        _create_private(self.path)
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=check_same_thread)

    def _configure(self, conn: sqlite3.Connection, busy_ms: int) -> None:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not self.read_only and not self.in_memory:
            _enable_wal(conn, self.busy_timeout)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Checkpoints run in the background (see _maybe_checkpoint), never inside a commit.
        conn.execute("PRAGMA wal_autocheckpoint = 0")

    def _open_fast(self, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        conn = self._connect(check_same_thread=False)
        try:
            self._configure(conn, int(self.busy_timeout * 1000))
            prepare(conn)
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _patient_connection(self) -> aiosqlite.Connection:
        if self._patient is None:
            target = f"file:{_quote(self.path)}?mode=ro" if self.read_only else self.path
            patient = aiosqlite.connect(target, isolation_level=None, uri=self.read_only)
            _stop_at_exit(patient)
            conn = await patient
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            await conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._patient = conn
        return self._patient

    async def close(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checkpoint
            self._checkpoint = None
        if self._patient is not None:
            patient, self._patient = self._patient, None
            await patient.close()
        if self._fast is not None:
            fast, self._fast = self._fast, None
            fast.close()

    @property
    def is_open(self) -> bool:
        return self._fast is not None

    @property
    def fast(self) -> sqlite3.Connection:
        if self._fast is None:
            raise RuntimeError("the store is not set up (or was closed)")
        return self._fast

    # -- running statements --------------------------------------------------------------

    async def read(self, sql: str, params: Params = ()) -> list[Row]:
        """Rows of a query; WAL readers do not wait for writers, so this rarely leaves the loop."""
        try:
            return self.fast.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or self.in_memory:
                raise
        async with self._patient_turn() as conn:
            return _rows(await conn.execute_fetchall(sql, params))

    async def write(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``body`` in one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        if self.writes_on_loop:
            conn = self.fast
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or self.in_memory:
                    raise
            else:
                try:
                    result = _complete_now(body(_FastTx(conn)))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                fault_point("after-commit")
                self._committed()
                return result
        # Shielded: a caller cancelled mid-transaction must not leave it open. The
        # outcome is then unknown to that caller, as with any cancelled commit.
        return await asyncio.shield(self._write_patiently(body))

    async def _write_patiently(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._patient_turn() as conn:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await body(_PatientTx(conn))
                await conn.execute("COMMIT")
                fault_point("after-commit")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise
        self._committed()
        return result

    @contextlib.asynccontextmanager
    async def _patient_turn(self) -> AsyncGenerator[aiosqlite.Connection]:
        loop = asyncio.get_running_loop()
        if self._patient_lock is None or self._lock_loop is not loop:
            self._patient_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._patient_lock:
            yield await self._patient_connection()

    def _committed(self) -> None:
        self._commits += 1
        due = self._commits % CHECKPOINT_EVERY == 0 and not self.in_memory
        if due and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            async with self._patient_turn() as conn:
                # RESTART, not PASSIVE: under steady writes a passive checkpoint never
                # catches up, and the WAL file would grow without bound.
                await conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except Exception:
            log.debug("background WAL checkpoint of %s failed", self.path, exc_info=True)


def _enable_wal(conn: sqlite3.Connection, patience: float) -> None:
    """Switch the file to WAL mode, once. Runs in a thread: it may sleep.

    Changing the journal mode needs a lock that the busy handler does not wait for, so
    a file that another process is setting up at this moment is retried by hand.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _rows(rows: Any) -> list[Row]:
    return [tuple(row) for row in rows]


def _complete_now(awaitable: Awaitable[T]) -> T:
    """Drive a coroutine that never suspends (a fast-connection transaction body)."""
    coro = awaitable.__await__()
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a fast transaction body awaited something other than its Tx")


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (SQLite would use the umask)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _stop_at_exit(conn: aiosqlite.Connection) -> None:
    """Stop an unclosed connection's thread at interpreter exit instead of hanging.

    aiosqlite's worker is not a daemon thread; ``threading`` runs these hooks before it
    joins such threads (``concurrent.futures`` relies on the same hook).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return
    ref = weakref.ref(conn)

    def stop() -> None:
        alive = ref()
        if alive is not None:
            alive.stop()  # pyright: ignore[reportUnknownMemberType] - untyped future

    register(stop)
