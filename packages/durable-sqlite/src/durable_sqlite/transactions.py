"""A transaction's body runs on either connection through one small interface, :class:`Tx`.

A body is written once, as an ``async`` function of a :class:`Tx`. On the fast
connection every ``await`` completes at once, so :func:`complete_now` drives the whole
body without yielding to the loop and nothing else can interleave with it; on the
patient (aiosqlite) connection each statement is a hand-off to its thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import aiosqlite

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any] | Mapping[str, Any]


class Tx(Protocol):
    """What a transaction body may do: run statements and read their rows."""

    async def execute(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def changes(self, sql: str, params: Params = ()) -> int:
        """Run a statement that returns no rows; how many rows it wrote (inserted,
        updated or deleted). For "did it write?", cheaper than ``RETURNING 1``, which
        SQLite runs as a program of its own (~40,000 more instructions a statement)."""
        ...


class FastTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def changes(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount


class PatientTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> list[Row]:
        return rows_of(await self._conn.execute_fetchall(sql, params))

    async def changes(self, sql: str, params: Params = ()) -> int:
        # The cursor is left unclosed: a statement that returns no rows is reset by the
        # time execute returns, so closing it (one more hand-off to the thread) frees
        # nothing its garbage collection would not.
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount


def rows_of(rows: Any) -> list[Row]:
    return [tuple(row) for row in rows]


def complete_now(awaitable: Awaitable[T]) -> T:
    """Drive a coroutine that never suspends (a fast-connection transaction body)."""
    coro = awaitable.__await__()
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a fast transaction body awaited something other than its Tx")


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)
