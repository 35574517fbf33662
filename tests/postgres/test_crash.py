"""Real processes on PostgreSQL, killed (SIGKILL) or paused (SIGSTOP) mid-run.

- SIGKILLed at random moments, a run resumes until it finishes, with the fault-free
  result; a step body runs once, plus at most once more per kill (DESIGN.md §4).
- An owner paused past its lease wakes after another process took its run over: its
  next write is refused (LeaseLostError) and the store keeps the new owner's values.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable import Workflow
from durable.records import RunRecord

from .conftest import Spawn

STEPS = 30
FAULT_FREE_RESULT = sum(i * i for i in range(STEPS))


def answer(proc: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"worker (rc={proc.returncode}) gave no answer: {out!r} {err[-3000:]}"
    return dict(json.loads(lines[-1]))


def ledger_counts(ledger: Path) -> collections.Counter[str]:
    if not ledger.exists():
        return collections.Counter()
    return collections.Counter(ledger.read_text().split("\n")[:-1])


async def stored_run(db: str, app: str, run_id: str) -> RunRecord:
    async with Workflow(app, db=db) as wf:
        record = await wf.get_run(run_id)
    assert record is not None, f"no record of {run_id}"
    return record


def test_sigkilled_workflow_resumes_until_done(pg_db: str, spawn: Spawn, tmp_path: Path) -> None:
    seed = int(os.environ.get("DURABLE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"crash test seed: {seed} (rerun with DURABLE_CRASH_SEED={seed})")
    ledger = tmp_path / "ledger.txt"
    kills = 0
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"no completion in time (seed {seed})"
        before = sum(ledger_counts(ledger).values())
        worker = spawn("crash", pg_db, ledger, STEPS, 0.02)
        if kills < 6:  # then let it finish, so that the test ends
            # Kill once the worker executes steps (its imports and connect take a while).
            wait_start = time.monotonic()
            while sum(ledger_counts(ledger).values()) == before and worker.poll() is None:
                assert time.monotonic() - wait_start < 20, "the worker never ran a step"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
                continue
        result = answer(worker)["result"]
        break

    counts = ledger_counts(ledger)
    executions = sum(counts.values())
    assert kills >= 3, f"the kills all came too late to interrupt anything (seed {seed})"
    assert set(counts) == {f"step-{i}" for i in range(STEPS)}
    assert executions - STEPS <= kills, (
        f"{executions - STEPS} re-executed steps for {kills} kills (seed {seed}): {counts}"
    )
    assert result == FAULT_FREE_RESULT
    record = asyncio.run(stored_run(pg_db, "crash", "crash-run"))
    assert record.status == "completed"
    assert record.result == FAULT_FREE_RESULT
    assert {s.step_id: s.value for s in record.steps} == {
        f"step-{i}": {"i": i, "square": i * i} for i in range(STEPS)
    }

    # A completed run replays in a new process: no step body runs again.
    assert answer(spawn("crash", pg_db, ledger, STEPS, 0.0))["result"] == FAULT_FREE_RESULT
    assert sum(ledger_counts(ledger).values()) == executions


PAUSE_AT = 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
def test_paused_owner_cannot_overwrite_the_new_owners_checkpoint(
    pg_db: str, spawn: Spawn, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    first = spawn("fence", pg_db, "a", ledger, PAUSE_AT)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "ready"
        os.kill(first.pid, signal.SIGSTOP)
        # The second owner waits out the first one's lease (1 s), takes the run over,
        # replays steps 0-1 and executes the rest.
        second = spawn("fence", pg_db, "b", ledger, PAUSE_AT)
        expected = ["a-0", "a-1", *(f"b-{i}" for i in range(PAUSE_AT, 6))]
        assert answer(second) == {"result": expected}
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stale = answer(first)
    assert stale["error"] == "LeaseLostError", stale

    lines = ledger.read_text().split("\n")
    assert f"a start {PAUSE_AT + 1}" not in lines, "the stale owner ran a further step"
    record = asyncio.run(stored_run(pg_db, "fence", "fenced-run"))
    assert record.status == "completed"
    assert record.result == expected
    assert {step.step_id: step.value for step in record.steps} == {
        f"step-{i}": value for i, value in enumerate(expected)
    }
