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
from typing import Any, Literal

from .store import RunClaim, RunRecord, RunStatus, Store, claim_allowed


class InMemoryStore(Store):
    """Dict-backed store with no persistence and no dependencies (``db="memory://"``)."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[str, str]] = {}
        self._signals: dict[tuple[str, str], str] = {}
        self._runs: dict[str, RunRecord] = {}

    @classmethod
    def from_url(cls, url: str) -> InMemoryStore:
        return cls()

    async def setup(self) -> None:
        return None

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        raw = self._steps.get(run_id, {}).get(step_id)
        return (False, None) if raw is None else (True, json.loads(raw))

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        self._steps.setdefault(run_id, {})[step_id] = json.dumps(result)

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return {sid: json.loads(raw) for sid, raw in self._steps.get(run_id, {}).items()}

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        raw = self._signals.get((run_id, name))
        return (False, None) if raw is None else (True, json.loads(raw))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        if (run_id, name) in self._signals:
            return False
        self._signals[(run_id, name)] = json.dumps(payload)
        return True

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
    ) -> RunClaim:
        now = time.time()
        record = self._runs.get(run_id)
        if not claim_allowed(record, owner=owner, now=now, takeover_from=takeover_from):
            assert record is not None
            return RunClaim(False, record)
        stamp = _stamp(now)
        if record is None:
            record = RunRecord(run_id, workflow, "running", inputs=_copy(inputs), created_at=stamp)
        record = dataclasses.replace(
            record,
            status="running",
            error=None,
            owner=owner,
            lease_expires_at=now + lease_seconds,
            updated_at=stamp,
        )
        self._runs[run_id] = record
        return RunClaim(True, record)

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
        status: Literal["completed", "failed"],
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        now = time.time()
        record = self._runs.get(run_id) or RunRecord(run_id, "", status, created_at=_stamp(now))
        if owner and record.owner not in (None, owner):
            return  # taken over: the new owner records the outcome
        self._runs[run_id] = dataclasses.replace(
            record,
            status=status,
            result=_copy(result),
            has_result=has_result,
            error=error,
            owner=None,
            lease_expires_at=None,
            updated_at=_stamp(now),
        )

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

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
        return runs[:limit]


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
