"""The narrow store protocol: a store keeps data, core keeps every rule of a run.

Subclass :class:`DataStore` and implement its eight data primitives (read and
compare-and-set a run's record, read and write its steps, read and add its signals,
scan runs page by page, delete a run). Everything else of :class:`~durable.Store` is
written here, once, in Python, on top of them: claims and take-overs, leases, fencing
(a stale owner's writes are refused), cancel, reopen, finish, the count of take-overs
without progress, first-write-wins signals, attempts, listing and retention.

The one thing a data store must get right is atomicity: ``write_run`` and
``write_step`` compare the run's record version and write in one indivisible step
(a transaction, a lock, a compare-and-set). Every rule then holds across processes,
because every change of a record is a compare-and-set of the version read before.
SQLite and Redis implement :class:`~durable.Store` directly instead, with each rule as
one SQL statement or Lua script (a native fast path); the conformance suite in
:mod:`durable.testing` checks every store against the same rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .records import (
    RUN_STATUSES,
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    claim_allowed,
    counts_as_recovery,
    holds_run,
    lease_is_live,
    stale_write,
)
from .rundata import (
    RunData,
    signal_from_json,
    signal_to_json,
    step_from_json,
    step_to_json,
)
from .store import Store, scan_all

__all__ = [
    "DataStore",
    "RunData",
    "signal_from_json",
    "signal_to_json",
    "step_from_json",
    "step_to_json",
]


class DataStore(Store):
    """A store made of data primitives; the rules of a run are inherited (see module)."""

    records_runs = True
    fences_writes = True
    claims_orphans = True

    # -- the primitives -----------------------------------------------------------------

    async def setup(self) -> None:
        """Prepare the store; idempotent, safe to call concurrently. Default: nothing."""

    @abstractmethod
    async def read_run(self, run_id: str) -> RunData | None:
        """The run's record, attempts and version; None for a run with no record."""

    @abstractmethod
    async def write_run(self, data: RunData, *, expected: int | None) -> bool:
        """Store ``data`` as the run's record if its current version is ``expected``
        (None: only if the run has no record yet), atomically; False if not."""

    @abstractmethod
    async def read_steps(self, run_id: str) -> Sequence[StepRecord]:
        """The run's steps, oldest first (a step written again counts as new)."""

    @abstractmethod
    async def write_step(self, run_id: str, step: StepRecord, *, expected: int | None) -> bool:
        """Store ``step`` (replacing one with its id) if the run's record version is
        ``expected`` (None: whatever the record, or none), atomically; False if not."""

    @abstractmethod
    async def read_signals(self, run_id: str) -> Sequence[SignalRecord]:
        """The run's delivered signals, oldest first."""

    @abstractmethod
    async def add_signal(self, run_id: str, signal: SignalRecord) -> bool:
        """Store ``signal`` unless one of its name is there (first write wins); atomically."""

    @abstractmethod
    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        """See :meth:`Store.scan_runs`."""

    @abstractmethod
    async def delete_run(self, run_id: str) -> None:
        """Delete the run's record, steps and signals."""

    # -- steps ----------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        for step in await self.read_steps(run_id):
            if step.step_id == step_id:
                return True, step.value
        return False, None

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return {step.step_id: step.value for step in await self.read_steps(run_id)}

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return await self.read_steps(run_id)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        await self.write_step(run_id, StepRecord(step_id, result, attempt, _now()), expected=None)

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        step = StepRecord(step_id, result, attempt, _now())
        while True:
            data = await self.read_run(run_id)
            if owner is not None and not holds_run(None if data is None else data.record, owner):
                raise stale_write(run_id, f"step {step_id!r}")
            if data is not None and data.record.recoveries_without_progress:  # progress
                progressed = dataclasses.replace(data.record, recoveries_without_progress=0)
                data = await self._replace(data, progressed)
                if data is None:
                    continue
            fence = None if owner is None or data is None else data.version
            if await self.write_step(run_id, step, expected=fence):
                return data is None or not data.record.cancel_requested

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        while True:
            data = await self.read_run(run_id)
            if owner is not None and not holds_run(None if data is None else data.record, owner):
                raise stale_write(run_id, f"attempt {attempt} of step {step_id!r}")
            if data is None:
                return  # attempts live in the record: a run without one keeps none
            attempts = {**data.attempts, step_id: attempt}
            if attempt == 0:
                attempts.pop(step_id)
            new = RunData(data.record, attempts, data.version + 1)
            if await self.write_run(new, expected=data.version):
                return

    async def mark_progress(self, run_id: str, owner: str) -> None:
        def progressed(record: RunRecord) -> RunRecord | None:
            if not holds_run(record, owner) or not record.recoveries_without_progress:
                return None
            return dataclasses.replace(record, recoveries_without_progress=0)

        await self._change(run_id, progressed)

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        data = await self.read_run(run_id)
        return {} if data is None else dict(data.attempts)

    # -- signals --------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        for signal in await self.read_signals(run_id):
            if signal.name == name:
                return True, signal.payload
        return False, None

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        return await self.add_signal(run_id, SignalRecord(name, payload, _now()))

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return await self.read_signals(run_id)

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
        while True:
            now = time.time()
            data = await self.read_run(run_id)
            record = None if data is None else data.record
            if not claim_allowed(
                record,
                owner=owner,
                now=now,
                takeover_from=takeover_from,
                workflow=workflow,
                input_digest=input_digest,
            ):
                assert record is not None
                return RunClaim(False, record)
            if record is None:
                stamp = _stamp(now)
                record = RunRecord(run_id, workflow, "running", inputs, created_at=stamp)
                record = dataclasses.replace(record, input_digest=input_digest)
            recovered = counts_as_recovery(record, owner)
            claimed = dataclasses.replace(
                record,
                status="running",
                error=None,
                owner=owner,
                lease_expires_at=now + lease_seconds,
                updated_at=_stamp(now),
                recoveries=record.recoveries + recovered,
                recoveries_without_progress=record.recoveries_without_progress + recovered,
            )
            if data is None:
                if await self.write_run(RunData(claimed), expected=None):
                    return RunClaim(True, claimed, created=True)
            elif await self._replace(data, claimed) is not None:
                return RunClaim(True, claimed)

    async def claim_orphans(
        self, workflows: Sequence[str], *, owner: str, lease_seconds: float, limit: int = 100
    ) -> Sequence[RunRecord]:
        claimed: list[RunRecord] = []
        for record in await scan_all(self, "running"):
            if len(claimed) >= limit:
                break
            if record.workflow not in workflows or lease_is_live(record, time.time()):
                continue
            claim = await self.claim_run(
                record.run_id,
                record.workflow,
                record.inputs,
                owner=owner,
                lease_seconds=lease_seconds,
                input_digest=record.input_digest,
            )
            if claim.acquired:  # else another worker was first, or the run went on
                claimed.append(claim.record)
        return claimed

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        def renewed(record: RunRecord) -> RunRecord | None:
            if not holds_run(record, owner):
                return None
            return dataclasses.replace(record, lease_expires_at=time.time() + lease_seconds)

        return await self._change(run_id, renewed) is not None

    async def release_run(self, run_id: str, owner: str) -> None:
        def released(record: RunRecord) -> RunRecord | None:
            if record.owner != owner:
                return None
            return dataclasses.replace(record, owner=None, lease_expires_at=None)

        await self._change(run_id, released)

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
        def finished(record: RunRecord) -> RunRecord | None:
            if owner and not holds_run(record, owner):
                return None  # taken over or ended meanwhile: not this owner's to finish
            return dataclasses.replace(
                record,
                status=status,
                result=result,
                has_result=has_result,
                error=error,
                owner=None,
                lease_expires_at=None,
                updated_at=_now(),
                cancel_requested=False,
            )

        blank = RunRecord(run_id, "", status, created_at=_now())  # the seed's mark_run_*
        return await self._change(run_id, finished, blank=None if owner else blank) is not None

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        def cancelled(record: RunRecord) -> RunRecord | None:
            if record.status not in ("running", "failed"):
                return None
            executing = record.status == "running" and lease_is_live(record, time.time())
            return dataclasses.replace(
                record,
                status="running" if executing else "cancelled",
                cancel_requested=executing,
                error=record.error if executing else "cancelled",
                updated_at=_now(),
            )

        await self._change(run_id, cancelled)
        return await self.get_run(run_id)

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        def reopened(record: RunRecord) -> RunRecord | None:
            if record.status not in ("failed", "cancelled", "dead"):
                return None
            return dataclasses.replace(
                record,
                status="running",
                owner=None,
                lease_expires_at=None,
                cancel_requested=False,
                recoveries=0,
                recoveries_without_progress=0,
                updated_at=_now(),
            )

        await self._change(run_id, reopened)
        return await self.get_run(run_id)

    # -- reading and pruning runs ---------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        data = await self.read_run(run_id)
        return None if data is None else data.record

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        runs = [
            record
            for one in ((status,) if status is not None else RUN_STATUSES)
            for record in await scan_all(self, one)
            if workflow in (None, record.workflow)
        ]
        runs.sort(key=lambda r: (r.created_at or _EPOCH, r.run_id), reverse=True)
        return runs[:limit]

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        deleted = 0
        for status in statuses:
            for record in await scan_all(self, status):
                if (
                    record.updated_at is not None
                    and record.updated_at.timestamp() < finished_before
                ):
                    await self.delete_run(record.run_id)
                    deleted += 1
        return deleted

    # -- plumbing -------------------------------------------------------------------------

    async def _replace(self, data: RunData, record: RunRecord) -> RunData | None:
        """Write ``record`` over ``data`` as read; None if the run changed meanwhile."""
        new = RunData(record, data.attempts, data.version + 1)
        return new if await self.write_run(new, expected=data.version) else None

    async def _change(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        *,
        blank: RunRecord | None = None,
    ) -> RunRecord | None:
        """Apply a rule to the run's record until its compare-and-set holds: the new
        record, or None when the rule leaves it alone (or there is no record and no
        ``blank`` to start from)."""
        while True:
            data = await self.read_run(run_id)
            if data is None:
                if blank is None or (new := change(blank)) is None:
                    return None
                if await self.write_run(RunData(new), expected=None):
                    return new
                continue
            new = change(data.record)
            if new is None:
                return None
            if await self._replace(data, new) is not None:
                return new
            await asyncio.sleep(0)  # another writer won the race: read again


_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
