"""A store that lives in the process: for tests, scripts and development.

Nothing survives the process, but within it the store behaves like a real one:
values are kept as JSON text (so a caller never shares a mutable object with the
store), runs have records and leases, and signals are first-write-wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, overload

from .records import lease_is_live
from .store import (
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    Store,
    claim_allowed,
    counts_as_recovery,
)


class _Saved(NamedTuple):
    text: str
    attempt: int
    at: float


class InMemoryStore(Store):
    """Dict-backed store with no persistence and no dependencies (``db="memory://"``)."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[str, _Saved]] = {}
        self._signals: dict[str, dict[str, _Saved]] = {}
        self._runs: dict[str, RunRecord] = {}
        self._attempts: dict[str, dict[str, int]] = {}

    @classmethod
    def from_url(cls, url: str) -> InMemoryStore:
        return cls()

    async def setup(self) -> None:
        return None

    # -- steps ------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        saved = self._steps.get(run_id, {}).get(step_id)
        return (False, None) if saved is None else (True, json.loads(saved.text))

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        steps = self._steps.setdefault(run_id, {})
        steps.pop(step_id, None)  # a step recorded again moves to the end: oldest first
        steps[step_id] = _Saved(json.dumps(result), attempt, time.time())

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1
    ) -> bool:
        await self.set_step(run_id, step_id, result, attempt)
        record = self._runs.get(run_id)
        return record is None or not record.cancel_requested

    async def record_attempt(self, run_id: str, step_id: str, attempt: int, error: str) -> None:
        self._attempts.setdefault(run_id, {})[step_id] = attempt

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        return dict(self._attempts.get(run_id, {}))

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return {sid: json.loads(saved.text) for sid, saved in self._steps.get(run_id, {}).items()}

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return [
            StepRecord(sid, json.loads(saved.text), saved.attempt, _stamp(saved.at))
            for sid, saved in self._steps.get(run_id, {}).items()
        ]

    # -- signals ----------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        saved = self._signals.get(run_id, {}).get(name)
        return (False, None) if saved is None else (True, json.loads(saved.text))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        signals = self._signals.setdefault(run_id, {})
        if name in signals:
            return False
        signals[name] = _Saved(json.dumps(payload), 1, time.time())
        return True

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return [
            SignalRecord(name, json.loads(saved.text), _stamp(saved.at))
            for name, saved in self._signals.get(run_id, {}).items()
        ]

    # -- run records ------------------------------------------------------------------

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
        record = self._runs.get(run_id)
        allowed = claim_allowed(
            record,
            owner=owner,
            now=now,
            takeover_from=takeover_from,
            workflow=workflow,
            input_digest=input_digest,
        )
        if not allowed:
            assert record is not None
            return RunClaim(False, _detached(record))
        recovered = counts_as_recovery(record, owner)
        created = record is None
        if record is None:
            record = RunRecord(
                run_id,
                workflow,
                "running",
                inputs=_copy(inputs),
                created_at=_stamp(now),
                input_digest=input_digest,
            )
        record = self._runs[run_id] = dataclasses.replace(
            record,
            status="running",
            error=None,
            owner=owner,
            lease_expires_at=now + lease_seconds,
            updated_at=_stamp(now),
            recoveries=record.recoveries + recovered,
        )
        return RunClaim(True, _detached(record), created=created)

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        record = self._runs.get(run_id)
        if record is None or record.owner != owner or record.status != "running":
            return False
        self._runs[run_id] = dataclasses.replace(
            record, lease_expires_at=time.time() + lease_seconds
        )
        return True

    async def release_run(self, run_id: str, owner: str) -> None:
        record = self._runs.get(run_id)
        if record is not None and record.owner == owner:
            self._runs[run_id] = dataclasses.replace(record, owner=None, lease_expires_at=None)

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        now = time.time()
        record = self._runs.get(run_id) or RunRecord(run_id, "", status, created_at=_stamp(now))
        if owner and (record.status != "running" or record.owner != owner):
            return  # taken over or ended meanwhile: not this owner's to finish
        self._runs[run_id] = dataclasses.replace(
            record,
            status=status,
            result=_copy(result),
            has_result=has_result,
            error=error,
            owner=None,
            lease_expires_at=None,
            updated_at=_stamp(now),
            cancel_requested=False,
        )

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        record = self._runs.get(run_id)
        if record is None or record.status not in ("running", "failed"):
            return _detached(record)
        now = time.time()
        executing = record.status == "running" and lease_is_live(record, now)
        record = self._runs[run_id] = dataclasses.replace(
            record,
            status="running" if executing else "cancelled",
            cancel_requested=executing,
            error=record.error if executing else "cancelled",
            updated_at=_stamp(now),
        )
        return _detached(record)

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        record = self._runs.get(run_id)
        if record is None or record.status not in ("failed", "cancelled", "dead"):
            return _detached(record)
        record = self._runs[run_id] = dataclasses.replace(
            record,
            status="running",
            owner=None,
            lease_expires_at=None,
            cancel_requested=False,
            recoveries=0,
            updated_at=_stamp(time.time()),
        )
        return _detached(record)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return _detached(self._runs.get(run_id))

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        runs = [
            run
            for run in reversed(self._runs.values())
            if status in (None, run.status) and workflow in (None, run.workflow)
        ]
        return [_detached(run) for run in runs[:limit]]

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        doomed = [
            run_id
            for run_id, run in self._runs.items()
            if run.status in statuses
            and run.updated_at is not None
            and run.updated_at.timestamp() < finished_before
        ]
        for run_id in doomed:
            del self._runs[run_id]
            self._steps.pop(run_id, None)
            self._signals.pop(run_id, None)
            self._attempts.pop(run_id, None)
        return len(doomed)


@overload
def _detached(record: RunRecord) -> RunRecord: ...
@overload
def _detached(record: None) -> None: ...
def _detached(record: RunRecord | None) -> RunRecord | None:
    """A record the caller may change without changing the stored run."""
    if record is None:
        return None
    return dataclasses.replace(record, inputs=_copy(record.inputs), result=_copy(record.result))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
