"""The store's SQL, written for one schema, and the decoding of its rows.

Values are kept as the text ``json.dumps`` made (a ``text`` column, not ``jsonb``):
``jsonb`` would reorder keys, drop duplicates, refuse ``\\u0000`` and ``NaN``, and
round big numbers through ``numeric``; the engine needs its values back exactly.
Times are epoch seconds (``double precision``) on the database's clock: every lease
is set and judged by ``now()`` of the server, never by a worker's clock.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from durable.records import RunRecord

#: A schema name the store accepts: a plain identifier, short enough that the
#: notification channel ``durable:<schema>`` stays within PostgreSQL's 63 bytes.
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")

#: The server's clock, as epoch seconds.
NOW = "extract(epoch FROM now())::double precision"

RUN_COLUMNS = (
    "run_id, workflow, status, inputs, result, has_result, error, owner, lease_expires_at, "
    "created_at, updated_at, recoveries, recoveries_without_progress, cancel_requested, "
    "input_digest, version"
)

#: A live lease, as SQL over a ``runs`` row ``r`` and an epoch ``now``
#: (``durable.records.lease_is_live``).
_LIVE = "(r.owner IS NOT NULL AND r.lease_expires_at IS NOT NULL AND r.lease_expires_at > now)"


def _claim(s: str) -> str:
    # One statement: create the run, or take it over when durable.records.claim_allowed
    # lets this owner ($4), or return the record as it is (refused). Two claims racing
    # make the loser wait for the winner's commit; what it then sees is the winner's
    # row in its UPDATE (re-read after the lock), but the row as it was before in its
    # SELECT (the statement's snapshot). So a loser gets no row back, and the store runs
    # the statement again, whenever the snapshot shows no row or a row this claim could
    # have taken: never a refusal with the state from before the winner's claim (a
    # "completed" run without its result, say, which the engine must not return).
    recovered = "(r.status = 'running' AND r.owner IS NOT NULL AND r.owner <> $4)::int"
    claimable = f"""r.workflow = $2
    AND ($7::text IS NULL OR r.input_digest IS NULL OR r.input_digest = $7)
    AND (r.status = 'failed'
         OR (r.status = 'completed' AND NOT r.has_result)
         OR (r.status = 'running' AND (r.owner = $4 OR r.owner = $6 OR NOT {_LIVE})))"""
    return f"""
WITH clock AS (SELECT {NOW} AS now),
created AS (
  INSERT INTO {s}.runs (run_id, workflow, status, inputs, owner, lease_expires_at,
                        created_at, updated_at, input_digest)
  SELECT $1, $2, 'running', $3, $4, now + $5, now, now, $7 FROM clock
  ON CONFLICT (run_id) DO NOTHING
  RETURNING {RUN_COLUMNS}
),
reclaimed AS (
  UPDATE {s}.runs r SET status = 'running', error = NULL, owner = $4,
    lease_expires_at = now + $5, updated_at = now,
    recoveries = r.recoveries + {recovered},
    recoveries_without_progress = r.recoveries_without_progress + {recovered},
    version = r.version + 1
  FROM clock
  WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM created) AND {claimable}
  RETURNING {", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", "))}
)
SELECT true, true, * FROM created
UNION ALL SELECT true, false, * FROM reclaimed
UNION ALL SELECT false, false, {", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", "))}
  FROM {s}.runs r, clock
  WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM created)
    AND NOT EXISTS (SELECT 1 FROM reclaimed) AND ({claimable}) IS NOT TRUE  -- NULL when $6 is
"""


def _checkpoint(s: str) -> str:
    # The fencing check and the write in one statement: the run's row is locked first
    # (FOR UPDATE waits for a take-over in flight and then reads its outcome), so no
    # owner change can fall between the check and the step it lets through. No row
    # back: the writer ($5) does not hold the run, nothing was written. A checkpoint is
    # progress: take-overs count anew. (The hot path: kept to the fewest parts, it
    # costs ~1.1x a bare INSERT on the server; _checkpoint_any's shape costs ~1.2x.)
    return f"""
WITH run AS (
  SELECT cancel_requested, recoveries_without_progress FROM {s}.runs
  WHERE run_id = $1 AND status = 'running' AND owner = $5 FOR UPDATE
),
progressed AS (
  UPDATE {s}.runs SET recoveries_without_progress = 0, version = version + 1
  WHERE run_id = $1 AND (SELECT recoveries_without_progress FROM run) > 0
)
INSERT INTO {s}.steps (run_id, step_id, result, attempt, created_at)
SELECT $1, $2, $3, $4, {NOW} FROM run
ON CONFLICT (run_id, step_id) DO UPDATE SET result = excluded.result,
  attempt = excluded.attempt, created_at = excluded.created_at,
  seq = nextval('{s}.step_order')
RETURNING (SELECT cancel_requested FROM run)
"""


def _checkpoint_any(s: str) -> str:
    # _checkpoint, also unfenced ($5 NULL: the seed's set_step), answering for every
    # case in one row: (allowed, cancel requested, the run's status).
    return f"""
WITH run AS (
  SELECT status, owner, cancel_requested FROM {s}.runs WHERE run_id = $1 FOR UPDATE
),
allowed AS (
  SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM run WHERE status = 'running' AND owner = $5)
    AS ok
),
saved AS (
  INSERT INTO {s}.steps (run_id, step_id, result, attempt, created_at)
  SELECT $1, $2, $3, $4, {NOW} FROM allowed WHERE ok
  ON CONFLICT (run_id, step_id) DO UPDATE SET result = excluded.result,
    attempt = excluded.attempt, created_at = excluded.created_at,
    seq = nextval('{s}.step_order')
  RETURNING 1
),
progressed AS (
  UPDATE {s}.runs SET recoveries_without_progress = 0, version = version + 1
  WHERE run_id = $1 AND recoveries_without_progress > 0 AND (SELECT ok FROM allowed)
  RETURNING 1
)
SELECT (SELECT ok FROM allowed), coalesce((SELECT cancel_requested FROM run), false),
       (SELECT status FROM run)
"""


def _checkpoint_batch(s: str) -> str:
    # _checkpoint for many steps at once (one round trip, one commit): row n of the
    # answer is the outcome of input n. The runs' rows are locked in run id order, so
    # two batches that share runs cannot deadlock on them. A batch never holds one
    # (run id, step id) twice (the batcher keeps such a step for the next batch).
    return f"""
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
    WITH ORDINALITY AS c(run_id, step_id, result, attempt, owner, n)
),
run AS (
  SELECT run_id, status, owner, cancel_requested FROM {s}.runs
  WHERE run_id IN (SELECT run_id FROM input) ORDER BY run_id FOR UPDATE
),
allowed AS (
  SELECT input.*, input.owner IS NULL OR (run.status = 'running' AND run.owner = input.owner)
      AS ok,
    coalesce(run.cancel_requested, false) AS cancel_requested, run.status AS run_status
  FROM input LEFT JOIN run USING (run_id)
),
saved AS (
  INSERT INTO {s}.steps (run_id, step_id, result, attempt, created_at)
  SELECT run_id, step_id, result, attempt, {NOW} FROM allowed WHERE ok
  ON CONFLICT (run_id, step_id) DO UPDATE SET result = excluded.result,
    attempt = excluded.attempt, created_at = excluded.created_at,
    seq = nextval('{s}.step_order')
  RETURNING 1
),
progressed AS (
  UPDATE {s}.runs SET recoveries_without_progress = 0, version = version + 1
  WHERE run_id IN (SELECT run_id FROM allowed WHERE ok) AND recoveries_without_progress > 0
  RETURNING 1
)
SELECT ok, cancel_requested, run_status FROM allowed ORDER BY n
"""


def _record_attempt(s: str) -> str:
    # Fenced like a checkpoint; attempts live with the run's record (a run without one
    # keeps none, like durable.datastore's rule), so the record's version goes up too.
    return f"""
WITH run AS (SELECT status, owner FROM {s}.runs WHERE run_id = $1 FOR UPDATE),
allowed AS (
  SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM run WHERE status = 'running' AND owner = $5)
    AS ok
),
cleared AS (
  DELETE FROM {s}.step_attempts WHERE run_id = $1 AND step_id = $2 AND $3 = 0
    AND (SELECT ok FROM allowed)
  RETURNING 1
),
counted AS (
  INSERT INTO {s}.step_attempts (run_id, step_id, attempts, error, updated_at)
  SELECT $1, $2, $3, $4, {NOW} FROM allowed WHERE ok AND $3 <> 0 AND EXISTS (SELECT 1 FROM run)
  ON CONFLICT (run_id, step_id) DO UPDATE SET attempts = excluded.attempts,
    error = excluded.error, updated_at = excluded.updated_at
  RETURNING 1
),
versioned AS (
  UPDATE {s}.runs SET version = version + 1 WHERE run_id = $1 AND (SELECT ok FROM allowed)
  RETURNING 1
)
SELECT (SELECT ok FROM allowed), (SELECT status FROM run)
"""


def _claim_orphans(s: str) -> str:
    # Expired runs of the workflows $1, oldest first, locked with SKIP LOCKED: workers
    # recovering at once each lock, and so take over, different runs; a run another
    # worker is claiming right now is skipped, not waited for. Counted as claim does.
    recovered = "(r.owner IS NOT NULL AND r.owner <> $2)::int"
    return f"""
WITH clock AS (SELECT {NOW} AS now),
orphans AS (
  SELECT r.run_id FROM {s}.runs r, clock
  WHERE r.status = 'running' AND r.workflow = ANY($1::text[]) AND NOT {_LIVE}
  ORDER BY r.created_at, r.run_id LIMIT $4
  FOR UPDATE OF r SKIP LOCKED
)
UPDATE {s}.runs r SET owner = $2, lease_expires_at = clock.now + $3, updated_at = clock.now,
  error = NULL, recoveries = r.recoveries + {recovered},
  recoveries_without_progress = r.recoveries_without_progress + {recovered},
  version = r.version + 1
FROM clock, orphans WHERE r.run_id = orphans.run_id
RETURNING {", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", "))}
"""


def _request_cancel(s: str) -> str:
    # Executing (a live lease on the server's clock): ask it to stop; otherwise the run
    # is cancelled now. The notification wakes a waiter of the run at once.
    live = _LIVE.replace("now", "clock.now")
    return f"""
WITH clock AS (SELECT {NOW} AS now),
changed AS (
  UPDATE {s}.runs r SET updated_at = clock.now, version = r.version + 1,
    cancel_requested = (r.status = 'running' AND {live}),
    status = CASE WHEN r.status = 'running' AND {live} THEN 'running' ELSE 'cancelled' END,
    error = CASE WHEN r.status = 'running' AND {live} THEN r.error ELSE 'cancelled' END
  FROM clock
  WHERE r.run_id = $1 AND r.status IN ('running', 'failed')
  RETURNING {", ".join(f"r.{c}" for c in RUN_COLUMNS.split(", "))}
),
woken AS (SELECT count(pg_notify($2, $3)) FROM changed)
SELECT changed.* FROM changed, woken
UNION ALL SELECT {RUN_COLUMNS} FROM {s}.runs
  WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM changed)
"""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store, for the schema ``schema`` (quoted once here)."""

    schema: str
    claim: str
    claim_orphans: str
    checkpoint: str
    checkpoint_any: str
    checkpoint_batch: str
    record_attempt: str
    request_cancel: str
    get_step: str
    load_steps: str
    list_steps: str
    load_attempts: str
    get_signal: str
    add_signal: str
    list_signals: str
    renew: str
    release: str
    mark_progress: str
    finish: str
    finish_unowned: str
    reopen: str
    get_run: str
    run_status: str
    read_run: str
    insert_run: str
    update_run: str
    clear_attempts: str
    put_attempts: str
    write_step: str
    write_step_fenced: str
    list_runs: str
    scan_runs: str
    delete_run: str
    delete_runs: str

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        s = f'"{schema}"'  # SCHEMA_NAME admits nothing that needs escaping
        step_columns = "run_id, step_id, result, attempt, created_at"
        run_values = ", ".join(f"${i}" for i in range(1, 17))
        run_updates = ", ".join(
            f"{column} = ${i}" for i, column in enumerate(RUN_COLUMNS.split(", "), 1) if i > 1
        )
        return cls(
            schema=schema,
            claim=_claim(s),
            claim_orphans=_claim_orphans(s),
            checkpoint=_checkpoint(s),
            checkpoint_any=_checkpoint_any(s),
            checkpoint_batch=_checkpoint_batch(s),
            record_attempt=_record_attempt(s),
            request_cancel=_request_cancel(s),
            get_step=f"SELECT result FROM {s}.steps WHERE run_id = $1 AND step_id = $2",
            # One row: the run's steps as the text of one JSON object, the stored values
            # spliced in as they are (NaN included), decoded with one json.loads.
            load_steps=(
                "SELECT '{' || coalesce(string_agg(to_json(step_id)::text || ':' || result, "
                f"',' ORDER BY seq), '') || '}}' FROM {s}.steps WHERE run_id = $1"
            ),
            list_steps=(
                f"SELECT step_id, result, attempt, created_at FROM {s}.steps "
                "WHERE run_id = $1 ORDER BY seq"
            ),
            load_attempts=f"SELECT step_id, attempts FROM {s}.step_attempts WHERE run_id = $1",
            get_signal=f"SELECT payload FROM {s}.signals WHERE run_id = $1 AND name = $2",
            add_signal=(
                f"WITH added AS (INSERT INTO {s}.signals (run_id, name, payload, created_at) "
                f"VALUES ($1, $2, $3, coalesce($4, {NOW})) ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT count(pg_notify($5, $6)) FROM added"
            ),
            list_signals=(
                f"SELECT name, payload, created_at FROM {s}.signals WHERE run_id = $1 ORDER BY seq"
            ),
            renew=(
                f"UPDATE {s}.runs SET lease_expires_at = {NOW} + $3, version = version + 1 "
                "WHERE run_id = $1 AND owner = $2 AND status = 'running' RETURNING 1"
            ),
            release=(
                f"UPDATE {s}.runs SET owner = NULL, lease_expires_at = NULL, "
                "version = version + 1 WHERE run_id = $1 AND owner = $2"
            ),
            mark_progress=(
                f"UPDATE {s}.runs SET recoveries_without_progress = 0, version = version + 1 "
                "WHERE run_id = $1 AND status = 'running' AND owner = $2 "
                "AND recoveries_without_progress > 0"
            ),
            finish=(
                f"UPDATE {s}.runs SET status = $3, result = $4, has_result = $5, error = $6, "
                f"owner = NULL, lease_expires_at = NULL, updated_at = {NOW}, "
                "cancel_requested = false, version = version + 1 "
                "WHERE run_id = $1 AND status = 'running' AND owner = $2 RETURNING 1"
            ),
            finish_unowned=(  # the seed's mark_run_*: always applies, makes a record
                f"INSERT INTO {s}.runs AS r (run_id, workflow, status, result, has_result, "
                f"error, created_at, updated_at) VALUES ($1, '', $2, $3, $4, $5, {NOW}, {NOW}) "
                "ON CONFLICT (run_id) DO UPDATE SET status = $2, result = $3, "
                "has_result = $4, error = $5, owner = NULL, lease_expires_at = NULL, "
                "updated_at = excluded.updated_at, cancel_requested = false, "
                "version = r.version + 1"
            ),
            reopen=(
                f"WITH reopened AS (UPDATE {s}.runs SET status = 'running', owner = NULL, "
                "lease_expires_at = NULL, cancel_requested = false, recoveries = 0, "
                f"recoveries_without_progress = 0, updated_at = {NOW}, version = version + 1 "
                "WHERE run_id = $1 AND status IN ('failed', 'cancelled', 'dead') "
                f"RETURNING {RUN_COLUMNS}) SELECT * FROM reopened UNION ALL "
                f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1 "
                "AND NOT EXISTS (SELECT 1 FROM reopened)"
            ),
            get_run=f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1",
            run_status=f"SELECT status FROM {s}.runs WHERE run_id = $1",
            read_run=(
                f"SELECT {RUN_COLUMNS}, (SELECT coalesce(json_object_agg(step_id, attempts), "
                f"'{{}}')::text FROM {s}.step_attempts a WHERE a.run_id = $1) "
                f"FROM {s}.runs WHERE run_id = $1"
            ),
            insert_run=(
                f"INSERT INTO {s}.runs ({RUN_COLUMNS}) VALUES ({run_values}) "
                "ON CONFLICT (run_id) DO NOTHING RETURNING 1"
            ),
            update_run=(
                f"UPDATE {s}.runs SET {run_updates} WHERE run_id = $1 AND version = $17 RETURNING 1"
            ),
            clear_attempts=f"DELETE FROM {s}.step_attempts WHERE run_id = $1",
            put_attempts=(
                f"INSERT INTO {s}.step_attempts (run_id, step_id, attempts, updated_at) "
                f"SELECT $1, step_id, attempts, {NOW} FROM unnest($2::text[], $3::int[]) "
                "AS a(step_id, attempts)"
            ),
            write_step=(
                f"INSERT INTO {s}.steps ({step_columns}) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (run_id, step_id) DO UPDATE SET result = excluded.result, "
                "attempt = excluded.attempt, created_at = excluded.created_at, "
                f"seq = nextval('{s}.step_order') RETURNING 1"
            ),
            write_step_fenced=(
                f"WITH run AS (SELECT version FROM {s}.runs WHERE run_id = $1 FOR UPDATE) "
                f"INSERT INTO {s}.steps ({step_columns}) "
                "SELECT $1, $2, $3, $4, $5 FROM run WHERE version = $6 "
                "ON CONFLICT (run_id, step_id) DO UPDATE SET result = excluded.result, "
                "attempt = excluded.attempt, created_at = excluded.created_at, "
                f"seq = nextval('{s}.step_order') RETURNING 1"
            ),
            list_runs=(
                f"SELECT {RUN_COLUMNS} FROM {s}.runs "
                "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow = $2) "
                "ORDER BY created_at DESC, run_id DESC LIMIT $3"
            ),
            scan_runs=(
                f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE status = $1 "
                "AND (created_at, run_id) > ($2, $3) ORDER BY created_at, run_id LIMIT $4"
            ),
            delete_run=(
                f"WITH run AS (DELETE FROM {s}.runs WHERE run_id = $1), "
                f"steps AS (DELETE FROM {s}.steps WHERE run_id = $1), "
                f"signals AS (DELETE FROM {s}.signals WHERE run_id = $1) "
                f"DELETE FROM {s}.step_attempts WHERE run_id = $1"
            ),
            delete_runs=(
                f"WITH doomed AS (DELETE FROM {s}.runs WHERE updated_at < $1 "
                "AND status = ANY($2::text[]) RETURNING run_id), "
                f"steps AS (DELETE FROM {s}.steps WHERE run_id IN (SELECT run_id FROM doomed)), "
                f"signals AS (DELETE FROM {s}.signals "
                "WHERE run_id IN (SELECT run_id FROM doomed)), "
                f"attempts AS (DELETE FROM {s}.step_attempts "
                "WHERE run_id IN (SELECT run_id FROM doomed)) "
                "SELECT count(*) FROM doomed"
            ),
        )


def run_record(row: Any, offset: int = 0) -> RunRecord:
    """A RunRecord from the RUN_COLUMNS of ``row``, starting at ``offset``."""
    (run_id, workflow, status, inputs, result, has_result, error, owner, lease, created,
     updated, recoveries, stalled, cancel_requested, input_digest) = tuple(
        row[offset : offset + 15]
    )  # fmt: skip
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        status=status,
        inputs=None if inputs is None else json.loads(inputs),
        result=None if result is None else json.loads(result),
        has_result=has_result,
        error=error,
        owner=owner,
        lease_expires_at=lease,
        created_at=stamp(created),
        updated_at=stamp(updated),
        recoveries=recoveries,
        recoveries_without_progress=stalled,
        cancel_requested=cancel_requested,
        input_digest=input_digest,
    )


def stamp(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def epoch(when: dt.datetime | None) -> float | None:
    return None if when is None else when.timestamp()
