"""A real process, SIGKILLed at random moments, resumes its workflow until it finishes.

The guarantee under test (DESIGN.md §4): a step whose checkpoint committed never runs
again; a step interrupted before its checkpoint runs again. So across all restarts a
step body runs once, plus at most once more per kill, and the final result is the
fault-free one.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("worker.py")
STEPS = 40
FAULT_FREE_RESULT = sum(i * i for i in range(STEPS))


def start(db: Path, ledger: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(ledger)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ledger_counts(ledger: Path) -> collections.Counter[str]:
    if not ledger.exists():
        return collections.Counter()
    return collections.Counter(ledger.read_text().split())


def checkpointed(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM steps").fetchone()[0])


@pytest.mark.slow
def test_sigkilled_workflow_resumes_until_done(tmp_path: Path) -> None:
    seed = int(os.environ.get("DURABLE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"crash test seed: {seed} (rerun with DURABLE_CRASH_SEED={seed})")
    db, ledger = tmp_path / "crash.db", tmp_path / "ledger.txt"

    kills, progress_at_kills = 0, []
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, f"no completion in time (seed {seed})"
        worker = start(db, ledger)
        if kills < 12:  # then let it finish, so the test ends
            time.sleep(rng.uniform(0.15, 0.6))
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
                progress_at_kills.append(sum(ledger_counts(ledger).values()))
                continue
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, f"worker failed (seed {seed}):\n{err}"
        result = json.loads(out.strip().splitlines()[-1])["result"]
        break

    counts = ledger_counts(ledger)
    executions = sum(counts.values())
    assert kills >= 3, f"the kills all came too late to interrupt anything (seed {seed})"
    assert set(counts) == {f"step-{i}" for i in range(STEPS)}
    assert executions - STEPS <= kills, (
        f"{executions - STEPS} re-executed steps for {kills} kills (seed {seed}): {counts}"
    )
    assert result == FAULT_FREE_RESULT
    assert checkpointed(db) == STEPS
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        status = conn.execute("SELECT status FROM runs WHERE run_id = 'crash-run'").fetchone()
    assert status == ("completed",)


def test_a_completed_run_replays_in_a_new_process(tmp_path: Path) -> None:
    db, ledger = tmp_path / "done.db", tmp_path / "ledger.txt"
    for _ in range(2):
        worker = start(db, ledger)
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["result"] == FAULT_FREE_RESULT
    assert sum(ledger_counts(ledger).values()) == STEPS  # the second process ran no step
