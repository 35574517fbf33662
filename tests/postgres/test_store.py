"""The PostgreSQL store beyond the contract: its URL, its pools, its clock, its masking.

- ``repr`` of the store and of a Workflow on it, and every error, never show the
  password (in the user info or as a ``?password=`` option, encoded or not).
- ``?schema=`` is the store's option; the rest of the query goes to asyncpg.
- A user's asyncpg pool, even of one connection, is used as it is and not closed.
- Leases are judged by the database's clock: workers whose clocks are an hour off
  neither steal a live run nor keep an expired one.
- One store (and Workflow) serves two event loops one after the other.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from durable import Workflow
from durable.errors import DurableError, StoreError
from durable.plugins import resolve_store
from durable_postgres import PostgresStore

from .conftest import Spawn, driver_dsn, with_schema

SECRET = "pw-Zq9!s3cr3t"
SPELLINGS = (SECRET, quote(SECRET, safe=""), quote(SECRET))


def shows_no_secret(text: str) -> bool:
    return not any(spelling in text for spelling in SPELLINGS)


def url_with_password(url: str, schema: str, *, as_option: bool = False) -> str:
    parts = urlsplit(with_schema(url, schema))
    user = parts.username or "postgres"
    host = f"{parts.hostname}:{parts.port or 5432}"
    if as_option:
        query = f"{parts.query}&password={quote(SECRET, safe='')}"
        return str(urlunsplit((parts.scheme, f"{user}@{host}", parts.path, query, "")))
    netloc = f"{user}:{quote(SECRET, safe='')}@{host}"
    return str(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


# -- masking ------------------------------------------------------------------------------


@pytest.mark.parametrize("as_option", [False, True], ids=["userinfo", "option"])
async def test_repr_of_store_and_workflow_mask_the_password(
    pg_url: str, schema: str, as_option: bool
) -> None:
    url = url_with_password(pg_url, schema, as_option=as_option)
    for store in (PostgresStore(url), resolve_store(url)):
        assert shows_no_secret(repr(store)), repr(store)
        assert shows_no_secret(str(store)), str(store)
        assert "***" in repr(store), repr(store)
    wf = Workflow("app", db=url)
    try:
        assert shows_no_secret(repr(wf)), repr(wf)

        @wf.task
        async def one() -> int:
            return 1

        @wf.workflow
        async def flow() -> int:
            return await one()

        assert await flow.run("masked") == 1  # the trusting server takes any password
        assert shows_no_secret(repr(wf)), repr(wf)
        assert shows_no_secret(repr(wf.store)), repr(wf.store)
    finally:
        await wf.close()


def test_a_url_of_another_scheme_is_refused_with_the_password_masked() -> None:
    with pytest.raises(DurableError) as caught:
        PostgresStore(f"mysql://app:{quote(SECRET, safe='')}@db:3306/app")
    assert shows_no_secret(str(caught.value)), caught.value


def test_a_bad_schema_name_is_refused_with_the_password_masked(pg_url: str) -> None:
    url = url_with_password(pg_url, "x").replace("schema=x", "schema=no;drop")
    with pytest.raises(DurableError) as caught:
        PostgresStore(url)
    assert "schema" in str(caught.value)
    assert shows_no_secret(str(caught.value)), caught.value


async def test_a_statement_error_names_the_store_and_masks_the_password(
    pg_url: str, schema: str
) -> None:
    """An error from the server (here: the store's tables dropped under it) is a
    StoreError naming the cause, without the password."""
    store = PostgresStore(url_with_password(pg_url, schema))
    try:
        await store.setup()
        await store.set_step("r", "s", 1)
        admin_conn = await asyncpg.connect(driver_dsn(pg_url))
        try:
            await admin_conn.execute(f'DROP TABLE "{schema}".steps CASCADE')
        finally:
            await admin_conn.close()
        with pytest.raises(StoreError) as caught:
            await store.get_step("r", "s")
        assert "steps" in str(caught.value), caught.value
        assert shows_no_secret(str(caught.value)), caught.value
    finally:
        await store.close()


# -- the URL ------------------------------------------------------------------------------


async def test_url_options_other_than_schema_go_to_asyncpg(pg_url: str, schema: str) -> None:
    url = with_schema(pg_url, schema) + "&application_name=durable-options-test"
    store = PostgresStore(url)
    try:
        await store.setup()
        await store.set_step("r", "s", 1)
        names = await store_connection_names(pg_url)
        assert "durable-options-test" in names, names
        assert await schema_exists(pg_url, schema)
    finally:
        await store.close()


async def store_connection_names(pg_url: str) -> set[str]:
    conn = await asyncpg.connect(driver_dsn(pg_url))
    try:
        rows = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
        return {row["application_name"] for row in rows}
    finally:
        await conn.close()


async def schema_exists(pg_url: str, schema: str) -> bool:
    conn = await asyncpg.connect(driver_dsn(pg_url))
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
        )
        return bool(found)
    finally:
        await conn.close()


async def test_the_schema_option_and_argument_and_default(pg_url: str, schema: str) -> None:
    by_argument = PostgresStore(driver_dsn(pg_url), schema=schema)
    try:
        await by_argument.setup()
        await by_argument.set_step("r", "s", "argument")
    finally:
        await by_argument.close()
    by_url = PostgresStore(with_schema(pg_url, schema))
    try:
        await by_url.setup()
        assert await by_url.get_step("r", "s") == (True, "argument")
    finally:
        await by_url.close()
    assert PostgresStore(driver_dsn(pg_url)).schema == "durable"


# -- a user's pool ------------------------------------------------------------------------


def answer_within(proc: subprocess.Popen[str], seconds: float, what: str) -> dict[str, Any]:
    """The worker's JSON answer; a worker still running after ``seconds`` hangs."""
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{what}: still hanging after {seconds:g} s")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"worker (rc={proc.returncode}) gave no answer: {out!r} {err[-3000:]}"
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def test_a_users_pool_of_one_connection_still_wakes_a_signal_waiter(
    pg_db: str, spawn: Spawn
) -> None:
    """The store must not keep the only connection of a user's pool for LISTEN and
    then wait for another one forever (run in a worker: a hang cannot stop the suite)."""
    found = answer_within(spawn("tinypool", pg_db), 10, "a signal wait on a pool of one")
    assert found == {"result": 7, "pool_open": True}, found


# -- the database's clock -----------------------------------------------------------------


async def test_leases_are_judged_by_the_database_clock(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    stores = [PostgresStore(with_schema(pg_url, schema)) for _ in range(2)]
    slow, fast = stores
    try:
        for store in stores:
            await store.setup()
        # A worker an hour behind claims with a 30 s lease ...
        monkeypatch.setattr(time, "time", lambda: real() - 3600)
        claim = await slow.claim_run("r", "wf", {}, owner="slow:1:a", lease_seconds=30)
        assert claim.acquired
        # ... and one an hour ahead must still find that lease live.
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        stolen = await fast.claim_run("r", "wf", {}, owner="fast:2:b", lease_seconds=30)
        assert not stolen.acquired, "a live lease was taken by a worker whose clock is ahead"
        # A short lease that ran out on the server's clock is free, whatever the worker's
        # clock says (an hour behind: by its clock the lease would still be live).
        short = await fast.claim_run("q", "wf", {}, owner="fast:2:b", lease_seconds=0.2)
        assert short.acquired
        await asyncio.sleep(0.4)
        monkeypatch.setattr(time, "time", lambda: real() - 3600)
        taken = await slow.claim_run("q", "wf", {}, owner="slow:1:a", lease_seconds=30)
        assert taken.acquired, "an expired lease was kept alive by a worker's slow clock"
    finally:
        monkeypatch.setattr(time, "time", real)
        for store in stores:
            await store.close()


# -- event loops ---------------------------------------------------------------------------


def test_one_workflow_used_from_two_event_loops_in_turn(pg_db: str, spawn: Spawn) -> None:
    """Each ``asyncio.run`` gets connections of its own (a pool and a LISTEN connection
    belong to the loop that made them); the old loop's are dropped, never awaited."""
    found = answer_within(spawn("loops", pg_db), 30, "a Workflow used from a second loop")
    assert found == {"results": [102, 104, 106]}, found
