"""Every examples/agent_*.py runs offline and shows what it claims."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_agent_example_is_tested_here() -> None:
    tested = {"agent_crash_resume.py", "agent_approval.py", "agent_capability.py"}
    assert {p.name for p in EXAMPLES.glob("agent_*.py")} == tested


@pytest.mark.slow
def test_agent_crash_resume() -> None:
    out = run_example("agent_crash_resume.py")
    run_1, run_2 = out.split("run 2:")
    assert "ran       model turn 3" in run_1
    assert "** process killed (SIGKILL) during model turn 3 **" in run_1
    assert "(the process died with exit code -9)" in run_1
    assert "model turn 1" not in run_2  # replayed, not sent to the model
    assert "model turn 2" not in run_2
    assert [line.split()[1] for line in run_2.splitlines() if "replayed" in line[:12]] == [
        "support.model_request",
        "support.tool_call:lookup_order@call-1",
        "support.model_request#1",
        "support.tool_call:check_stock@call-2",
    ]
    assert "ran       model turn 3" in run_2
    assert "ran       model turn 4" in run_2
    assert "result    Your blue mug is on its way again" in run_2
    assert "usage     4 model requests" in run_2


def test_agent_approval() -> None:
    out = run_example("agent_approval.py")
    assert out.count("ran       triage model") == 1  # process 2 replayed it
    assert out.count("ran       issue_refund('1001', 19.5)") == 1
    assert out.count("result    refund of 19.5 EUR on order 1001") == 2


def test_agent_capability() -> None:
    out = run_example("agent_capability.py")
    assert "HTTP 503 (will be retried)" in out
    steps = out.split("steps recorded for run advice-Ghent:\n")[1].split("advise(")[0]
    assert steps.split() == [
        "advisor.model_request",
        "advisor.tool_call:weather@w-1",
        "advisor.model_request#1",
    ]
    assert out.count("tool      weather('Ghent')") == 2  # the workflow run, then the plain run
