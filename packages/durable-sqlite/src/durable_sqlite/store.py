"""The SQLite store: checkpoints in one local file, shared by every process using it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from durable.errors import StoreError
from durable.records import stale_write
from durable.settings import non_negative_seconds
from durable.store import (
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    Store,
)
from durable.urls import mask_url

from .connection import Database
from .jsontext import dumps, loads
from .schema import SchemaError, check_version, migrate
from .sql import (
    CREATE_RUN,
    FENCED_SAVE_STEP,
    FIRST_STEPS_PAGE,
    LOAD_PAGE,
    NEXT_STEPS_PAGE,
    RECLAIM,
    RUN_COLUMNS,
    RUN_FENCE,
    SAVE_STEP,
    new_run_record,
    run_record,
    select_run,
    stamp,
)
from .transactions import Params, Row, Tx

T = TypeVar("T")
Durability = Literal["normal", "full"]
_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}


def _url_seconds(option: str, text: str) -> float:
    """A ``?option=seconds`` of a SQLite URL: a finite number of 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"the SQLite URL option {option} must be a finite number of seconds of 0 or "
            f"more, got {text!r}"
        ) from None
    return non_negative_seconds(f"the SQLite URL option {option}", value)


class SQLiteStore(Store):
    """Checkpoints in a local SQLite file (the default store of ``Workflow``).

    Args:
        path: The database file (created readable by its owner only), or ``:memory:``.
        durability: ``"normal"`` (the default) survives a crash of the process: a
            commit is in the OS before the workflow goes on. ``"full"`` also survives
            power loss: every commit is fsynced, off the event loop.
        busy_timeout: Seconds a write waits for another process's lock before failing.
        read_only: Open the file read-only (inspection); every write fails clearly.

    URLs: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` (memory),
    with options as query parameters: ``?durability=full&busy_timeout=10&mode=ro``.
    """

    records_runs = True
    fences_writes = True

    def __init__(
        self,
        path: str | os.PathLike[str] = "durable.db",
        *,
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self._db = Database(
            self.path,
            synchronous=_SYNCHRONOUS[durability],
            busy_timeout=busy_timeout,
            read_only=read_only,
        )
        self._opening: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            # Masked: a host part may carry a password.
            raise ValueError(
                f"a SQLite URL names a file, not a host ({mask_url(url)!r}); use "
                "sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(options) - {"durability", "busy_timeout", "mode"}
        if unknown:
            raise ValueError(f"unknown SQLite URL options {sorted(unknown)} in {mask_url(url)!r}")
        durability = options.get("durability", "normal")
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        mode = options.get("mode", "rw")
        if mode not in ("ro", "rw"):  # "RO" must not open read-write and migrate the file
            raise ValueError(f"the SQLite URL option mode must be 'ro' or 'rw', not {mode!r}")
        return cls(
            path or ":memory:",
            durability="full" if durability == "full" else "normal",
            busy_timeout=_url_seconds("busy_timeout", options.get("busy_timeout", "30")),
            read_only=mode == "ro",
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, durability={self.durability!r})"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        # Every Workflow sharing this store sets it up: one opening serves them all.
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.get_loop() is not loop or _failed(opening):
            if self._db.is_open:
                return
            opening = self._opening = loop.create_task(self._open())
        await asyncio.shield(opening)

    async def _open(self) -> None:
        try:
            await self._db.open(self._prepare)
        except SchemaError as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        except OSError as exc:
            raise StoreError(f"SQLite store {self.path}: could not open: {exc}") from exc

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if self._db.read_only:
            check_version(conn, read_only=True)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrate(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self._opening = None
        await self._db.close()

    # -- steps ------------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        rows = await self._read(
            "SELECT result FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id)
        )
        return (True, loads(rows[0][0])) if rows else (False, None)

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        # Pages of LOAD_PAGE steps, each fetched as the text of one JSON object and
        # decoded in one call (~3x faster than a json.loads per row), with the loop given
        # back between pages: a long run is loaded without holding the loop for long.
        steps: dict[str, Any] = {}
        query, after = FIRST_STEPS_PAGE, ""
        while True:
            rows = await self._read(query, (run_id, after, LOAD_PAGE))
            page, last, count = rows[0]
            if count:
                steps.update(loads(page))
            if count < LOAD_PAGE:
                return steps
            query, after = NEXT_STEPS_PAGE, last
            await asyncio.sleep(0)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        params = (run_id, step_id, dumps(result), attempt, time.time())

        async def insert(tx: Tx) -> None:
            await tx.execute(SAVE_STEP, params)

        await self._write("save a step", insert)

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        params = (run_id, step_id, dumps(result), attempt, time.time())

        async def insert(tx: Tx) -> bool:
            if owner is not None and await tx.changes(FENCED_SAVE_STEP, (*params, owner)):
                return True  # the usual case, in one statement
            # Read, then write, in one write transaction: nobody takes the run over
            # between the fencing check and the step it lets through.
            rows = await tx.execute(RUN_FENCE, (run_id,))
            if owner is not None and not _holds(rows, owner):
                raise stale_write(run_id, f"step {step_id!r}")
            await tx.execute(SAVE_STEP, params)
            if rows and rows[0][3]:  # a checkpoint is progress: take-overs count anew
                await tx.execute(
                    "UPDATE runs SET recoveries_without_progress = 0 WHERE run_id = ?", (run_id,)
                )
            return not (rows and rows[0][2])

        return await self._write("save a step", insert)

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        params = (run_id, step_id, attempt, error, time.time())

        async def record(tx: Tx) -> None:
            if owner is not None and not _holds(await tx.execute(RUN_FENCE, (run_id,)), owner):
                raise stale_write(run_id, f"attempt {attempt} of step {step_id!r}")
            if attempt == 0:  # the failure was final: a resumed run starts afresh
                await tx.execute(
                    "DELETE FROM step_attempts WHERE run_id = ? AND step_id = ?", (run_id, step_id)
                )
                return
            await tx.execute(
                "INSERT INTO step_attempts (run_id, step_id, attempts, error, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET "
                "attempts = excluded.attempts, error = excluded.error, "
                "updated_at = excluded.updated_at",
                params,
            )

        await self._write("record a failed attempt", record)

    async def mark_progress(self, run_id: str, owner: str) -> None:
        async def progressed(tx: Tx) -> None:
            await tx.execute(
                "UPDATE runs SET recoveries_without_progress = 0 WHERE run_id = ? "
                "AND status = 'running' AND owner = ? AND recoveries_without_progress > 0",
                (run_id, owner),
            )

        await self._write("note a run's progress", progressed)

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        rows = await self._read(
            "SELECT step_id, attempts FROM step_attempts WHERE run_id = ?", (run_id,)
        )
        return dict(rows)

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        rows = await self._read(
            "SELECT step_id, result, attempt, created_at FROM steps WHERE run_id = ? "
            "ORDER BY created_at",
            (run_id,),
        )
        return [
            StepRecord(sid, loads(value), attempt, stamp(at)) for sid, value, attempt, at in rows
        ]

    # -- signals ----------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        rows = await self._read(
            "SELECT payload FROM signals WHERE run_id = ? AND name = ?", (run_id, name)
        )
        return (True, loads(rows[0][0])) if rows else (False, None)

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        params = (run_id, name, dumps(payload), time.time())

        async def insert(tx: Tx) -> bool:
            added = await tx.changes(
                "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                params,
            )
            return bool(added)

        return await self._write("save a signal", insert)

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        rows = await self._read(
            "SELECT name, payload, created_at FROM signals WHERE run_id = ? ORDER BY created_at",
            (run_id,),
        )
        return [SignalRecord(name, loads(payload), stamp(at)) for name, payload, at in rows]

    # -- runs -------------------------------------------------------------------------------

    async def claim_run(
        self,
        run_id: str,
        workflow: str,
        inputs: Any,
        *,
        owner: str,
        lease_seconds: float,
        takeover_from: str | None = None,
        input_digest: str | None = None,
    ) -> RunClaim:
        now = time.time()
        params = {
            "run_id": run_id,
            "workflow": workflow,
            "inputs": dumps(inputs),
            "owner": owner,
            "lease": now + lease_seconds,
            "now": now,
            "takeover": takeover_from,
            "input_digest": input_digest,
        }

        async def claim(tx: Tx) -> RunClaim:
            if await tx.changes(CREATE_RUN, params):
                return RunClaim(True, new_run_record(params), created=True)
            if rows := await tx.execute(RECLAIM, params):
                return RunClaim(True, run_record(rows[0]))
            # Refused (a live owner, a stored result, another workflow or other inputs):
            # the record as it is, so the engine can say which.
            record = await select_run(tx, run_id)
            assert record is not None  # the INSERT conflicted, so the run exists
            return RunClaim(False, record)

        return await self._write("claim a run", claim)

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        params = (time.time() + lease_seconds, run_id, owner)

        async def renew(tx: Tx) -> bool:
            renewed = await tx.changes(
                "UPDATE runs SET lease_expires_at = ? "
                "WHERE run_id = ? AND owner = ? AND status = 'running'",
                params,
            )
            return bool(renewed)

        return await self._write("renew a lease", renew)

    async def release_run(self, run_id: str, owner: str) -> None:
        async def release(tx: Tx) -> None:
            await tx.execute(
                "UPDATE runs SET owner = NULL, lease_expires_at = NULL "
                "WHERE run_id = ? AND owner = ?",
                (run_id, owner),
            )

        await self._write("release a run", release)

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> bool:
        now = time.time()
        params = {
            "run_id": run_id,
            "owner": owner,
            "status": status,
            "result": dumps(result) if has_result else None,
            "has_result": int(has_result),
            "error": error,
            "now": now,
        }

        async def finish(tx: Tx) -> bool:
            if owner:
                # Only the owner of a running run finishes it: a run taken over, ended
                # or deleted meanwhile is not this owner's any more (nothing is made).
                finished = await tx.changes(
                    "UPDATE runs SET status = :status, result = :result, "
                    "has_result = :has_result, error = :error, owner = NULL, "
                    "lease_expires_at = NULL, updated_at = :now, cancel_requested = 0 "
                    "WHERE run_id = :run_id AND status = 'running' AND owner = :owner",
                    params,
                )
                return bool(finished)
            # The seed's mark_run_*: always applies, and records a run it never saw.
            await tx.execute(
                "INSERT INTO runs (run_id, workflow, status, result, has_result, error, "
                "created_at, updated_at) "
                "VALUES (:run_id, '', :status, :result, :has_result, :error, :now, :now) "
                "ON CONFLICT (run_id) DO UPDATE SET status = :status, result = :result, "
                "has_result = :has_result, error = :error, owner = NULL, "
                "lease_expires_at = NULL, updated_at = :now, cancel_requested = 0",
                params,
            )
            return True

        return await self._write("record a run's outcome", finish)

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        now = time.time()

        async def cancel(tx: Tx) -> RunRecord | None:
            # Executing (a live lease): ask it to stop; otherwise it is cancelled now.
            await tx.execute(
                "UPDATE runs SET updated_at = :now, "
                "cancel_requested = (status = 'running' AND owner IS NOT NULL "
                "                    AND lease_expires_at > :now), "
                "status = CASE WHEN status = 'running' AND owner IS NOT NULL "
                "              AND lease_expires_at > :now THEN 'running' ELSE 'cancelled' END, "
                "error = CASE WHEN status = 'running' AND owner IS NOT NULL "
                "             AND lease_expires_at > :now THEN error ELSE 'cancelled' END "
                "WHERE run_id = :run_id AND status IN ('running', 'failed')",
                {"now": now, "run_id": run_id},
            )
            return await select_run(tx, run_id)

        return await self._write("cancel a run", cancel)

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        async def reopen(tx: Tx) -> RunRecord | None:
            await tx.execute(
                "UPDATE runs SET status = 'running', owner = NULL, lease_expires_at = NULL, "
                "cancel_requested = 0, recoveries = 0, recoveries_without_progress = 0, "
                "updated_at = ? "
                "WHERE run_id = ? AND status IN ('failed', 'cancelled', 'dead')",
                (time.time(), run_id),
            )
            return await select_run(tx, run_id)

        return await self._write("reopen a run", reopen)

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        marks = ", ".join("?" for _ in statuses)
        doomed = f"SELECT run_id FROM runs WHERE updated_at < ? AND status IN ({marks})"
        params = (finished_before, *statuses)

        async def delete(tx: Tx) -> int:
            await tx.execute(f"DELETE FROM steps WHERE run_id IN ({doomed})", params)
            await tx.execute(f"DELETE FROM signals WHERE run_id IN ({doomed})", params)
            await tx.execute(f"DELETE FROM step_attempts WHERE run_id IN ({doomed})", params)
            rows = await tx.execute(
                f"DELETE FROM runs WHERE run_id IN ({doomed}) RETURNING 1", params
            )
            return len(rows)

        if not statuses:
            return 0
        return await self._write("delete runs", delete)

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._read(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return run_record(rows[0]) if rows else None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        rows = await self._read(
            f"SELECT {RUN_COLUMNS} FROM runs "
            "WHERE (:status IS NULL OR status = :status) "
            "AND (:workflow IS NULL OR workflow = :workflow) "
            "ORDER BY created_at DESC, rowid DESC LIMIT :limit",
            {"status": status, "workflow": workflow, "limit": limit},
        )
        return [run_record(row) for row in rows]

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        # The cursor is the last row's creation time (repr: the exact float) and run id.
        created, run_id = (-1.0, "") if cursor is None else _split_cursor(cursor)
        rows = await self._read(
            f"SELECT {RUN_COLUMNS}, created_at FROM runs WHERE status = :status "
            "AND (created_at > :created OR (created_at = :created AND run_id > :run_id)) "
            "ORDER BY created_at, run_id LIMIT :limit",
            {"status": status, "created": created, "run_id": run_id, "limit": limit},
        )
        page = [run_record(row[:-1]) for row in rows]
        if len(rows) < limit:
            return page, None
        return page, f"{rows[-1][-1]!r} {rows[-1][0]}"

    # -- plumbing ---------------------------------------------------------------------------

    async def _read(self, sql: str, params: Params) -> list[Row]:
        if not self._db.is_open:  # closed by another user of this store: open again
            await self.setup()
        try:
            return await self._db.read(sql, params)
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc

    async def _write(self, what: str, body: Callable[[Tx], Awaitable[T]]) -> T:
        if not self._db.is_open:
            await self.setup()
        try:
            return await self._db.write(body)
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            text = "the file is not a SQLite database, or it is corrupt"
        elif "readonly" in text:
            text = "the database is read-only"
        return StoreError(f"SQLite store {self.path}: could not {what}: {text}")


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _holds(rows: list[Row], owner: str) -> bool:
    """``durable.records.holds_run`` on a RUN_FENCE row (status, owner, ...)."""
    return bool(rows) and rows[0][0] == "running" and rows[0][1] == owner


def _split_cursor(cursor: str) -> tuple[float, str]:
    created, _, run_id = cursor.partition(" ")
    try:
        return float(created), run_id
    except ValueError:
        raise ValueError(f"not a cursor of SQLiteStore.scan_runs: {cursor!r}") from None
