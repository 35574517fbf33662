"""What a hostile review of the store found, each fixed and kept fixed.

- A claim that waits for a concurrent claim's row lock reports the row as that claim
  left it: under READ COMMITTED its UPDATE re-reads the row, its SELECT sees the
  statement's snapshot, and a loser reporting the old row ("completed", no result)
  had the engine return None as the answer.
- An outcome whose reply was lost after its commit is recognised on the retry by its
  JSON text (a result holding NaN equals nothing once decoded).
- An attempt given up on (statement_timeout) is ended by the server too.
- A URL asyncpg could not use is refused when the store is built.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import asyncpg
import pytest

from durable import Workflow
from durable.errors import StoreError
from durable.settings import SettingError
from durable_postgres import PostgresStore
from durable_postgres.data import PostgresData

from .conftest import driver_dsn


async def _completed_without_result(store: PostgresStore, run_id: str) -> None:
    claim = await store.claim_run(run_id, "app.flow", {"x": 1}, owner="o-1", lease_seconds=30)
    assert claim.acquired
    await store.finish_run(run_id, "o-1", "completed")  # no result: it could not be stored


async def test_a_claim_behind_a_concurrent_claim_reports_the_winners_row(
    pg_url: str, schema: str
) -> None:
    store = PostgresStore(pg_url, schema=schema)
    try:
        await store.setup()
        await _completed_without_result(store, "w-1")
        winner = await asyncpg.connect(driver_dsn(pg_url))
        try:
            async with winner.transaction():
                # Another process's claim, not committed yet: it holds the row.
                await winner.execute(
                    f"UPDATE \"{schema}\".runs SET status = 'running', owner = 'ghost', "
                    "lease_expires_at = extract(epoch FROM now()) + 30 WHERE run_id = 'w-1'"
                )
                loser = asyncio.ensure_future(
                    store.claim_run("w-1", "app.flow", {"x": 1}, owner="o-2", lease_seconds=30)
                )
                await asyncio.sleep(0.3)  # the loser's statement now waits for the lock
                assert not loser.done()
        finally:
            await winner.close()
        claim = await asyncio.wait_for(loser, 10)
        assert not claim.acquired, "a live owner's run was granted to another"
        assert (claim.record.status, claim.record.owner) == ("running", "ghost"), (
            f"the refused claim reported the row from before the winner's claim: "
            f"{claim.record.status} under {claim.record.owner}"
        )
    finally:
        await store.close()


@pytest.mark.parametrize("kind", [PostgresStore, PostgresData], ids=["store", "data"])
async def test_an_outcome_committed_before_its_reply_was_lost_is_recognised(
    pg_url: str, schema: str, monkeypatch: Any, kind: type[PostgresData]
) -> None:
    """The first try of the outcome commits, its reply is lost (the connection resets),
    the retry re-reads the run: a result holding NaN (equal to nothing once decoded)
    must still be recognised as the one sent, not refused as another owner's. (The
    store's own statements, and the primitives under core's rules.)"""
    store = kind(pg_url, schema=schema)
    connector: Any = store._connector  # pyright: ignore[reportPrivateUsage]
    first_try = connector._attempt
    finishing = {"now": False}

    async def attempt(pool: Any, op: Any, retrying: bool) -> Any:
        done = await first_try(pool, op, retrying)
        if finishing["now"] and not retrying:
            finishing["now"] = False
            raise ConnectionResetError("the reply was lost after the commit")
        return done

    monkeypatch.setattr(connector, "_attempt", attempt)
    # The operation that writes the outcome: the store's own, or the record's write.
    writes = "finish_run" if kind is PostgresStore else "write_run"
    write = getattr(store, writes)

    async def armed_write(*args: Any, **kwargs: Any) -> Any:
        finishing["now"] = True
        try:
            return await write(*args, **kwargs)
        finally:
            finishing["now"] = False

    monkeypatch.setattr(store, writes, armed_write)
    wf = Workflow("app", db=store)

    @wf.workflow(id="nan-{x}")
    async def flow(x: int) -> dict[str, float]:
        return {"v": float("nan"), "x": float(x)}

    try:
        answer = await flow(1)
        assert math.isnan(answer["v"])
        record = await wf.get_run("nan-1")
        assert record is not None
        assert record.status == "completed"
    finally:
        await wf.close()


async def test_an_attempt_given_up_on_leaves_no_statement_behind(pg_url: str, schema: str) -> None:
    """An operation that waits for a lock past statement_timeout is cut and retried,
    then fails; the server ends each attempt's statement too, so none goes on waiting
    (and commits later, after the caller was told it failed)."""
    store = PostgresStore(pg_url, schema=schema, retry_seconds=2, statement_timeout=1)
    holder = await asyncpg.connect(driver_dsn(pg_url))
    try:
        await store.setup()
        await store.claim_run("r-1", "app.flow", {}, owner="o-1", lease_seconds=30)
        async with holder.transaction():
            await holder.execute(f'SELECT 1 FROM "{schema}".runs FOR UPDATE')
            with pytest.raises(StoreError, match=r"request a cancellation|cancel"):
                await store.request_cancel("r-1")
            await asyncio.sleep(0.3)
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                holder.get_server_pid(),
            )
            assert waiting == 0, f"{waiting} statements the store gave up on still wait"
        record = await store.get_run("r-1")
        assert record is not None
        assert not record.cancel_requested, "a failed cancel landed"
    finally:
        await holder.close()
        await store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@host:notaport/db", "is not a URL"),
        ("postgresql://u@[::1/db", "is not a URL"),
        ("postgresql://u@host/db?retry_seconds=2", "retry_seconds is an argument"),
        ("postgresql://u@host/db?connect_timeout=2", "connect_timeout is an argument"),
        ("postgresql://u@host/db?schema=pg_jobs", "schema must be"),
    ],
)
def test_a_url_asyncpg_cannot_use_is_refused_when_the_store_is_built(url: str, says: str) -> None:
    with pytest.raises(SettingError, match=says):
        PostgresStore(url)


def test_a_users_pool_used_on_another_event_loop_is_a_clear_error(pg_url: str, schema: str) -> None:
    """asyncpg binds a pool's connections to the loop it was made on: a Workflow on a
    user's pool, used again from a second asyncio.run, says so (not "Event loop is
    closed" from deep inside asyncpg)."""
    holder: dict[str, Any] = {}

    async def first() -> int:
        holder["pool"] = await asyncpg.create_pool(driver_dsn(pg_url), min_size=1, max_size=3)
        holder["wf"] = wf = Workflow("app", db=PostgresStore(pool=holder["pool"], schema=schema))

        @wf.workflow(id="p-{x}")
        async def flow(x: int) -> int:
            return x

        holder["flow"] = flow
        try:
            return await flow(1)
        finally:
            await holder["pool"].close()  # its loop ends here: so do its connections

    assert asyncio.run(first()) == 1

    async def second() -> None:
        with pytest.raises(StoreError, match="made on another event loop"):
            await holder["flow"](2)

    asyncio.run(second())


async def test_a_pool_with_no_free_connection_is_named_as_the_cause(
    pg_url: str, schema: str
) -> None:
    """Every connection of a user's pool busy past the attempt's limit: the error says
    the pool had none free, not that the server did not answer."""
    pool = await asyncpg.create_pool(driver_dsn(pg_url), min_size=1, max_size=2)
    store = PostgresStore(pool=pool, schema=schema, retry_seconds=1, statement_timeout=1)
    try:
        await store.setup()
        async with pool.acquire(), pool.acquire():  # someone else holds both
            with pytest.raises(StoreError, match="no connection of the pool of 2 was free"):
                await store.get_run("r-1")
    finally:
        await store.close()
        await pool.close()
