"""Dead-lettering counts take-overs without progress only: a 150-step run killed (SIGKILL)
more often than ``max_recoveries``, each time after new checkpoints, still finishes with
the fault-free result under the default ``max_recoveries=5``."""

from __future__ import annotations

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
STEPS = 150
KILLS = 8  # more than the default max_recoveries (5)


def start(db: Path, ledger: Path) -> subprocess.Popen[str]:
    # 10 ms steps; max_recoveries 5: the default.
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(ledger), "0.01", str(STEPS), "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpointed(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM steps").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0


@pytest.mark.slow
def test_a_run_making_progress_between_kills_is_never_dead_lettered(tmp_path: Path) -> None:
    seed = int(os.environ.get("DURABLE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"seed: {seed} (rerun with DURABLE_CRASH_SEED={seed})")
    db, ledger = tmp_path / "progress.db", tmp_path / "ledger.txt"
    kills = 0
    deadline = time.monotonic() + 120
    while kills < KILLS:
        assert time.monotonic() < deadline, f"no progress in time (seed {seed})"
        before = checkpointed(db)
        worker = start(db, ledger)
        # Kill at a random moment once this process made at least one new checkpoint.
        while checkpointed(db) <= before and worker.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        assert worker.poll() is None, f"finished before kill {kills + 1}: {worker.communicate()}"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
    worker = start(db, ledger)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, f"worker failed (seed {seed}):\n{err[-3000:]}"
    assert json.loads(out.strip().splitlines()[-1])["result"] == sum(i * i for i in range(STEPS))
    with sqlite3.connect(db) as conn:
        status, recoveries = conn.execute(
            "SELECT status, recoveries FROM runs WHERE run_id = 'crash-run'"
        ).fetchone()
    assert status == "completed"
    assert recoveries == KILLS  # every kill was a take-over; none dead-lettered the run
    assert checkpointed(db) == STEPS
