"""How values and records are written in a run's hash, and read back.

A step field holds ``"<attempt> <epoch seconds>\\n<JSON>"``; a signal field holds
``"<32-character delivery token> <epoch seconds>\\n<JSON>"``. JSON from ``json.dumps``
never contains a raw newline, so the first one ends the header. The times of steps
and signals come from the writing process's clock (they are for display); the run
record's times and leases come from the server's.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any, cast

from durable.records import stale_write
from durable.store import RunRecord, SignalRecord, StepRecord

from .keys import RECORD_FIELDS, SIGNAL, STEP

#: Length of the delivery token in front of a signal (see scripts.SET_SIGNAL).
TOKEN_LENGTH = 32


def text(value: Any) -> str:
    """A reply item as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def encode_step(result: Any, attempt: int) -> str:
    return f"{attempt} {time.time():.6f}\n{json.dumps(result)}"


def encode_signal(token: str, payload: Any) -> str:
    return f"{token} {time.time():.6f}\n{json.dumps(payload)}"


def decode_value(raw: Any) -> Any:
    """The JSON value of a step or signal field, without its header."""
    return json.loads(text(raw).partition("\n")[2])


def _header(raw: Any) -> tuple[str, float, Any]:
    head, _, body = text(raw).partition("\n")
    first, _, at = head.partition(" ")
    return first, float(at), json.loads(body)


def decode_steps(fields: dict[Any, Any]) -> dict[str, Any]:
    """``step id -> value`` from all fields of a run's hash (HGETALL)."""
    steps: dict[str, Any] = {}
    for field, raw in fields.items():
        name = text(field)
        if name.startswith(STEP):
            steps[name[len(STEP) :]] = decode_value(raw)
    return steps


def step_records(fields: dict[Any, Any]) -> list[StepRecord]:
    """The run's steps with attempts and times, oldest first."""
    steps: list[StepRecord] = []
    for field, raw in fields.items():
        name = text(field)
        if name.startswith(STEP):
            attempt, at, value = _header(raw)
            steps.append(StepRecord(name[len(STEP) :], value, int(attempt), _stamp(at)))
    return sorted(steps, key=lambda step: (step.created_at or _EPOCH, step.step_id))


def signal_records(fields: dict[Any, Any]) -> list[SignalRecord]:
    """The run's delivered signals, oldest first."""
    signals: list[SignalRecord] = []
    for field, raw in fields.items():
        name = text(field)
        if name.startswith(SIGNAL):
            _token, at, payload = _header(raw)
            signals.append(SignalRecord(name[len(SIGNAL) :], payload, _stamp(at)))
    return sorted(signals, key=lambda signal: (signal.created_at or _EPOCH, signal.name))


def decode_record(run_id: str, values: Sequence[Any]) -> RunRecord | None:
    """The record from the values of RECORD_FIELDS, in order (None: no such run)."""
    fields = {
        name: text(value)
        for name, value in zip(RECORD_FIELDS, values, strict=True)
        if value is not None
    }
    if "status" not in fields:
        return None
    status: Any = fields["status"]
    has_result = fields.get("has_result") == "1"
    lease = fields.get("lease")
    created, updated = fields.get("created"), fields.get("updated")
    return RunRecord(
        run_id=run_id,
        workflow=fields.get("workflow", ""),
        status=status,
        inputs=json.loads(fields["inputs"]) if "inputs" in fields else None,
        result=json.loads(fields["result"]) if has_result and "result" in fields else None,
        has_result=has_result,
        error=fields.get("error"),
        owner=fields.get("owner"),
        lease_expires_at=None if lease is None else float(lease),
        created_at=None if created is None else _stamp(float(created)),
        updated_at=None if updated is None else _stamp(float(updated)),
        recoveries=int(fields.get("recoveries", "0")),
        recoveries_without_progress=int(fields.get("recoveries_without_progress", "0")),
        cancel_requested=fields.get("cancel_requested") == "1",
        input_digest=fields.get("input_digest"),
    )


_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def _stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def decode_attempts(fields: dict[Any, Any]) -> dict[str, int]:
    """``step id -> failed attempts`` from the attempts hash (HGETALL); 0s are left out."""
    attempts = {text(field): int(text(value)) for field, value in fields.items()}
    return {step_id: count for step_id, count in attempts.items() if count > 0}


def raise_refusal(run_id: str, what: str, reply: Any, where: str) -> None:
    """Raise the LeaseLostError of a fenced write a script refused (it replied ``{code,
    status, holder}``, see scripts' ``refusal``); return when the reply is no refusal."""
    if not isinstance(reply, list):
        return
    fields = cast("Sequence[Any]", reply)
    code, status, holder = int(fields[0]), text(fields[1]), text(fields[2])
    if code == 0:
        why = f"its record is gone from the Redis store {where} (expired, deleted or flushed)"
    elif code == 1:
        why = f"the run is {status} now"
    elif holder:
        why = f"another owner holds the run now ({holder})"
    else:
        why = "no owner holds the run now (it was released or reopened)"
    raise stale_write(run_id, what, why)
