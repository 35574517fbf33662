"""Processes forked from the one that made the Workflow each own runs under an id of
their own: two children calling one run id at once run its step once, not twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fork_worker.py")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.parametrize("kind", ["sqlite", "jsondir"])
def test_forked_children_do_not_share_an_owner(kind: str, tmp_path: Path) -> None:
    db = str(tmp_path / "fork.db") if kind == "sqlite" else f"jsondir://{tmp_path}/runs"
    ledger = tmp_path / "ledger.txt"
    done = subprocess.run(
        [sys.executable, str(WORKER), db, str(ledger)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n").count("answer charged 4242") == 2
    executions = ledger.read_text().split()
    assert executions.count("charge") == 1, executions  # one owner ran it; one waited
