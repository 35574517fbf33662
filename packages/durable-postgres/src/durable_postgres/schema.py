"""The store's tables: made on first use in a schema of their own, and migrated forward.

Several processes may start at once against an empty database: each takes a
transaction-level advisory lock on the schema's name first, so one of them creates or
migrates and the others find the work done. The schema's version is recorded in
``<schema>.schema_version``; a version newer than this package knows is refused
rather than written to with old rules.
"""

from __future__ import annotations

from collections.abc import Callable

from .connections import Conn

#: The newest schema version this package writes.
SCHEMA_VERSION = 1


class SchemaError(Exception):
    """The schema cannot be used by this version of the package."""


def _v1(s: str) -> str:
    return f"""
CREATE SEQUENCE {s}.step_order;
CREATE TABLE {s}.runs (
    run_id text PRIMARY KEY,
    workflow text NOT NULL,
    status text NOT NULL,
    inputs text,
    result text,
    has_result boolean NOT NULL DEFAULT false,
    error text,
    owner text,
    lease_expires_at double precision,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    recoveries integer NOT NULL DEFAULT 0,
    recoveries_without_progress integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    input_digest text,
    version bigint NOT NULL DEFAULT 1
);
CREATE INDEX runs_by_status ON {s}.runs (status, created_at, run_id);
CREATE INDEX runs_by_change ON {s}.runs (updated_at);
CREATE TABLE {s}.steps (
    run_id text NOT NULL,
    step_id text NOT NULL,
    result text NOT NULL,
    attempt integer NOT NULL,
    created_at double precision NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.step_order'),
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE {s}.signals (
    run_id text NOT NULL,
    name text NOT NULL,
    payload text NOT NULL,
    created_at double precision NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.step_order'),
    PRIMARY KEY (run_id, name)
);
CREATE TABLE {s}.step_attempts (
    run_id text NOT NULL,
    step_id text NOT NULL,
    attempts integer NOT NULL,
    error text,
    updated_at double precision NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
"""


#: MIGRATIONS[n] takes the schema from version n to n + 1 (0: nothing there yet).
MIGRATIONS: list[Callable[[str], str]] = [_v1]


async def migrate(conn: Conn, schema: str) -> None:
    """Create the schema or bring it to :data:`SCHEMA_VERSION`, under an advisory lock."""
    s = f'"{schema}"'
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"durable:{schema}"
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer)")
        found = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_version") or 0
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"schema {schema!r} is at version {found}, made by a newer durable-postgres "
                f"(this one knows versions up to {SCHEMA_VERSION}): upgrade durable-postgres"
            )
        for version in range(found, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[version](s))
        if found < SCHEMA_VERSION:
            await conn.execute(f"DELETE FROM {s}.schema_version")
            await conn.execute(
                f"INSERT INTO {s}.schema_version (version) VALUES ($1)", SCHEMA_VERSION
            )
