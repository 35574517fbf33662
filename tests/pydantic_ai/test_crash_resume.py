"""A real process running a 5-turn agent is SIGKILLed mid-loop; a new process resumes it.

The turns whose checkpoints committed replay from the SQLite file with no model call; the
call that was interrupted runs again (at least once), then the rest of the loop runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("agent_worker.py")


def start(db: Path, ledger: Path, hang_at: str | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(db), str(ledger)] + ([hang_at] if hang_at else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


def kill_when_entered(worker: subprocess.Popen[str], ledger: Path, call: str) -> None:
    deadline = time.monotonic() + 60
    while call not in ledger_lines(ledger):
        if worker.poll() is not None:
            _, err = worker.communicate()
            pytest.fail(f"the worker exited ({worker.returncode}) before {call}:\n{err}")
        assert time.monotonic() < deadline, f"the worker never reached {call}"
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize(
    ("killed_in", "tools_after_restart"),
    [
        # Killed in the tool call after the 3rd model turn: turns 1-3 are checkpointed.
        ("tool-3", ["tool-3", "tool-4"]),
        # Killed while the model served turn 4: turns 1-3 and their tool calls are checkpointed.
        ("model-4", ["tool-4"]),
    ],
)
def test_a_sigkilled_agent_resumes_with_finished_turns_replayed(
    tmp_path: Path, killed_in: str, tools_after_restart: list[str]
) -> None:
    db, ledger = tmp_path / "agent.db", tmp_path / "ledger.txt"
    kill_when_entered(start(db, ledger, hang_at=killed_in), ledger, killed_in)
    before = ledger_lines(ledger)
    assert [line for line in before if line.startswith("model-")][:3] == [
        "model-1",
        "model-2",
        "model-3",
    ]

    out, err = start(db, ledger).communicate(timeout=60)
    assert out, err
    after = ledger_lines(ledger)[len(before) :]
    # Zero model calls for turns 1-3: only turns 4 and 5 reached the model after the restart.
    assert [line for line in after if line.startswith("model-")] == ["model-4", "model-5"]
    assert [line for line in after if line.startswith("tool-")] == tools_after_restart
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"output": "finished after 5 turns", "requests": 5, "messages": 10}


@pytest.mark.slow
def test_a_sigkilled_agent_run_is_recovered_by_the_engine(tmp_path: Path) -> None:
    db, ledger = tmp_path / "agent.db", tmp_path / "ledger.txt"
    kill_when_entered(start(db, ledger, hang_at="tool-3"), ledger, "tool-3")
    before = ledger_lines(ledger)

    out, err = start(db, ledger, hang_at="recover").communicate(timeout=60)
    assert out, err
    after = ledger_lines(ledger)[len(before) :]
    assert [line for line in after if line.startswith("model-")] == ["model-4", "model-5"]
    assert json.loads(out.strip().splitlines()[-1]) == {
        "resumed": ["agent-run"],
        "result": {"output": "finished after 5 turns"},
    }
