"""The SQL of the store's statements, and rows turned into records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from durable.store import RunRecord

from .jsontext import loads
from .transactions import Row, Tx

RUN_COLUMNS = (
    "run_id, workflow, status, inputs, result, has_result, error, owner, "
    "lease_expires_at, created_at, updated_at, recoveries, cancel_requested, input_digest, "
    "recoveries_without_progress"
)

# A claim is granted on a new run by CREATE_RUN (a row written says the run is new: its
# record is then new_run_record's, made in Python rather than read back), or
# on a run on record by RECLAIM when its WHERE allows it: the rules of
# durable.store.claim_allowed, same_identity and counts_as_recovery, in SQL. A run on
# record is another call's, and RECLAIM changes nothing, when its workflow differs or
# both digests are known and differ. RECLAIM never sets input_digest: a run recorded
# without one (before schema version 3) keeps NULL, which tells the engine that its
# engine step ids may be in the old form.
CREATE_RUN = """
INSERT INTO runs (run_id, workflow, status, inputs, owner, lease_expires_at,
                  created_at, updated_at, input_digest)
VALUES (:run_id, :workflow, 'running', :inputs, :owner, :lease, :now, :now, :input_digest)
ON CONFLICT (run_id) DO NOTHING
"""

RECLAIM = f"""
UPDATE runs SET
    status = 'running', error = NULL, owner = :owner, lease_expires_at = :lease,
    updated_at = :now,
    recoveries = recoveries + (status = 'running' AND owner IS NOT NULL AND owner != :owner),
    recoveries_without_progress = recoveries_without_progress
        + (status = 'running' AND owner IS NOT NULL AND owner != :owner)
WHERE run_id = :run_id AND workflow = :workflow
  AND (input_digest IS NULL OR :input_digest IS NULL OR input_digest = :input_digest)
  AND (
       status = 'failed'
    OR (status = 'completed' AND has_result = 0)
    OR (status = 'running' AND (
            owner IS NULL OR owner = :owner OR owner = :takeover
            OR lease_expires_at IS NULL OR lease_expires_at <= :now)))
RETURNING {RUN_COLUMNS}
"""


#: What a fenced write checks (durable.records.holds_run), what a checkpoint answers
#: (cancel_requested), and whether it clears the take-overs without progress.
RUN_FENCE = (
    "SELECT status, owner, cancel_requested, recoveries_without_progress FROM runs WHERE run_id = ?"
)

#: SAVE_STEP for the usual checkpoint, in one statement: written (one row changed) only
#: while ``owner`` holds the run (durable.records.holds_run) and there is nothing else
#: to do: no cancellation to report, no count of take-overs to clear. Otherwise nothing
#: is written, and the checkpoint goes on as RUN_FENCE, then SAVE_STEP, in the same
#: transaction. (Parameters: run_id, step_id, result, attempt, created_at, owner.)
FENCED_SAVE_STEP = (
    "INSERT INTO steps (run_id, step_id, result, attempt, created_at) "
    "SELECT ?1, ?2, ?3, ?4, ?5 FROM runs WHERE run_id = ?1 AND status = 'running' "
    "AND owner = ?6 AND cancel_requested = 0 AND recoveries_without_progress = 0 "
    "ON CONFLICT (run_id, step_id) DO UPDATE SET "
    "result = excluded.result, attempt = excluded.attempt, created_at = excluded.created_at"
)

SAVE_STEP = (
    "INSERT INTO steps (run_id, step_id, result, attempt, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET "
    "result = excluded.result, attempt = excluded.attempt, created_at = excluded.created_at"
)

#: Steps per page of a run's steps loaded at its start.
LOAD_PAGE = 128

# One page of a run's steps as the text of one JSON object, with its last step id. The
# results are spliced in as stored (json.dumps output, NaN included), not re-parsed.
_STEPS_PAGE = """
SELECT '{{' || coalesce(group_concat(json_quote(step_id) || ':' || result, ','), '') || '}}',
       max(step_id), count(*)
FROM (SELECT step_id, result FROM steps WHERE run_id = ? AND step_id {after} ?
      ORDER BY step_id LIMIT ?)
"""
FIRST_STEPS_PAGE = _STEPS_PAGE.format(after=">=")  # with "": every step id
NEXT_STEPS_PAGE = _STEPS_PAGE.format(after=">")


async def select_run(tx: Tx, run_id: str) -> RunRecord | None:
    rows = await tx.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
    return run_record(rows[0]) if rows else None


def run_record(row: Row) -> RunRecord:
    (run_id, workflow, status, inputs, result, has_result, error, owner, lease, created,
     updated, recoveries, cancel_requested, input_digest, stalled) = row  # fmt: skip
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        status=status,
        inputs=None if inputs is None else loads(inputs),
        result=None if result is None else loads(result),
        has_result=bool(has_result),
        error=error,
        owner=owner,
        lease_expires_at=lease,
        created_at=stamp(created),
        updated_at=stamp(updated),
        recoveries=recoveries,
        recoveries_without_progress=stalled,
        cancel_requested=bool(cancel_requested),
        input_digest=input_digest,
    )


def new_run_record(params: dict[str, Any]) -> RunRecord:
    """The record CREATE_RUN wrote with ``params``: every other column at its default."""
    created = stamp(params["now"])
    return RunRecord(
        run_id=params["run_id"],
        workflow=params["workflow"],
        status="running",
        inputs=loads(params["inputs"]),  # a copy, as a record read back would be
        owner=params["owner"],
        lease_expires_at=params["lease"],
        created_at=created,
        updated_at=created,
        input_digest=params["input_digest"],
    )


def stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)
