"""What stores keep about runs, steps and signals, and the rule for owning a run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from .errors import LeaseLostError

RunStatus = Literal["running", "completed", "failed", "cancelled", "dead"]
RUN_STATUSES: tuple[RunStatus, ...] = ("running", "completed", "failed", "cancelled", "dead")
#: The statuses a run ends in (``Store.finish_run``).
FinalStatus = Literal["completed", "failed", "cancelled", "dead"]
FINAL_STATUSES: tuple[FinalStatus, ...] = ("completed", "failed", "cancelled", "dead")


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One checkpointed step of a run."""

    step_id: str
    value: Any
    attempt: int = 1
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One delivered signal of a run."""

    name: str
    payload: Any
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a store knows about one run.

    ``steps`` and ``signals`` are filled by ``Workflow.get_run``; records from
    ``list_runs`` and ``Store.get_run`` leave them empty.
    """

    run_id: str
    workflow: str
    status: RunStatus
    inputs: Any = None
    result: Any = None
    #: False when the workflow returned a value that could not be stored: a later
    #: call runs the body again with every step replayed.
    has_result: bool = False
    error: str | None = None
    owner: str | None = None
    #: Epoch seconds until which ``owner`` holds the run.
    lease_expires_at: float | None = None
    #: Timezone-aware (UTC) times of the record's creation and last change.
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    #: How many times the run was taken over from an owner that vanished mid-run.
    recoveries: int = 0
    #: Of those, the take-overs since the run's last checkpoint: a checkpoint sets it
    #: back to 0, so only a run that keeps dying without progress (a poison run)
    #: reaches ``max_recoveries`` and is dead-lettered.
    recoveries_without_progress: int = 0
    #: Set by ``Workflow.cancel`` while the run executes; it stops at its next step.
    cancel_requested: bool = False
    #: A digest of the call's arguments (``durable.identity.call_inputs``): a call of
    #: the run id with other arguments is refused. None for runs recorded before 0.4.
    input_digest: str | None = None
    steps: tuple[StepRecord, ...] = ()
    signals: tuple[SignalRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class RunClaim:
    """The outcome of :meth:`Store.claim_run`.

    ``acquired`` means the caller now owns the run and may execute it. Otherwise
    ``record`` says why not: the run ended for good, or another owner's lease is live.
    ``created`` means this claim made the run's record: the run starts afresh, and the
    engine does not ask :meth:`Store.load_steps` for steps it cannot have (the engine
    writes a run's steps only after claiming it). A store that cannot tell leaves it
    False, and the engine loads the steps.
    """

    acquired: bool
    record: RunRecord
    created: bool = False


def claim_allowed(
    record: RunRecord | None,
    *,
    owner: str,
    now: float,
    takeover_from: str | None = None,
    workflow: str | None = None,
    input_digest: str | None = None,
) -> bool:
    """The rule of :meth:`Store.claim_run`, for stores that decide it in Python."""
    if record is not None and not same_identity(record, workflow, input_digest):
        return False  # another workflow's run, or other inputs: the engine says which
    if record is None or record.status == "failed":
        return True
    if record.status == "completed":
        return not record.has_result
    if record.status != "running":  # cancelled or dead: only Store.reopen_run revives it
        return False
    return record.owner in (owner, takeover_from) or not lease_is_live(record, now)


def same_identity(record: RunRecord, workflow: str | None, input_digest: str | None) -> bool:
    """Whether a call of ``workflow`` with inputs ``input_digest`` is the run on record.

    A run id belongs to the workflow that created it, called with the same inputs. A
    digest missing on either side (a run recorded before digests, a caller that does
    not give one) is not compared; neither is a missing ``workflow``.
    """
    if workflow is not None and record.workflow != workflow:
        return False
    return input_digest is None or record.input_digest in (None, input_digest)


def lease_is_live(record: RunRecord, now: float) -> bool:
    """Whether an owner holds the run under a lease that has not run out."""
    return (
        record.owner is not None
        and record.lease_expires_at is not None
        and record.lease_expires_at > now
    )


def counts_as_recovery(record: RunRecord | None, owner: str) -> bool:
    """A granted claim on a run still marked running by someone else: its owner vanished."""
    return (
        record is not None
        and record.status == "running"
        and record.owner is not None
        and record.owner != owner
    )


def holds_run(record: RunRecord | None, owner: str) -> bool:
    """The fencing rule (``Store.fences_writes``): ``owner`` may write the run's steps,
    attempts and outcome only while the run is running under that owner."""
    return record is not None and record.status == "running" and record.owner == owner


def storable_text(text: str) -> str:
    """``text`` (an error's message) as every store can keep it: NUL characters, which
    PostgreSQL's text refuses, and lone surrogates, which no UTF-8 encoder takes, are
    written as escapes (``\\x00``, ``\\udc80``). An error's text comes from user code
    (``f"{exc}"``); a run whose outcome cannot be written stays ``running`` unowned, and
    recovery would run its body again and again."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def stale_write(
    run_id: str, what: str, why: str = "another owner holds the run now"
) -> LeaseLostError:
    """The error of a fenced write refused: ``what`` (``"step 'charge'"``) was not kept,
    ``why`` says what the store found instead of the writer holding the run."""
    return LeaseLostError(
        f"run {run_id!r}: {what} was not recorded: {why} (this process lost its lease, "
        "paused or cut off past it), and only the owner's writes count"
    )
