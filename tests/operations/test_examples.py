"""Every examples/operations_*.py runs to completion, offline, and shows what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_operations_example_is_tested_here() -> None:
    tested = {"operations_reminder.py", "operations_worker.py", "operations_control.py"}
    assert {p.name for p in EXAMPLES.glob("operations_*.py")} == tested


def test_reminder_wakes_at_the_checkpointed_time_after_a_crash() -> None:
    out = run_example("operations_reminder.py")
    run_1, run_2 = out.split("run 2:")
    assert "ran       send_welcome('ann')" in run_1
    assert "** process killed (SIGKILL) 0.5 s into the sleep (exit code -9) **" in run_1
    assert "send_reminder" not in run_1
    assert "ran       send_welcome" not in run_2  # replayed
    assert "replays   send_welcome" in run_2
    woke = re.search(r"woke .* ([+-]\d+\.\d+) s from the checkpointed wake-up time, "
                     r"(\d+\.\d+) s after this process started", run_2)  # fmt: skip
    assert woke is not None, run_2
    assert -0.01 <= float(woke[1]) < 0.3  # on time, to the checkpoint
    assert float(woke[2]) < 1.4  # less than the 1.5 s sleep after the restart
    assert "ran       escalate('ann'): no acknowledgement in time" in run_2
    assert "result    'escalated ann'" in run_2
    assert "steps     send_welcome, $sleep, send_reminder, $signal-timeout:ack, escalate" in run_2
    assert "complete() returned False" in run_2


def test_worker_finishes_orphaned_runs() -> None:
    out = run_example("operations_worker.py")
    run_1, rest = out.split("run 2:")
    run_2, run_3 = rest.split("run 3:")
    assert run_1.count("  ran       ") == 4
    assert "in the middle of charge(1, 10.0)" in run_1
    # The worker ran only what was not checkpointed: no render again; charge(1) again
    # (killed before its checkpoint), charge(2), charge(3) and the three emails.
    assert "render(" not in run_2
    ran_2 = sorted(line.split()[1] for line in run_2.splitlines() if " ran " in line)
    assert ran_2 == sorted(
        ["charge(1,", "charge(2,", "charge(3,"] + ["email(ann@example.com)"]
        + ["email(bo@example.com)"] * 2
    )  # fmt: skip
    assert "in the middle of charge(4, 40.0)" in run_3
    assert run_3.count("ran       render(4)") == 1
    assert run_3.count("ran       charge(4, 40.0)") == 2
    table = [line.split() for line in run_3.splitlines() if line.startswith("  invoice-")]
    assert [(row[0], row[1], row[2]) for row in table] == [
        (f"invoice-{n}", "completed", "1") for n in range(1, 5)
    ]
    assert "'sent invoice-4.pdf to ann@example.com'" in run_3


def test_control_cancels_inspects_resumes_and_prunes() -> None:
    out = run_example("operations_control.py")
    part_1, rest = out.split("2. inspect it")
    assert [line.split("'")[1] for line in part_1.splitlines() if "ran " in line] == [
        "part-0.csv",
        "part-1.csv",
        "part-2.csv",
    ]
    assert "caller    got RunCancelledError" in part_1
    part_2, rest = rest.split("3. resume it")
    assert "status    cancelled" in part_2
    assert [line.split()[1] for line in part_2.splitlines() if "  step " in line] == [
        "part-0.csv",
        "part-1.csv",
        "part-2.csv",
    ]
    part_3, rest = rest.split("4. the durable command")
    assert [line.split("'")[1] for line in part_3.splitlines() if "ran " in line] == [
        "part-3.csv",
        "part-4.csv",
    ]
    assert "result    600 rows" in part_3
    assert re.search(r"batch-2030-01-02\s+imports\.batch\s+completed", rest)
    assert "part-4.csv  1" in rest
    assert "deleted   1 run(s); left: 0" in rest
