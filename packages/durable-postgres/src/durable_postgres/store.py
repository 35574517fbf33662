"""The PostgreSQL store: the rules of a run as native fast paths, one statement each.

Each method below does what the rule of the same name in
:class:`durable.datastore.DataStore` does, in one round trip, with leases set and
judged on the server's clock. The conformance suite runs every rule against this
store and against :class:`~durable_postgres.data.PostgresData` (core's rules over
the primitives), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from durable.errors import StoreError
from durable.records import (
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    stale_write,
)
from durable.store import after_commit

from .batches import Batcher, Checkpoint, Outcome
from .connections import Conn
from .data import PostgresData
from .notify import channel, wake_key
from .sql import run_record

_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)

#: How often a claim runs again after losing a race to another claim: the loser's
#: snapshot shows no row, or the row as it was before the winner took it (see
#: sql._claim); the next try sees the winner's row.
_CLAIM_TRIES = 5


class PostgresStore(PostgresData):
    """Checkpoints in PostgreSQL, shared by every process and machine that reaches it.

    See :class:`~durable_postgres.data.PostgresData` for the arguments. URLs:
    ``postgresql://user:password@host:5432/database?schema=durable``.
    """

    notifies_changes = True

    # -- steps ----------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchval(self._sql.get_step, run_id, step_id)

        value = await self._run("read a step", read)
        return (False, None) if value is None else (True, json.loads(value))

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchval(self._sql.load_steps, run_id)

        steps: dict[str, Any] = json.loads(await self._run("load a run's steps", read))
        return steps

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        checkpoint = Checkpoint(run_id, step_id, json.dumps(result), attempt, owner)
        allowed, cancel_requested, status = await self._batcher.checkpoint(checkpoint)
        if not allowed:
            raise stale_write(run_id, f"step {step_id!r}", why=_why_not_held(status))
        return not cancel_requested

    @functools.cached_property
    def _batcher(self) -> Batcher:
        return Batcher(self._send_checkpoint, self._send_checkpoints, self._connector.max_size)

    async def _send_checkpoint(self, c: Checkpoint) -> Outcome:
        async def save(conn: Conn, retrying: bool) -> Outcome:
            # Run again after a broken connection, the statement checks the fence anew
            # and writes the same value: whether the first try committed does not matter.
            args = (c.run_id, c.step_id, c.value, c.attempt, c.owner)
            if c.owner is None:
                answer = await conn.fetchrow(self._sql.checkpoint_any, *args)
                assert answer is not None  # one row, always
                return bool(answer[0]), bool(answer[1]), answer[2]
            row = await conn.fetchrow(self._sql.checkpoint, *args)
            if row is not None:
                return True, row[0], "running"
            # Refused, nothing written: read what the run is now, for the error.
            return False, False, await conn.fetchval(self._sql.run_status, c.run_id)

        outcome = await self._run(f"save step {c.step_id!r} of run {c.run_id!r}", save)
        after_commit()
        return outcome

    async def _send_checkpoints(self, batch: Sequence[Checkpoint]) -> Sequence[Outcome]:
        columns = [
            list(column) for column in zip(*(dataclasses.astuple(c) for c in batch), strict=True)
        ]

        async def save(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.checkpoint_batch, *columns)  # as above

        rows = await self._run(f"save {len(batch)} steps", save)
        after_commit()
        return [(ok, cancel_requested, status) for ok, cancel_requested, status in rows]

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        await self.checkpoint_step(run_id, step_id, result, attempt)

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        async def record(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchrow(
                self._sql.record_attempt, run_id, step_id, attempt, error, owner
            )

        allowed, status = await self._run("record a failed attempt", record)
        after_commit()
        if not allowed:
            why = _why_not_held(status)
            raise stale_write(run_id, f"attempt {attempt} of step {step_id!r}", why=why)

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.load_attempts, run_id)

        return {step_id: count for step_id, count in await self._run("read attempts", read)}

    async def mark_progress(self, run_id: str, owner: str) -> None:
        await self._execute("note a run's progress", self._sql.mark_progress, run_id, owner)

    # -- signals --------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchval(self._sql.get_signal, run_id, name)

        payload = await self._run("read a signal", read)
        return (False, None) if payload is None else (True, json.loads(payload))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        return await self._add_signal(run_id, name, json.dumps(payload), None)

    async def wait_for_change(self, run_id: str, max_wait: float) -> None:
        async def never() -> bool:
            return False

        await self._listener.wait(run_id, max_wait, never)

    async def wait_for_signal(self, run_id: str, name: str, max_wait: float) -> None:
        async def delivered() -> bool:
            found, _ = await self.get_signal(run_id, name)
            return found

        await self._listener.wait(run_id, max_wait, delivered)

    # -- a run's life ---------------------------------------------------------------------

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
        params = (run_id, workflow, json.dumps(inputs), owner, lease_seconds, takeover_from)

        async def claim(conn: Conn, retrying: bool) -> Any:
            # Run again after a broken connection, a claim that did commit finds the
            # run held by this owner already, and is granted again (not "created").
            for _ in range(_CLAIM_TRIES):
                row = await conn.fetchrow(self._sql.claim, *params, input_digest)
                if row is not None:
                    return row
            raise StoreError(f"{self._connector.shown_as}: run {run_id!r} kept changing")

        row = await self._run(f"claim run {run_id!r}", claim)
        after_commit()
        return RunClaim(row[0], run_record(row, 2), created=row[1])

    async def claim_orphans(
        self, workflows: Sequence[str], *, owner: str, lease_seconds: float, limit: int = 100
    ) -> Sequence[RunRecord]:
        async def claim(conn: Conn, retrying: bool) -> Any:
            # Run again after a broken connection, runs a first try took (if it committed)
            # hold this owner's lease, so they are not claimed twice; nobody renews it,
            # and a later recovery pass takes them once it runs out.
            sql = self._sql.claim_orphans
            return await conn.fetch(sql, list(workflows), owner, lease_seconds, limit)

        rows = await self._run("claim orphaned runs", claim)
        after_commit()
        records = [run_record(row) for row in rows]
        return sorted(records, key=lambda r: (r.created_at or _EPOCH, r.run_id))

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        async def renew(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchval(self._sql.renew, run_id, owner, lease_seconds)

        renewed = await self._run("renew a lease", renew)
        after_commit()
        return bool(renewed)

    async def release_run(self, run_id: str, owner: str) -> None:
        await self._execute("release a run", self._sql.release, run_id, owner)

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
        value = json.dumps(result) if has_result else None
        if not owner:  # the seed's mark_run_*: always applies, records a run it never saw
            sql = self._sql.finish_unowned
            await self._execute(
                "record a run's outcome", sql, run_id, status, value, has_result, error
            )
            return True

        async def finish(conn: Conn, retrying: bool) -> bool:
            if retrying:  # the first try may have committed: read the outcome, not guess
                row = await conn.fetchrow(self._sql.get_run, run_id)
                if row is not None and _is_outcome(row, status, value, has_result, error):
                    return True
            return bool(
                await conn.fetchval(
                    self._sql.finish, run_id, owner, status, value, has_result, error
                )
            )

        finished = await self._run(f"record the outcome of run {run_id!r}", finish)
        after_commit()
        return finished

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        key = wake_key(run_id)
        return await self._record(
            "cancel a run", self._sql.request_cancel, run_id, channel(self.schema), key
        )

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        return await self._record("reopen a run", self._sql.reopen, run_id)

    # -- reading and pruning runs ---------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchrow(self._sql.get_run, run_id)

        row = await self._run("read a run", read)
        return None if row is None else run_record(row)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        async def read(conn: Conn, retrying: bool) -> Any:
            return await conn.fetch(self._sql.list_runs, status, workflow, limit)

        return [run_record(row) for row in await self._run("list runs", read)]

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return await self.read_steps(run_id)

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return await self.read_signals(run_id)

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        async def delete(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchval(self._sql.delete_runs, finished_before, list(statuses))

        deleted = await self._run("delete runs", delete)
        after_commit()
        return int(deleted)

    # -- plumbing -------------------------------------------------------------------------

    async def _execute(self, what: str, sql: str, *args: Any) -> None:
        """Run one idempotent statement (run again after a broken connection as is)."""

        async def execute(conn: Conn, retrying: bool) -> None:
            await conn.execute(sql, *args)

        await self._run(what, execute)
        after_commit()

    async def _record(self, what: str, sql: str, *args: Any) -> RunRecord | None:
        """Run one idempotent statement that returns the run's record afterwards."""

        async def execute(conn: Conn, retrying: bool) -> Any:
            return await conn.fetchrow(sql, *args)

        row = await self._run(what, execute)
        after_commit()
        return None if row is None else run_record(row)


def _why_not_held(status: str | None) -> str:
    if status is None:
        return "the run has no record"
    if status != "running":
        return f"the run is {status} now"
    return "another owner holds the run now"


def _is_outcome(
    row: Any, status: str, value: str | None, has_result: bool, error: str | None
) -> bool:
    """Whether the runs row ``row`` (RUN_COLUMNS) shows this outcome recorded, an owner
    no longer on it. The result is compared as the JSON text that was sent, not as a
    value decoded again: ``NaN`` equals nothing, not even itself."""
    return (
        row["status"] == status
        and row["owner"] is None
        and row["has_result"] == has_result
        and (not has_result or row["result"] == value)
        and row["error"] == error
    )
