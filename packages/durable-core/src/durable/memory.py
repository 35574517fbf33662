"""A store that lives in the process: for tests, scripts and development.

Nothing survives the process, but within it the store behaves like a real one: it is
a :class:`~durable.datastore.DataStore`, so runs have records, leases and fenced
writes by the same rules as any store, and signals are first-write-wins. Values are
kept as JSON text, so a caller never shares a mutable object with the store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from .datastore import DataStore, RunData
from .records import RunRecord, RunStatus, SignalRecord, StepRecord


class _Saved(NamedTuple):
    """A step or signal: its id, its value as JSON text, its attempt and time."""

    key: str
    text: str
    attempt: int
    at: Any


class InMemoryStore(DataStore):
    """Dict-backed store with no persistence and no dependencies (``db="memory://"``).

    One event loop's tasks never interleave inside a primitive (none awaits), which
    makes each compare-and-set atomic.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunData] = {}
        self._steps: dict[str, dict[str, _Saved]] = {}
        self._signals: dict[str, dict[str, _Saved]] = {}

    @classmethod
    def from_url(cls, url: str) -> InMemoryStore:
        return cls()

    async def read_run(self, run_id: str) -> RunData | None:
        data = self._runs.get(run_id)
        return None if data is None else dataclasses.replace(data, record=_copied(data.record))

    async def write_run(self, data: RunData, *, expected: int | None) -> bool:
        current = self._runs.get(data.record.run_id)
        if (None if current is None else current.version) != expected:
            return False
        self._runs[data.record.run_id] = dataclasses.replace(data, record=_copied(data.record))
        return True

    async def read_steps(self, run_id: str) -> Sequence[StepRecord]:
        return [
            StepRecord(s.key, json.loads(s.text), s.attempt, s.at)
            for s in self._steps.get(run_id, {}).values()
        ]

    async def write_step(self, run_id: str, step: StepRecord, *, expected: int | None) -> bool:
        current = self._runs.get(run_id)
        if expected is not None and (current is None or current.version != expected):
            return False
        steps = self._steps.setdefault(run_id, {})
        steps.pop(step.step_id, None)  # a step written again moves to the end: oldest first
        steps[step.step_id] = _Saved(
            step.step_id, json.dumps(step.value), step.attempt, step.created_at
        )
        return True

    async def read_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return [
            SignalRecord(s.key, json.loads(s.text), s.at)
            for s in self._signals.get(run_id, {}).values()
        ]

    async def add_signal(self, run_id: str, signal: SignalRecord) -> bool:
        signals = self._signals.setdefault(run_id, {})
        if signal.name in signals:
            return False
        signals[signal.name] = _Saved(signal.name, json.dumps(signal.payload), 1, signal.created_at)
        return True

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        after = tuple(json.loads(cursor)) if cursor is not None else None
        keyed = sorted(
            (_created_key(data.record), data.record)
            for data in self._runs.values()
            if data.record.status == status
        )
        page = [record for key, record in keyed if after is None or key > after][:limit]
        next_cursor = json.dumps(_created_key(page[-1])) if len(page) == limit else None
        return [_copied(record) for record in page], next_cursor

    async def delete_run(self, run_id: str) -> None:
        for table in (self._runs, self._steps, self._signals):
            table.pop(run_id, None)


def _copied(record: RunRecord) -> RunRecord:
    """A record the caller may change without changing the stored run."""
    return dataclasses.replace(record, inputs=_copy(record.inputs), result=_copy(record.result))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _created_key(record: RunRecord) -> tuple[str, str]:
    created = record.created_at.isoformat() if record.created_at is not None else ""
    return created, record.run_id
