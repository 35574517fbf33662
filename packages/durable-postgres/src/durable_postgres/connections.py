"""Connections: a pool per event loop, retries across connection loss, clear errors.

A pool belongs to the event loop that made it, so the store keeps one per loop (a
second ``asyncio.run()`` gets a pool of its own; a user's pool is used as it is).

A dropped connection, a restarting server or a failover pause is retried for
``retry_seconds``, then fails with a :class:`~durable.errors.StoreError` naming the
cause. Before the store has ever connected, nothing is retried: a wrong password, an
unknown database or an unreachable host is reported at once. A statement whose
connection broke while it was in flight may or may not have committed: the operation
is run again with ``retrying=True``, and each operation then re-reads what it wrote
before it writes (see ``PostgresStore``): its outcome is read, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from durable.errors import StoreError
from durable.urls import mask_urls_in

T = TypeVar("T")

#: A connection of the store's: one of its own, or one lent by a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: Errors after which the same operation may succeed on a new connection.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was cut
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, crash, "cannot connect now"
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed" (a connection the server dropped)
    # A connection whose server went away while it was idle can be left in a state
    # where its next statement fails like this; it is dropped and the operation retried.
    asyncpg.exceptions.InternalClientError,
    OSError,  # refused, reset, unreachable
    TimeoutError,
)
#: Errors of opening a pool: any of the above, or one the server sent (a password).
CONNECT_FAILURES: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *TRANSIENT)
#: Errors of closing a pool cleanly; it is then dropped.
CLOSE_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *TRANSIENT)


#: An attempt is cut at statement_timeout, or where retry_seconds run out, but it gets
#: this long at least (retry_seconds=0 still tries once).
_LEAST_ATTEMPT_SECONDS = 1.0


#: Set while an attempt waits for a free connection of the pool (the attempt runs in
#: the caller's task, so the caller reads it after a timeout cut the attempt).
_waiting_for_pool: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "durable_postgres_waiting_for_pool", default=False
)


class PoolExhausted(TimeoutError):
    """Every connection of the pool stayed busy for the whole attempt (retried, as the
    timeout it is); an error then says so instead of blaming the server."""


def _server_settings(dsn: str | None, statement_timeout: float) -> dict[str, str]:
    """The server's own ``statement_timeout`` for the store's connections: the limit
    at which this side gives an attempt up and cuts its connection. A server does not
    notice a cut connection while its statement waits (for a lock, say), so without it
    the statement would go on, might still commit after the caller got its
    ``StoreError``, and each retry would leave one more such backend behind. A
    ``?statement_timeout=`` in the URL is the user's choice and kept."""
    if dsn is not None and "statement_timeout" in dict(parse_qsl(urlsplit(dsn).query)):
        return {}
    return {"statement_timeout": str(max(1, round(statement_timeout * 1000)))}


class Connector:
    """Gives operations a connection, and retries them across connection loss."""

    def __init__(
        self,
        dsn: str | None,
        *,
        pool: asyncpg.Pool | None,
        min_size: int,
        max_size: int,
        retry_seconds: float,
        connect_timeout: float,
        statement_timeout: float,
        shown_as: str,
    ) -> None:
        self._dsn = dsn
        self._own_pools = pool is None
        self._pool = pool
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._min_size, self._max_size = min_size, max_size
        self.retry_seconds = retry_seconds
        self._connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.shown_as = shown_as  # the masked DSN, for messages
        self._opening: asyncio.Lock | None = None
        #: A connection of the store's own pool kept out of it, for whichever operation
        #: finds it free (see _attempt).
        self._express: PoolConnectionProxy[Any] | None = None
        self._express_busy = False

    def max_size(self) -> int:
        """How many connections the pool lends at once."""
        if self._pool is not None and not self._own_pools:
            return self._pool.get_max_size()
        return self._max_size

    async def pool(self) -> asyncpg.Pool:
        """The pool of the running event loop, made on first use."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._pool_loop is loop:
            return pool
        if pool is not None and not self._own_pools:
            return self._check_pools_loop(pool, loop)
        if self._opening is None or self._pool_loop is not loop:
            self._opening, self._pool_loop = asyncio.Lock(), loop
            self._pool, self._express, self._express_busy = None, None, False
            self._abandon(pool)
        async with self._opening:
            if self._pool is None:
                self._pool = await self._make_pool()
        return self._pool

    def _check_pools_loop(
        self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop
    ) -> asyncpg.Pool:
        """The user's pool, on the loop it was made on; elsewhere its connections cannot
        work (asyncpg binds them to that loop), and only its maker can make another."""
        made_on: object = getattr(pool, "_loop", loop)  # asyncpg's Pool keeps it there
        if made_on is not loop:
            raise StoreError(
                f"{self.shown_as}: the asyncpg pool given to the store was made on another "
                "event loop (an earlier asyncio.run, another thread): asyncpg connections "
                "work only on their own loop. Make the pool on this loop and give the store "
                "that one, or give the store a DSN (it then makes a pool per loop)"
            )
        self._pool_loop = loop
        return pool

    async def _make_pool(self) -> asyncpg.Pool:
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                reset=_keep_session,
                server_settings=_server_settings(self._dsn, self.statement_timeout),
            )
        except CONNECT_FAILURES as exc:
            raise self.error("connect", exc) from None
        return pool

    async def listen_connection(self) -> Conn:
        """A connection held for LISTEN: one of its own, or one taken from the user's
        pool (it then holds one of that pool's connections until :meth:`hang_up`)."""
        if self._dsn is None:
            pool = await self.pool()
            if pool.get_max_size() < 2:  # holding its one connection would stop the store
                raise StoreError(f"{self.shown_as}: a pool of one connection has none to spare")
            return await pool.acquire(timeout=self._connect_timeout)
        connection: Conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        return connection

    async def hang_up(self, conn: Conn) -> None:
        """Close (or give back to the user's pool) a :meth:`listen_connection`."""
        if isinstance(conn, PoolConnectionProxy) and self._pool is not None:
            await self._pool.release(conn)
        else:
            await conn.close()

    async def run(
        self, what: str | Callable[[], str], op: Callable[[Conn, bool], Awaitable[T]]
    ) -> T:
        """``op(connection, retrying)`` on a pooled connection; retried on connection loss
        (``retrying`` True) for ``retry_seconds``, else a StoreError naming ``what`` (text,
        or a callable making it: only an error needs it)."""
        deadline = time.monotonic() + self.retry_seconds
        retrying = False
        delay = 0.02
        while True:
            pool = await self.pool()
            try:
                # A server that stops answering (a lost network, a frozen primary) closes
                # nothing: without a limit the statement would wait forever.
                left = max(deadline - time.monotonic(), _LEAST_ATTEMPT_SECONDS)
                _waiting_for_pool.set(False)
                async with asyncio.timeout(min(self.statement_timeout, left)):
                    return await self._attempt(pool, op, retrying)
            except TRANSIENT as exc:
                if isinstance(exc, TimeoutError) and _waiting_for_pool.get():
                    exc = PoolExhausted()  # cut while no connection was free: not the server
                if time.monotonic() + delay > deadline:
                    raise self.error(what, exc, retried=True) from None
            except asyncpg.PostgresError as exc:
                raise self.error(what, exc) from None
            retrying = True
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def _attempt(
        self, pool: asyncpg.Pool, op: Callable[[Conn, bool], Awaitable[T]], retrying: bool
    ) -> T:
        express = self._express
        if self._express_busy or (express is None and not self._own_pools):
            _waiting_for_pool.set(True)
            conn = await pool.acquire()
            _waiting_for_pool.set(False)
            try:
                return await op(conn, retrying)
            except BaseException:
                # Never lend a connection in doubt again (cut, or its statement
                # cancelled halfway: giving it back would wait out the cancellation).
                conn.terminate()
                raise
            finally:
                await pool.release(conn)
        self._express_busy = True
        if express is None:
            # The first operation keeps its connection: a lone workflow's operations
            # then skip the pool's acquire and release (~25 µs a step).
            try:
                express = self._express = await pool.acquire()
            except BaseException:
                self._express_busy = False
                raise
        try:
            return await op(express, retrying)
        except BaseException:
            # In doubt (cut, or an operation cancelled halfway): dropped, and its place
            # in the pool given back; the next operation takes another connection.
            self._express = None
            express.terminate()
            await asyncio.shield(pool.release(express))
            raise
        finally:
            self._express_busy = False

    def error(
        self, what: str | Callable[[], str], exc: BaseException, *, retried: bool = False
    ) -> StoreError:
        what = what if isinstance(what, str) else what()
        cause = str(exc) or type(exc).__name__
        if isinstance(exc, PoolExhausted):
            pool = self._pool
            size = f" of {pool.get_max_size()}" if pool is not None else ""
            cause = (
                f"no connection of the pool{size} was free in time (a store on a pool of "
                "yours holds one of its connections to listen while runs wait)"
            )
        elif isinstance(exc, TimeoutError) and not str(exc):
            limit = self._connect_timeout if what == "connect" else self.statement_timeout
            cause = f"the server did not answer within {limit:g} s"
        cause = mask_urls_in(f"{type(exc).__name__}: {cause}", self._dsn)
        after = f" (retried for {self.retry_seconds:g} s)" if retried else ""
        return StoreError(f"{self.shown_as}: could not {what}{after}: {cause}")

    async def close(self) -> None:
        pool, self._pool, self._opening = self._pool, None, None
        if pool is None or not self._own_pools:
            self._pool = pool  # the user's pool: theirs to close
            return
        express, self._express = self._express, None
        if self._pool_loop is asyncio.get_running_loop():
            try:
                if express is not None and not self._express_busy:
                    await pool.release(express)
                await asyncio.wait_for(pool.close(), 5)
            except CLOSE_FAILURES:
                terminate(pool)
        else:
            self._abandon(pool)

    def _abandon(self, pool: asyncpg.Pool | None) -> None:
        # A pool of another (perhaps closed) loop cannot be awaited: drop its sockets.
        if pool is not None and self._own_pools:
            terminate(pool)


def terminate(closable: asyncpg.Pool | Conn) -> None:
    """Close sockets now, also of an event loop that is closed (then the sockets go
    with the objects, and the server ends those sessions)."""
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        closable.terminate()


async def _keep_session(conn: Conn) -> None:
    """A pooled connection goes back as it is: asyncpg's default reset sends a query
    (``RESET ALL; UNLISTEN * ...``), one more round trip after every operation, and the
    store leaves no session state to reset (its transactions end, its advisory locks
    are transaction-level, it listens on a connection of its own)."""
