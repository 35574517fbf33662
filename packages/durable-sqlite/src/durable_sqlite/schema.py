"""The database schema and its migrations.

``PRAGMA user_version`` holds the schema version. Each entry of :data:`MIGRATIONS`
moves a database one version up; :func:`migrate` applies the missing ones inside the
caller's write transaction, so processes opening one file at once migrate it once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 4

_V1 = """
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL,
    inputs           TEXT,
    result           TEXT,
    has_result       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    owner            TEXT,
    lease_expires_at REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE TABLE steps (
    run_id     TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    result     TEXT NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;
CREATE TABLE signals (
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
"""

# The seed (python-durable 0.2) wrote version 0 files with the same table names: its
# steps wrapped each value as {"v": value}, and its finished runs said 'done'.
_FROM_SEED = """
ALTER TABLE runs RENAME TO seed_runs;
ALTER TABLE steps RENAME TO seed_steps;
ALTER TABLE signals RENAME TO seed_signals;
{v1}
INSERT INTO runs (run_id, workflow, status, error, created_at, updated_at)
    SELECT run_id, workflow_id,
           CASE status WHEN 'done' THEN 'completed' WHEN 'failed' THEN 'failed' ELSE 'running' END,
           error, unixepoch(created_at), unixepoch(updated_at)
    FROM seed_runs;
INSERT INTO steps (run_id, step_id, result, attempt, created_at)
    SELECT run_id, step_id, result -> '$.v', attempt, unixepoch(created_at)
    FROM seed_steps;
INSERT INTO signals (run_id, name, payload, created_at)
    SELECT run_id, name, payload, unixepoch('now') FROM seed_signals;
DROP TABLE seed_runs;
DROP TABLE seed_steps;
DROP TABLE seed_signals;
"""


def _to_v1(conn: sqlite3.Connection) -> None:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    script = _FROM_SEED.format(v1=_V1) if "steps" in tables else _V1
    for statement in filter(str.strip, script.split(";")):
        conn.execute(statement)


def _to_v2(conn: sqlite3.Connection) -> None:
    # Recovery counting (dead letters), cancellation of running runs, and failed
    # attempts that survive a restart.
    conn.execute("ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX runs_by_update ON runs (status, updated_at)")
    conn.execute(
        "CREATE TABLE step_attempts (run_id TEXT NOT NULL, step_id TEXT NOT NULL, "
        "attempts INTEGER NOT NULL, error TEXT, updated_at REAL NOT NULL, "
        "PRIMARY KEY (run_id, step_id)) WITHOUT ROWID"
    )


def _to_v3(conn: sqlite3.Connection) -> None:
    # A digest of each run's call arguments: a claim with other inputs is refused. Runs
    # recorded before it keep NULL for good: not compared, and a sign to the engine that
    # their engine step ids may be in the old form.
    conn.execute("ALTER TABLE runs ADD COLUMN input_digest TEXT")


def _to_v4(conn: sqlite3.Connection) -> None:
    # Take-overs since the last checkpoint: dead-lettering counts only these.
    conn.execute(
        "ALTER TABLE runs ADD COLUMN recoveries_without_progress INTEGER NOT NULL DEFAULT 0"
    )


#: MIGRATIONS[n] moves a database from version n to n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_to_v1, _to_v2, _to_v3, _to_v4]


class SchemaError(Exception):
    """The file's schema is not one this version can use as it is."""


def check_version(conn: sqlite3.Connection, *, read_only: bool = False) -> int:
    """The file's schema version, refused when this package cannot use it as it is."""
    found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"schema version {found} is newer than this durable-sqlite knows "
            f"({SCHEMA_VERSION}); upgrade durable-sqlite"
        )
    # Only a read-write open migrates; a read-only one must not misread older data.
    if read_only and found < SCHEMA_VERSION:
        raise SchemaError(
            f"schema version {found} is older than this durable-sqlite's ({SCHEMA_VERSION}); "
            "open the file read-write once to migrate it"
        )
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found."""
    found = check_version(conn)
    for version in range(found, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    if found != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found
