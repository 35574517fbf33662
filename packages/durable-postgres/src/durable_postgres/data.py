"""The PostgreSQL data store: connections, the schema, and the eight data primitives.

:class:`PostgresData` is a complete store on its own: every rule of a run comes from
:class:`durable.datastore.DataStore`, on top of the primitives below. The store users
get, :class:`~durable_postgres.PostgresStore`, adds a native fast path for each rule
(one statement, one round trip, leases on the server's clock); the conformance suite
runs against both.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from durable.datastore import DataStore, RunData
from durable.errors import StoreError
from durable.records import RunRecord, RunStatus, SignalRecord, StepRecord
from durable.settings import SettingError, non_negative_seconds, positive_int, positive_seconds
from durable.store import after_commit
from durable.urls import mask_url

from .connections import Conn, Connector
from .notify import Listener, channel, wake_key
from .schema import SchemaError, migrate
from .sql import SCHEMA_NAME, Statements, epoch, run_record, stamp

T = TypeVar("T")

#: The URL schemes of the store (``postgresql+asyncpg`` as SQLAlchemy spells it).
SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


#: Settings of the store that are arguments, not URL options: asyncpg would send them
#: to the server as settings, which refuses them at every connection.
_ARGUMENTS_ONLY = ("connect_timeout", "retry_seconds", "min_size", "max_size")


def split_dsn(dsn: str) -> tuple[str, str | None]:
    """``(dsn for asyncpg, schema)``: the ``?schema=`` option is the store's, every other
    option is asyncpg's (``sslmode=``, ``application_name=`` ... or a server setting).
    A URL asyncpg could not use is refused here, not at the first connection."""
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - parsed now: "host:notaport" raises ValueError
    except ValueError as exc:
        raise SettingError(f"the PostgreSQL DSN {mask_url(dsn)!r} is not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise SettingError(
            f"a PostgreSQL DSN starts with postgresql:// or postgres://, not {mask_url(dsn)!r}"
        )
    options = parse_qsl(parts.query, keep_blank_values=True)
    for key, _ in options:
        if key in _ARGUMENTS_ONLY:
            raise SettingError(
                f"{key} is an argument of PostgresStore ({key}=...), not an option of its "
                f"URL: {mask_url(dsn)!r}"
            )
    schemas = [value for key, value in options if key == "schema"]
    rest = [(key, value) for key, value in options if key != "schema"]
    scheme = "postgresql" if parts.scheme == "postgresql+asyncpg" else parts.scheme
    query = urlencode(rest)
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment)), (
        schemas[-1] if schemas else None
    )


class PostgresData(DataStore):
    """Runs in PostgreSQL tables of one schema, the rules of a run from core.

    Args:
        dsn: ``postgresql://user:password@host:5432/database`` (``postgres://`` and
            ``postgresql+asyncpg://`` too); ``?schema=`` picks the schema, every other
            option goes to asyncpg.
        pool: An ``asyncpg`` pool of the application's, used as it is (never closed
            by the store). Give ``dsn`` or ``pool``.
        schema: The schema the store's tables live in (created on first use).
        min_size, max_size: The size of the pool the store makes from ``dsn``.
        retry_seconds: How long an operation is retried across lost connections, a
            restarting server or a failover, before a ``StoreError``.
        connect_timeout: Seconds one connection attempt may take.
        statement_timeout: Seconds one operation may wait for the server's answer
            before its connection is taken for lost (and the operation retried).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        retry_seconds: float = 10.0,
        connect_timeout: float = 10.0,
        statement_timeout: float = 10.0,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise SettingError(
                f"{type(self).__name__} needs a dsn= or a pool= (one of them), "
                f"got {'both' if pool is not None else 'neither'}"
            )
        from_url = None
        if dsn is not None:
            if not isinstance(dsn, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise SettingError(f"dsn must be a str, not {type(dsn).__name__}")
            dsn, from_url = split_dsn(dsn)
        schema = schema if schema is not None else from_url or "durable"
        if not SCHEMA_NAME.fullmatch(schema) or schema.lower().startswith("pg_"):
            raise SettingError(
                f"schema must be a plain identifier of at most 48 characters (letters, "
                f"digits, _; not starting with a digit or pg_, which PostgreSQL keeps for "
                f"itself), not {schema!r}"
            )
        min_size = positive_int("min_size", min_size) if min_size else 0
        max_size = positive_int("max_size", max_size)
        if min_size > max_size:
            raise SettingError(f"min_size ({min_size}) is more than max_size ({max_size})")
        self.dsn = dsn
        self.schema = schema
        self._sql = Statements.for_schema(schema)
        shown = mask_url(dsn) if dsn is not None else "an asyncpg pool"
        self._connector = Connector(
            dsn,
            pool=pool,
            min_size=min_size,
            max_size=max_size,
            retry_seconds=non_negative_seconds("retry_seconds", retry_seconds),
            connect_timeout=positive_seconds("connect_timeout", connect_timeout),
            statement_timeout=positive_seconds("statement_timeout", statement_timeout),
            shown_as=f"PostgreSQL store {shown} (schema {schema})",
        )
        self._listener = Listener(self._connector, schema)
        self._migrated = False

    @property
    def url(self) -> str | None:
        """The DSN the store connects with (None with a pool of yours); mask it
        (``durable.urls.mask_url``) before showing it."""
        return self.dsn

    @classmethod
    def from_url(cls, url: str) -> PostgresData:
        return cls(url)

    def __repr__(self) -> str:
        where = repr(mask_url(self.dsn)) if self.dsn is not None else "pool=..."
        return f"{type(self).__name__}({where}, schema={self.schema!r})"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        async def prepare(conn: Conn, retrying: bool) -> None:
            try:
                await migrate(conn, self.schema)
            except SchemaError as exc:
                raise StoreError(f"{self._connector.shown_as}: {exc}") from None

        await self._connector.pool()
        if not self._migrated:
            await self._connector.run("create its tables", prepare)
            self._migrated = True

    async def close(self) -> None:
        await self._listener.close()
        await self._connector.close()

    async def _run(self, what: str, op: Callable[[Conn, bool], Awaitable[T]]) -> T:
        if not self._migrated:
            await self.setup()
        return await self._connector.run(what, op)

    # -- the primitives -------------------------------------------------------------------

    async def read_run(self, run_id: str) -> RunData | None:
        async def read(conn: Conn, retrying: bool) -> RunData | None:
            return await self._read_run_on(conn, run_id)

        data: RunData | None = await self._run("read a run", read)
        return data

    async def _read_run_on(self, conn: Conn, run_id: str) -> RunData | None:
        row = await conn.fetchrow(self._sql.read_run, run_id)
        if row is None:
            return None
        return RunData(run_record(row), json.loads(row[16]), row[15])

    async def write_run(self, data: RunData, *, expected: int | None) -> bool:
        r = data.record
        values = (
            r.run_id, r.workflow, r.status, json.dumps(r.inputs),
            json.dumps(r.result) if r.has_result else None, r.has_result, r.error, r.owner,
            r.lease_expires_at, epoch(r.created_at) or 0.0, epoch(r.updated_at or r.created_at)
            or 0.0, r.recoveries, r.recoveries_without_progress, r.cancel_requested,
            r.input_digest, data.version,
        )  # fmt: skip

        async def write(conn: Conn, retrying: bool) -> bool:
            if retrying and _same_data(await self._read_run_on(conn, r.run_id), data):
                return True  # the first try committed before its connection broke
            async with conn.transaction():
                if expected is None:
                    written = await conn.fetchval(self._sql.insert_run, *values)
                else:
                    written = await conn.fetchval(self._sql.update_run, *values, expected)
                if written:
                    await conn.execute(self._sql.clear_attempts, r.run_id)
                    if data.attempts:
                        steps, counts = zip(*data.attempts.items(), strict=True)
                        await conn.execute(
                            self._sql.put_attempts, r.run_id, list(steps), list(counts)
                        )
            return bool(written)

        written = await self._run("write a run", write)
        after_commit()
        return written

    async def read_steps(self, run_id: str) -> Sequence[StepRecord]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.list_steps, run_id)

        rows = await self._run("read a run's steps", read)
        return [StepRecord(sid, json.loads(value), n, stamp(at)) for sid, value, n, at in rows]

    async def write_step(self, run_id: str, step: StepRecord, *, expected: int | None) -> bool:
        at = epoch(step.created_at) or 0.0
        values = (run_id, step.step_id, json.dumps(step.value), step.attempt, at)

        async def write(conn: Conn, retrying: bool) -> bool:
            # Idempotent: a write run again after a broken connection writes the same.
            if expected is None:
                return bool(await conn.fetchval(self._sql.write_step, *values))
            return bool(await conn.fetchval(self._sql.write_step_fenced, *values, expected))

        written = await self._run("write a step", write)
        after_commit()
        return written

    async def read_signals(self, run_id: str) -> Sequence[SignalRecord]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.list_signals, run_id)

        rows = await self._run("read a run's signals", read)
        return [SignalRecord(name, json.loads(payload), stamp(at)) for name, payload, at in rows]

    async def add_signal(self, run_id: str, signal: SignalRecord) -> bool:
        payload = json.dumps(signal.payload)
        return await self._add_signal(run_id, signal.name, payload, epoch(signal.created_at))

    async def _add_signal(self, run_id: str, name: str, payload: str, at: float | None) -> bool:
        async def add(conn: Conn, retrying: bool) -> bool:
            if retrying:  # the first try may have committed: then this payload is there
                found = await conn.fetchval(self._sql.get_signal, run_id, name)
                if found is not None:
                    return bool(found == payload)
            added = await conn.fetchval(
                self._sql.add_signal, run_id, name, payload, at, channel(self.schema),
                wake_key(run_id),
            )  # fmt: skip
            return bool(added)

        added = await self._run("save a signal", add)
        after_commit()
        return added

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        limit = positive_int("scan_runs(limit=...)", limit)
        created, after = (-1.0, "") if cursor is None else _split_cursor(cursor)

        async def scan(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.scan_runs, status, created, after, limit)

        rows = await self._run("scan runs", scan)
        page = [run_record(row) for row in rows]
        if len(rows) < limit:
            return page, None
        return page, f"{rows[-1]['created_at']!r} {rows[-1]['run_id']}"

    async def delete_run(self, run_id: str) -> None:
        async def delete(conn: Conn, retrying: bool) -> None:
            await conn.execute(self._sql.delete_run, run_id)

        await self._run("delete a run", delete)
        after_commit()


def _split_cursor(cursor: str) -> tuple[float, str]:
    created, _, run_id = cursor.partition(" ")
    try:
        return float(created), run_id
    except ValueError:
        raise ValueError(f"not a cursor of PostgresStore.scan_runs: {cursor!r}") from None


def _same_data(found: RunData | None, sent: RunData) -> bool:
    """Whether ``found`` is what ``sent`` wrote, compared as JSON text: a value holding
    ``NaN`` equals nothing once decoded, not even itself."""
    if found is None:
        return False
    text = json.dumps(found.to_json(), sort_keys=True)
    return text == json.dumps(sent.to_json(), sort_keys=True)
