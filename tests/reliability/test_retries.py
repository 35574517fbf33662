"""Retry classification (``retry_on`` / ``no_retry_on``), backoff jitter, and the count of
failed attempts across a restart: a process SIGKILLed during the backoff after attempt
2 (of retries=3) resumes with attempt 3, not 1.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from durable import DurableError, SettingError, Workflow
from durable.backoff import constant, exponential, linear
from durable.errors import RetriesExhaustedError
from durable_sqlite import SQLiteStore

from . import harness
from .conftest import Spawn, StoreSource

# -- which failures are retried ---------------------------------------------------------------


class ConnectionAndPermission(ConnectionError, PermissionError):
    pass


class DurableConnectionError(DurableError, ConnectionError):
    pass


FAILURES: list[tuple[type[BaseException], int]] = [
    (ConnectionError, 4),  # retry_on: 1 + 3 retries
    (ConnectionResetError, 4),  # a subclass of retry_on
    (PermissionError, 1),  # no_retry_on
    (ValueError, 1),  # not in retry_on
    (ConnectionAndPermission, 1),  # both: no_retry_on wins
    (DurableConnectionError, 1),  # durable's own errors are final verdicts
]


@pytest.mark.parametrize(("failure", "attempts"), FAILURES)
async def test_retry_on_and_no_retry_on_decide_what_is_retried(
    source: StoreSource, failure: type[BaseException], attempts: int
) -> None:
    calls: list[int] = []
    wf = Workflow("classify", db=source(), default_backoff=constant(0))

    @wf.task(retries=3, retry_on=(ConnectionError,), no_retry_on=(PermissionError,))
    async def call() -> str:
        calls.append(1)
        raise failure("boom")

    @wf.workflow(id="classify-run")
    async def flow() -> str:
        return await call()

    async with wf:
        with pytest.raises(failure):
            await flow()
        record = await wf.get_run("classify-run")
    assert len(calls) == attempts
    assert record is not None
    assert record.status == "failed"
    assert record.error == f"{failure.__name__}: boom"


async def test_a_later_attempt_that_succeeds_is_stored_with_its_number(
    source: StoreSource, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    wf = Workflow("later", db=source(), default_backoff=constant(0))

    @wf.task(retries=3, retry_on=(ConnectionError,), no_retry_on=(PermissionError,))
    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(f"refused {len(calls)}")
        return "ok"

    @wf.workflow(id="later-run")
    async def flow() -> str:
        return await call()

    with caplog.at_level(logging.WARNING, logger="durable"):
        async with wf:
            assert await flow() == "ok"
            record = await wf.get_run("later-run")
    assert len(calls) == 3
    assert record is not None
    assert [(s.step_id, s.attempt) for s in record.steps] == [("call", 3)]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(": ")[0] for m in warned] == [
        "task call (step call, run later-run) failed on attempt 1/4",
        "task call (step call, run later-run) failed on attempt 2/4",
    ]


# -- backoff and jitter -------------------------------------------------------------------------


def test_jitter_stays_within_its_fraction_and_zero_jitter_is_exact() -> None:
    random.seed(20240601)
    for strategy, nominal in [
        (exponential(base=2, max=60, jitter=0.2), lambda i: min(2 ** (i + 1), 60)),
        (linear(start=2, step=3, jitter=0.2), lambda i: 2 + 3 * i),
        (constant(5, jitter=0.2), lambda i: 5),
    ]:
        for retry in range(8):
            ratios = [strategy(retry) / nominal(retry) for _ in range(2000)]
            assert 0.8 <= min(ratios) < 0.82, (strategy, retry, min(ratios))
            assert 1.18 < max(ratios) <= 1.2, (strategy, retry, max(ratios))
            assert 0.97 < sum(ratios) / len(ratios) < 1.03  # centred on the nominal wait
    assert [exponential(base=2, max=60, jitter=0)(i) for i in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert [exponential(base=2, max=60)(i) for i in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert [linear(start=2, step=3, jitter=0)(i) for i in range(3)] == [2, 5, 8]
    assert {constant(5, jitter=0)(i) for i in range(5)} == {5}
    assert all(exponential(base=2, max=60, jitter=1)(i) >= 0 for i in range(200))
    with pytest.raises(SettingError, match="jitter"):  # more than ±100 %: refused
        exponential(base=2, max=60, jitter=1.5)


async def test_the_engine_waits_what_the_backoff_says() -> None:
    asked: list[tuple[int, float]] = []
    jittered = constant(0.05, jitter=0.5)

    def recording(retry: int) -> float:
        wait = jittered(retry)
        asked.append((retry, wait))
        return wait

    calls: list[float] = []
    wf = Workflow("waits", db="memory://")

    @wf.task(retries=3, backoff=recording)
    async def call() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise ConnectionError("again")
        return "ok"

    @wf.workflow(id="waits-run")
    async def flow() -> str:
        return await call()

    assert await flow() == "ok"
    assert [retry for retry, _ in asked] == [0, 1, 2]
    for (_, wait), (before, after) in zip(asked, itertools.pairwise(calls), strict=True):
        assert 0.025 <= wait <= 0.075
        assert after - before >= wait - 0.002


# -- the attempt count across a restart ---------------------------------------------------------


def killed_in_backoff(spawn: Spawn, db: Path, ledger: Path) -> None:
    """Run worker.py ``backoff`` (retries=3) and SIGKILL it during the minute it waits
    after attempt 2, once that attempt is on record."""
    proc = spawn("backoff", f"sqlite:///{db}", ledger, 3)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the attempts never reached the store"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT attempts FROM step_attempts").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row == (2,):
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    attempts = [e for e in harness.read_ledger(ledger) if e["e"] == "attempt"]
    assert len(attempts) == 2


def restarted(db: Path, *, retries: int, fail_first: int) -> tuple[Workflow, Any, list[int]]:
    """The worker's workflow in this process: its step fails ``fail_first`` more times."""
    calls: list[int] = []
    wf = Workflow("backoff", db=SQLiteStore(db), default_retries=0, lease_seconds=30)

    @wf.task(retries=retries, backoff=constant(0), retry_on=(ConnectionError,))
    async def call_service() -> str:
        calls.append(1)
        if len(calls) <= fail_first:
            raise ConnectionError("the service is down")
        return "reached"

    @wf.workflow(id="backoff-run")
    async def flow() -> str:
        return await call_service()

    return wf, flow, calls


@pytest.mark.slow
async def test_a_process_killed_during_the_backoff_goes_on_with_the_next_attempt(
    tmp_path: Path, spawn: Spawn, caplog: pytest.LogCaptureFixture
) -> None:
    db, ledger = tmp_path / "backoff.db", tmp_path / "ledger.jsonl"
    killed_in_backoff(spawn, db, ledger)
    wf, flow, calls = restarted(db, retries=3, fail_first=1)
    with caplog.at_level(logging.WARNING, logger="durable"):
        async with wf:
            assert await flow() == "reached"
            record = await wf.get_run("backoff-run")
    # Attempt 3 failed, attempt 4 (the last of 1 + 3) succeeded: 4 in all, not 2 + 4.
    assert len(calls) == 2
    assert record is not None
    assert record.recoveries == 1
    assert [(s.step_id, s.attempt) for s in record.steps] == [("call_service", 4)]
    assert any("failed on attempt 3/4" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_after_a_restart_the_last_attempt_fails_with_the_real_error(
    tmp_path: Path, spawn: Spawn
) -> None:
    db, ledger = tmp_path / "backoff.db", tmp_path / "ledger.jsonl"
    killed_in_backoff(spawn, db, ledger)
    wf, flow, calls = restarted(db, retries=3, fail_first=99)
    async with wf:
        with pytest.raises(ConnectionError, match="the service is down"):
            await flow()
        record = await wf.get_run("backoff-run")
    assert len(calls) == 2  # attempts 3 and 4
    assert record is not None
    assert record.status == "failed"


@pytest.mark.slow
async def test_when_every_attempt_was_used_before_the_restart_retries_are_exhausted(
    tmp_path: Path, spawn: Spawn
) -> None:
    db, ledger = tmp_path / "backoff.db", tmp_path / "ledger.jsonl"
    killed_in_backoff(spawn, db, ledger)
    # Redeployed with retries=1: the 2 attempts on record are all it may have.
    wf, flow, calls = restarted(db, retries=1, fail_first=0)
    async with wf:
        with pytest.raises(RetriesExhaustedError, match="used all its 2 attempts"):
            await flow()
        record = await wf.get_run("backoff-run")
    assert calls == []
    assert record is not None
    assert record.status == "failed"
    assert "RetriesExhaustedError" in (record.error or "")


@pytest.mark.slow
async def test_a_run_failed_with_retries_exhausted_resumes_afresh_when_called_again(
    tmp_path: Path, spawn: Spawn
) -> None:
    db, ledger = tmp_path / "backoff.db", tmp_path / "ledger.jsonl"
    killed_in_backoff(spawn, db, ledger)
    wf, flow, calls = restarted(db, retries=1, fail_first=0)
    async with wf:
        with pytest.raises(RetriesExhaustedError):
            await flow()
        # Calling a failed run resumes it, and a failed step starts afresh (as it does
        # when its last attempt failed in this process).
        assert await flow() == "reached"
    assert calls == [1]


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(False, id="first-step"),
        pytest.param(True, id="later-step"),
    ],
)
async def test_a_run_cancelled_during_the_backoff_keeps_its_attempt_count(
    tmp_path: Path, before: bool
) -> None:
    path = tmp_path / "cancelled.db"
    calls: Counter[str] = Counter()

    def make(wait: float) -> tuple[Workflow, Any]:
        wf = Workflow("graceful", db=SQLiteStore(path), default_retries=0)

        @wf.task
        async def prepare() -> int:
            calls["prepare"] += 1
            return 1

        # 10 ms after attempt 1, then ``wait``: the first process is cancelled then.
        @wf.task(retries=3, backoff=lambda i: 0.01 if i == 0 else wait,
                 retry_on=(ConnectionError,))  # fmt: skip
        async def call_service() -> str:
            calls["attempts"] += 1
            raise ConnectionError("down")

        @wf.workflow(id="graceful-run")
        async def flow() -> str:
            if before:
                await prepare()
            return await call_service()

        return wf, flow

    wf, flow = make(wait=60)
    await wf.store.setup()
    task = asyncio.ensure_future(flow())
    attempts: dict[str, int] = {}
    while attempts.get("call_service", 0) < 2:  # attempt 2 failed and is on record
        await asyncio.sleep(0.01)
        attempts = dict(await wf.store.load_attempts("graceful-run"))
    task.cancel()  # what wf.worker() does to its runs when it exits
    with pytest.raises(asyncio.CancelledError):
        await task
    await wf.close()

    again, flow2 = make(wait=0)
    async with again:
        with pytest.raises(ConnectionError):
            await flow2()
        record = await again.get_run("graceful-run")
    assert record is not None
    assert record.recoveries == 0  # not a takeover: the lease had been released
    assert calls["attempts"] == 4, f"retries=3 made {calls['attempts']} attempts"
    assert calls["prepare"] == (1 if before else 0)
