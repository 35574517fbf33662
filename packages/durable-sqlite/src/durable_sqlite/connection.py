"""Two connections to one file: a fast one on the event loop, a patient one off it.

A WAL commit with ``synchronous=NORMAL`` takes ~10-15 µs here, while handing a call to
a thread and back takes ~85 µs. So every statement is first tried synchronously on the
event loop's thread, on a connection that never waits for a lock (``busy_timeout=0``).
Only when that attempt finds the database busy (another process is writing), when an
fsync must happen (``durability="full"``) or while one runs (before a WAL checkpoint),
does the transaction go to an aiosqlite connection that waits in its own thread. WAL
checkpoints also run off the loop, so the loop never waits for the disk. Writes of
concurrent tasks share transactions (:mod:`durable_sqlite.commits`).

SQLite goes on writing to the file it opened even once that file is deleted, or another
file is put at its path: runs would "complete" into an unlinked inode that nobody can
open again. So every transaction, read or write, on either connection, checks first
that the file at the path is still the one opened (same ``st_dev``/``st_ino``), with an
``os.stat`` at most every :data:`FILE_CHECK_INTERVAL` seconds, and from the first check
that fails on, every transaction raises :class:`~durable.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aiosqlite

from durable.errors import StoreError

from .commits import CommitQueue
from .transactions import Params, Row, Tx, is_busy, rows_of

__all__ = ["Database", "Params", "Row", "Tx"]

log = logging.getLogger("durable.sqlite")

T = TypeVar("T")

#: Writes committed between two background WAL checkpoints. With the WAL flushed
#: beforehand, a checkpoint holds this process's writes for ~3-8 ms (mostly the
#: database file's fsync): paid every 4,000 writes, not every 1,000, for a WAL of up
#: to ~25-35 MB, not ~6 MB.
CHECKPOINT_EVERY = 4000
#: A WAL still this many pages long after a checkpoint is restarted (~16 MB of 4 KiB).
RESTART_AT_PAGES = 4000
#: Before a checkpoint holds writes, the WAL is flushed to disk beside them, again and
#: again while a flush takes longer than SYNCED_ENOUGH seconds, at most SYNC_ROUNDS times.
SYNC_ROUNDS = 4
SYNCED_ENOUGH = 0.005
#: Seconds between two checks that the file at the store's path is still the one its
#: connections opened. A check is an ``os.stat`` (~1 µs, against ~15 µs for a commit),
#: made by the first transaction that begins once this much time has passed since the
#: last one: a store in use costs a clock read per transaction, and a deleted or
#: replaced file is noticed within this time, by the next transaction (which raises
#: before it writes anything). Commits made in that window went to the lost file.
FILE_CHECK_INTERVAL = 0.05


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
        self._commits_on_loop = synchronous == "NORMAL" or self.in_memory
        #: True while the WAL is flushed to disk before a checkpoint: commits meanwhile
        #: go to the patient thread (see _sync_wal_beside_writes).
        self.flushing_wal = False
        self._fast: sqlite3.Connection | None = None
        self._patient: aiosqlite.Connection | None = None
        self._patient_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._writes = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._queue = CommitQueue(self)
        #: True while a WAL checkpoint runs: writes queue up until it ends.
        self.holding_writes = False
        # The file opened, by absolute path (a later chdir does not move it), its
        # (st_dev, st_ino), when to check it next (never: in memory, or not open yet),
        # and why it is lost once a check failed.
        self._file = path
        self._identity: tuple[int, int] | None = None
        self._next_check = math.inf
        self._lost: str | None = None

    # -- opening and closing ------------------------------------------------------------

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open the fast connection and run ``prepare`` (the migration) in a thread."""
        self._fast = await asyncio.to_thread(self._open_fast, prepare)
        self._lost = None
        if self._identity is not None:
            self._next_check = time.monotonic() + FILE_CHECK_INTERVAL

    def _connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        if self.in_memory:
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if self.read_only:
            uri = f"file:{_quote(self._file)}?mode=ro"
            return sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=check_same_thread
            )
        _create_private(self._file)
        return sqlite3.connect(
            self._file, isolation_level=None, check_same_thread=check_same_thread
        )

    def _configure(self, conn: sqlite3.Connection, busy_ms: int) -> None:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not self.read_only and not self.in_memory:
            _enable_wal(conn, self.busy_timeout)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Checkpoints run in the background (see _maybe_checkpoint), never inside a commit.
        conn.execute("PRAGMA wal_autocheckpoint = 0")

    def _open_fast(self, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        self._file = self.path if self.in_memory else os.path.abspath(self.path)
        conn = self._connect(check_same_thread=False)
        try:
            # Right after SQLite opened the file (it holds it open from now on).
            self._identity = None if self.in_memory else _identity(self._file)
            self._configure(conn, int(self.busy_timeout * 1000))
            prepare(conn)
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _patient_connection(self) -> aiosqlite.Connection:
        if self._patient is None:
            # Never creates a file: it opens the fast connection's file, or fails.
            mode = "ro" if self.read_only else "rw"
            target = self._file if self.in_memory else f"file:{_quote(self._file)}?mode={mode}"
            self.check_file()
            patient = aiosqlite.connect(target, isolation_level=None, uri=not self.in_memory)
            _stop_at_exit(patient)
            conn = await patient
            try:
                self.check_file()  # the file opened is the fast connection's
            except StoreError:
                await conn.close()
                raise
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            await conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._patient = conn
        return self._patient

    async def close(self) -> None:
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is not None and checkpoint.get_loop() is asyncio.get_running_loop():
            # wait, not await: the checkpoint's own failure is not close's, but a
            # cancellation of the caller still is. (One begun on an earlier event loop
            # ended with it.)
            await asyncio.wait([checkpoint])
        if self._fast is not None:
            await self._queue.drain()
        if self._patient is not None:
            patient, self._patient = self._patient, None
            await patient.close()
        if self._fast is not None:
            fast, self._fast = self._fast, None
            fast.close()

    @property
    def writes_on_loop(self) -> bool:
        """Whether a commit may run on the loop's thread now, rather than the patient one."""
        return self._commits_on_loop and not self.flushing_wal

    @property
    def is_open(self) -> bool:
        return self._fast is not None

    @property
    def times_busy(self) -> int:
        """How many times a write found the file locked by another connection."""
        return self._queue.times_busy

    @property
    def fast(self) -> sqlite3.Connection:
        """The fast connection, taken by every transaction on the loop's thread.

        Raises :class:`StoreError` once the file at the path is no longer the one
        opened (checked at most every :data:`FILE_CHECK_INTERVAL` seconds).
        """
        if self._fast is None:
            raise RuntimeError("the store is not set up (or was closed)")
        if time.monotonic() >= self._next_check:
            self.check_file()
        return self._fast

    def check_file(self) -> None:
        """Raise :class:`StoreError` if the file at the path is not the one opened.

        Once it is not, every later transaction fails too (until the store is opened
        again): what would be written could never be read.
        """
        if self._identity is None:
            return
        if self._lost is None:
            self._lost = _lost(self._file, self._identity)
        if self._lost is not None:
            self._next_check = -math.inf  # every transaction from now on fails
            raise StoreError(f"SQLite store {self.path}: {self._lost}")
        self._next_check = time.monotonic() + FILE_CHECK_INTERVAL

    # -- running statements --------------------------------------------------------------

    async def read(self, sql: str, params: Params = ()) -> list[Row]:
        """Rows of a query; WAL readers do not wait for writers, so this rarely leaves the loop."""
        try:
            return self.fast.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or self.in_memory:
                raise
        async with self.patient_turn() as conn:
            return rows_of(await conn.execute_fetchall(sql, params))

    def write(self, body: Callable[[Tx], Awaitable[T]]) -> Coroutine[Any, Any, T]:
        """Run ``body`` in a write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        Awaited, it returns once the transaction is committed, which it may share with
        the writes of other tasks (see :mod:`durable_sqlite.commits`). (The queue's own
        coroutine, not one wrapping it: one frame fewer on every write.)
        """
        return self._queue.write(body)

    @contextlib.asynccontextmanager
    async def patient_turn(self) -> AsyncGenerator[aiosqlite.Connection]:
        """The patient connection, for one user at a time."""
        loop = asyncio.get_running_loop()
        if self._patient_lock is None or self._lock_loop is not loop:
            self._patient_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._patient_lock:
            conn = await self._patient_connection()
            if time.monotonic() >= self._next_check:
                self.check_file()
            yield conn

    def committed(self, writes: int) -> None:
        """Count committed writes; every CHECKPOINT_EVERY, checkpoint the WAL off the loop."""
        before, self._writes = self._writes, self._writes + writes
        due = self._writes // CHECKPOINT_EVERY > before // CHECKPOINT_EVERY and not self.in_memory
        if due and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            await self._sync_wal_beside_writes()
            async with self.patient_turn() as conn:  # opened, if need be, before holding
                await self._checkpoint_holding_writes(conn)
        except Exception:
            log.debug("background WAL checkpoint of %s failed", self.path, exc_info=True)

    async def _sync_wal_beside_writes(self) -> None:
        # A checkpoint's time is nearly all its fsync of the WAL (~110 of ~115 ms for
        # the WAL of 4,000 writes here), so the WAL is flushed first, in a thread, each
        # round flushing what the writes of the one before appended, and the checkpoint
        # then holds the writes for ~3-8 ms instead. Writes meanwhile go to the patient
        # thread: a commit appending to a WAL that is being fsynced blocked for 12-17
        # ms now and then (the filesystem's journal), which must not happen on the loop.
        # A flush that fails is left to the checkpoint's own fsync to report (Linux
        # reports a device error to every descriptor open when it happened).
        wal = self.path + "-wal"
        self.flushing_wal = True
        try:
            for _ in range(SYNC_ROUNDS):
                started = time.monotonic()
                try:
                    await asyncio.to_thread(_flush_to_disk, wal)
                except OSError:
                    log.debug("flushing the WAL of %s failed", self.path, exc_info=True)
                    return
                if time.monotonic() - started < SYNCED_ENOUGH:
                    return
        finally:
            self.flushing_wal = False
            self._queue.resume()

    async def _checkpoint_holding_writes(self, conn: aiosqlite.Connection) -> None:
        # This process's writes wait in their queue meanwhile: a commit made on the
        # loop's thread during a checkpoint can block in SQLite's lock retries or in the
        # kernel behind its fsyncs for milliseconds (3-15 ms measured), while a queued
        # write costs the loop nothing. With no writer of ours, PASSIVE usually copies
        # the whole WAL and the next write starts it over; RESTART, for a WAL that other
        # processes keep growing, also waits for their readers.
        self.holding_writes = True
        try:
            rows = await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            _, wal_pages, copied = next(iter(rows))
            if copied < wal_pages and wal_pages >= RESTART_AT_PAGES:
                await conn.execute("PRAGMA wal_checkpoint(RESTART)")
        finally:
            self.holding_writes = False
            self._queue.resume()


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


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _lost(path: str, identity: tuple[int, int]) -> str | None:
    """Why the file at ``path`` is not the file ``identity`` names, or None if it is."""
    try:
        found = _identity(path)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError:
        return None  # cannot tell (permissions, I/O): SQLite reports its own errors
    if found == identity:
        return None
    what = "deleted (or moved away)" if found is None else "replaced by another file"
    return (
        f"the database file was {what} while the store had it open; no more writes "
        "go to the old file (they would be lost with it)"
    )


def _flush_to_disk(path: str) -> None:
    """fsync a file, if it exists."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
