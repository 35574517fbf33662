"""Faults between the store and the server, and a server it cannot use.

- Connections terminated by the server mid-run (``pg_terminate_backend``): the run goes
  on, or fails with a StoreError naming the cause; nothing committed is lost or re-run.
- The listening connection terminated while a workflow waits for a signal: the signal
  still wakes it (it listens again), not only its next poll.
- An outage shorter than ``retry_seconds`` (a proxy that cuts and refuses connections,
  then accepts again), a failover-like pause (a proxy that stops forwarding): the run
  goes on; an outage longer than ``retry_seconds``: a StoreError naming the cause
  soon after, with the password masked, and the run resumes afterwards.
- A wrong password, an unknown role, an unreachable host: a StoreError at once, the
  password masked everywhere.
- Several processes creating the schema at once (advisory lock); a schema made by a
  newer version is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from durable import Workflow
from durable.backoff import constant
from durable.errors import DurableError, StoreError
from durable_postgres import PostgresStore

from .conftest import Spawn, admin, terminate_backends, with_schema
from .proxy import password_rejecting_server, proxy_to

SECRET = "pw-Zq9!s3cr3t"
STEPS = 8


def chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and every cause and context behind it."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def assert_masked(exc: BaseException, *secrets: str) -> None:
    for error in chain(exc):
        texts = [str(error), repr(error), *map(str, error.args)]
        for secret in secrets:
            for text in texts:
                assert secret not in text, f"{type(error).__name__} shows the password: {text}"


class Steps:
    """A workflow of STEPS steps whose bodies are counted; ``at(i, fault)`` runs
    ``fault`` (once) in the body of step i."""

    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.ran: Counter[int] = Counter()
        self.faults: dict[int, Callable[[], Any]] = {}

        @wf.task
        async def step(i: int) -> int:
            self.ran[i] += 1
            fault = self.faults.pop(i, None)
            if fault is not None:
                outcome = fault()
                if asyncio.iscoroutine(outcome):
                    await outcome
            return i * i

        @wf.workflow
        async def flow() -> int:
            return sum([await step(i, step_id=f"s{i}") for i in range(STEPS)])

        self.flow = flow

    def at(self, i: int, fault: Callable[[], Any]) -> None:
        self.faults[i] = fault

    async def run(self, run_id: str = "faulty") -> int:
        result: int = await self.flow.run(run_id)
        return result


RESULT = sum(i * i for i in range(STEPS))
#: Seconds a run may hang on a server that stopped answering (retry_seconds=1, plus the
#: default connect timeout of 10 s) before the test calls it a hang.
HANG_LIMIT = 15.0


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def through(url: str, port: int, *, password: str | None = None) -> str:
    """``url`` with its host and port replaced by the proxy's (and a password added)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    auth = f"{quote(user)}:{quote(password, safe='')}" if password else quote(user)
    return parts._replace(netloc=f"{auth}@127.0.0.1:{port}").geturl()


async def stored_steps(db: str, run_id: str) -> dict[str, Any]:
    async with Workflow("faults", db=db) as wf:
        record = await wf.get_run(run_id)
    assert record is not None
    return {step.step_id: step.value for step in record.steps}


# -- pg_terminate_backend -------------------------------------------------------------


async def test_connections_terminated_mid_run_lose_nothing(pg_db: str, pg_url: str) -> None:
    wf = Workflow("faults", db=pg_db, default_retries=0, lease_seconds=2.0)
    steps = Steps(wf)
    terminated: list[int] = []

    async def terminate() -> None:
        terminated.append(await asyncio.to_thread(terminate_backends, pg_url))

    steps.at(3, terminate)
    failure: StoreError | None = None
    try:
        try:
            outcome = await steps.run()
        except StoreError as exc:  # allowed, if it names the cause; then the run resumes
            failure = exc
            outcome = await steps.run()
    finally:
        await wf.close()
    if failure is not None:
        message = str(failure).lower()
        assert "terminat" in message or "connection" in message, failure
    print(f"after pg_terminate_backend the run {'failed, then resumed' if failure else 'went on'}")
    assert terminated, "the fault never ran"
    assert terminated[0] >= 1, "no connection of the store was terminated"
    assert outcome == RESULT
    assert dict(steps.ran) == {i: 1 for i in range(STEPS)}, "a committed step ran again"
    assert await stored_steps(pg_db, "faulty") == {f"s{i}": i * i for i in range(STEPS)}


async def test_terminated_listener_still_wakes_a_waiting_workflow(pg_db: str, pg_url: str) -> None:
    waiting = asyncio.Event()
    wf = Workflow("faults", db=pg_db, default_retries=0)

    @wf.task
    async def ready() -> str:
        waiting.set()
        return "ready"

    @wf.workflow
    async def approval() -> Any:
        await ready()
        return await wf.signal("go", poll=30.0)  # only a notification wakes it in time

    sender = Workflow("faults", db=pg_db)
    try:
        waiter = asyncio.ensure_future(approval.run("approval"))
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.sleep(0.3)  # it listens now
        assert await asyncio.to_thread(terminate_backends, pg_url) >= 1
        await asyncio.sleep(0.3)
        sent = time.monotonic()
        assert await sender.complete("approval", "go", {"ok": 1}) is True
        assert await asyncio.wait_for(waiter, 10) == {"ok": 1}
        woke_after = time.monotonic() - sent
    finally:
        await sender.close()
        await wf.close()
    assert woke_after < 3.0, f"woken after {woke_after:.1f} s: the notification was lost"


# -- a proxy between the store and the server -------------------------------------------


async def test_outage_shorter_than_retry_seconds_the_run_goes_on(pg_url: str, schema: str) -> None:
    async with proxy_to(*host_port(pg_url)) as proxy:
        store = PostgresStore(through(pg_url, proxy.port), schema=schema, retry_seconds=8)
        wf = Workflow("faults", db=store, default_retries=0)
        steps = Steps(wf)

        async def outage() -> None:
            await proxy.refuse()  # every connection cut, new ones refused ...
            asyncio.get_running_loop().call_later(1.0, lambda: asyncio.ensure_future(
                proxy.accept()))  # fmt: skip  # ... for a second

        steps.at(3, outage)
        started = time.monotonic()
        try:
            assert await steps.run() == RESULT
        finally:
            await wf.close()
        took = time.monotonic() - started
    assert took >= 1.0, "the run finished during the outage: the fault was not felt"
    assert dict(steps.ran) == {i: 1 for i in range(STEPS)}
    assert await stored_steps(with_schema(pg_url, schema), "faulty") == {
        f"s{i}": i * i for i in range(STEPS)
    }


async def test_failover_like_pause_the_run_goes_on(pg_url: str, schema: str) -> None:
    async with proxy_to(*host_port(pg_url)) as proxy:
        store = PostgresStore(through(pg_url, proxy.port), schema=schema, retry_seconds=8)
        wf = Workflow("faults", db=store, default_retries=0)
        steps = Steps(wf)

        def pause() -> None:
            proxy.pause()  # nothing is forwarded, nothing is closed
            asyncio.get_running_loop().call_later(1.5, proxy.resume)

        steps.at(3, pause)
        started = time.monotonic()
        try:
            assert await asyncio.wait_for(steps.run(), 20) == RESULT
        finally:
            await wf.close()
        assert time.monotonic() - started >= 1.5
    assert dict(steps.ran) == {i: 1 for i in range(STEPS)}


async def test_outage_longer_than_retry_seconds_is_a_masked_store_error_then_resumes(
    pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with proxy_to(*host_port(pg_url)) as proxy:
        url = through(pg_url, proxy.port, password=SECRET)
        store = PostgresStore(url, schema=schema, retry_seconds=1.0)
        wf = Workflow("faults", db=store, default_retries=0, lease_seconds=1.0)
        steps = Steps(wf)
        steps.at(3, proxy.refuse)
        started = time.monotonic()
        try:
            with pytest.raises(StoreError) as caught:
                await asyncio.wait_for(steps.run(), 30)
            took = time.monotonic() - started
            message = str(caught.value)
            assert "retried" in message or "Connection" in message or "refused" in message, message
            assert_masked(caught.value, SECRET, quote(SECRET, safe=""))
            assert took < 8.0, f"StoreError after {took:.1f} s with retry_seconds=1"

            await proxy.accept()  # the server is back: the run resumes where it was
            await asyncio.sleep(1.1)  # its lease (the failed owner could not release it)
            assert await asyncio.wait_for(steps.run(), 30) == RESULT
        finally:
            await wf.close()
    assert all(steps.ran[i] == 1 for i in range(3)), f"a committed step ran again: {steps.ran}"
    assert steps.ran[3] <= 2, steps.ran
    assert all(steps.ran[i] == 1 for i in range(4, STEPS)), steps.ran
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.getMessage()
        assert quote(SECRET, safe="") not in record.getMessage(), record.getMessage()


async def test_endless_pause_is_a_store_error_not_a_hang(pg_url: str, schema: str) -> None:
    """A server that stops answering (packets lost, nothing closed) must not hang the
    run forever: a StoreError once ``retry_seconds`` (and a connect timeout) ran out."""
    async with proxy_to(*host_port(pg_url)) as proxy:
        store = PostgresStore(through(pg_url, proxy.port), schema=schema, retry_seconds=1.0)
        wf = Workflow("faults", db=store, default_retries=0)
        steps = Steps(wf)
        steps.at(3, proxy.pause)
        run = asyncio.ensure_future(steps.run())
        try:
            done, _ = await asyncio.wait({run}, timeout=HANG_LIMIT)
        finally:
            proxy.cut()  # whatever happened: let every connection fail now
            proxy.resume()
        try:
            assert done, f"the run still hangs {HANG_LIMIT} s into a server that stopped answering"
            with pytest.raises(StoreError):
                run.result()
        finally:
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await asyncio.wait_for(wf.close(), 10)


# -- a server the store cannot use --------------------------------------------------------


async def expect_connect_error(store: PostgresStore, within: float = 3.0) -> StoreError:
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(store.setup(), 30)
    finally:
        await store.close()
    took = time.monotonic() - started
    assert took < within, f"the error took {took:.1f} s"
    return caught.value


async def test_wrong_password_is_a_masked_store_error_at_once() -> None:
    async with password_rejecting_server() as port:
        url = f"postgresql://app:{quote(SECRET, safe='')}@127.0.0.1:{port}/appdb"
        store = PostgresStore(url, schema="app")
        error = await expect_connect_error(store)
        assert "password authentication failed" in str(error), error
        assert_masked(error, SECRET, quote(SECRET, safe=""))
        assert SECRET not in repr(store)
        assert quote(SECRET, safe="") not in repr(store)

        # Through the URL a user writes, too.
        wf = Workflow("faults", db=url)
        flow = Steps(wf).flow
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(flow.run("never"), 10)
        await wf.close()
        assert_masked(caught.value, SECRET, quote(SECRET, safe=""))
        assert SECRET not in repr(wf)


async def test_unreachable_host_is_a_masked_store_error_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresStore(f"postgresql://app:{quote(SECRET, safe='')}@127.0.0.1:1/appdb")
    error = await expect_connect_error(store)
    message = str(error)
    assert "127.0.0.1" in message, message
    assert "***" in message, message
    assert "refused" in message.lower() or "connect" in message.lower(), message
    assert_masked(error, SECRET, quote(SECRET, safe=""))
    for record in caplog.records:
        assert SECRET not in record.getMessage()


async def test_unknown_role_and_database_are_masked_store_errors(pg_url: str) -> None:
    host, port = host_port(pg_url)
    role = f"postgresql://nobody_here:{quote(SECRET, safe='')}@{host}:{port}/postgres"
    error = await expect_connect_error(PostgresStore(role))
    assert "nobody_here" in str(error), error
    assert_masked(error, SECRET, quote(SECRET, safe=""))
    database = f"postgresql://postgres:{quote(SECRET, safe='')}@{host}:{port}/no_such_database_here"
    error = await expect_connect_error(PostgresStore(database))
    assert "no_such_database_here" in str(error), error
    assert_masked(error, SECRET, quote(SECRET, safe=""))


# -- the schema ---------------------------------------------------------------------------


def test_schema_created_by_six_processes_at_once(
    pg_url: str, schema: str, spawn: Spawn, tmp_path: Path
) -> None:
    db = with_schema(pg_url, schema)
    t0 = time.time() + 2.5
    procs = [spawn("setup", db, t0) for _ in range(6)]
    answers: list[object] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        answers.append(json.loads(out.strip().splitlines()[-1]) if out.strip() else err)
    assert answers == [{"ok": True}] * 6, answers
    versions = admin(pg_url, f'SELECT version FROM "{schema}".schema_version')
    assert len(versions) == 1, versions
    steps = admin(
        pg_url, f"SELECT count(*) AS n FROM \"{schema}\".steps WHERE run_id = 'setup-run'"
    )
    assert steps[0]["n"] == 6


async def test_schema_set_up_by_many_stores_at_once_in_one_process(
    pg_url: str, schema: str
) -> None:
    stores = [PostgresStore(with_schema(pg_url, schema)) for _ in range(8)]
    try:
        await asyncio.gather(*(store.setup() for store in stores))
        await asyncio.gather(*(s.set_step("r", f"s{i}", i) for i, s in enumerate(stores)))
        assert await stores[0].load_steps("r") == {f"s{i}": i for i in range(8)}
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_schema_newer_than_known_is_refused(pg_url: str, schema: str) -> None:
    db = with_schema(pg_url, schema)
    first = PostgresStore(db)
    try:
        await first.setup()
        await first.set_step("r", "s", 1)
    finally:
        await first.close()
    await asyncio.to_thread(admin, pg_url, f'UPDATE "{schema}".schema_version SET version = 999')
    newer = PostgresStore(db)
    try:
        with pytest.raises(DurableError) as caught:
            await newer.setup()
        assert isinstance(caught.value, StoreError), type(caught.value)
        message = str(caught.value)
        assert "999" in message, message
        assert schema in message, message
        assert "newer" in message or "upgrade" in message, message
        # Nor does a Workflow write to it.
        wf = Workflow("faults", db=PostgresStore(db), default_backoff=constant(0))
        flow = Steps(wf).flow
        with pytest.raises(StoreError):
            await flow.run("refused")
        await wf.close()
    finally:
        await newer.close()
    rows = await asyncio.to_thread(admin, pg_url, f'SELECT run_id FROM "{schema}".runs')
    assert rows == [], "a run was written to a schema of a newer version"
    versions = await asyncio.to_thread(
        admin, pg_url, f'SELECT version FROM "{schema}".schema_version'
    )
    assert [r["version"] for r in versions] == [999], "the newer version was overwritten"
