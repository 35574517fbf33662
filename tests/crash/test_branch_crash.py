"""Concurrent branches survive a real crash: the resume replays each into its own call.

The first process runs four branches whose steps finish in one order, then is killed
with SIGKILL; a new process runs the same workflow with timings that make the branches
reach their steps in the opposite order. The result must be the first run's, in
program order, with no branch's step executed twice (issue: identity, class 5).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("branches_worker.py")


def start(db: Path, ledger: Path, mode: str, order: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(ledger), mode, order],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().splitlines()) if ledger.exists() else Counter()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gather", "taskgroup", "create_task", "wf_map"])
def test_branches_killed_mid_run_resume_into_their_own_calls(tmp_path: Path, mode: str) -> None:
    db, ledger = tmp_path / "b.db", tmp_path / "ledger.txt"
    first = start(db, ledger, mode, "first")
    deadline = time.monotonic() + 30
    while lines(ledger)["hold"] == 0:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never reached its hold step"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL

    resumed = start(db, ledger, mode, "resume")
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert json.loads(out) == {"result": [11, 21, 31, 41]}
    counts = lines(ledger)
    assert {line: n for line, n in counts.items() if line.startswith("price")} == {
        "price 1": 1,
        "price 2": 1,
        "price 3": 1,
        "price 4": 1,
    }
    assert counts["hold"] == 2  # interrupted before its checkpoint: it runs again
