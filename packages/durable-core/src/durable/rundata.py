"""What a :class:`~durable.datastore.DataStore` keeps of a run, and its JSON form.

``RunData`` is a run's record with its failed attempts and a version (the unit of
``read_run`` / ``write_run``); the ``*_to_json`` / ``*_from_json`` helpers turn it,
and steps and signals, into plain JSON objects for stores that keep text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .records import RunRecord, SignalRecord, StepRecord


@dataclass(frozen=True, slots=True)
class RunData:
    """A run's record as a :class:`DataStore` keeps it.

    ``attempts`` are the failed attempts per step (``Store.record_attempt``);
    ``version`` goes up by one with every write of the record, so that a write made
    on an old read can be refused.
    """

    record: RunRecord
    attempts: Mapping[str, int] = field(default_factory=dict[str, int])
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        """The data as one JSON object (times as epoch seconds), for stores of text."""
        fields = {f.name: getattr(self.record, f.name) for f in dataclasses.fields(RunRecord)}
        for name in ("created_at", "updated_at"):
            fields[name] = None if fields[name] is None else fields[name].timestamp()
        del fields["steps"], fields["signals"]
        return {"record": fields, "attempts": dict(self.attempts), "version": self.version}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunData:
        """The data :meth:`to_json` gave."""
        fields = dict(doc["record"])
        for name in ("created_at", "updated_at"):
            fields[name] = None if fields[name] is None else _stamp(fields[name])
        return cls(RunRecord(**fields), dict(doc["attempts"]), doc["version"])


def step_to_json(step: StepRecord) -> dict[str, Any]:
    """A step as one JSON object (see :meth:`RunData.to_json`)."""
    at = None if step.created_at is None else step.created_at.timestamp()
    return {"step_id": step.step_id, "value": step.value, "attempt": step.attempt, "at": at}


def step_from_json(doc: Mapping[str, Any]) -> StepRecord:
    at = None if doc["at"] is None else _stamp(doc["at"])
    return StepRecord(doc["step_id"], doc["value"], doc["attempt"], at)


def signal_to_json(signal: SignalRecord) -> dict[str, Any]:
    at = None if signal.created_at is None else signal.created_at.timestamp()
    return {"name": signal.name, "payload": signal.payload, "at": at}


def signal_from_json(doc: Mapping[str, Any]) -> SignalRecord:
    return SignalRecord(
        doc["name"], doc["payload"], None if doc["at"] is None else _stamp(doc["at"])
    )


def _stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
