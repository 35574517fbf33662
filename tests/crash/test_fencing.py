"""An owner paused past its lease (SIGSTOP) wakes up after another process took its
run over: its next write is refused (LeaseLostError), it runs no further step, and the
store keeps the new owner's values only.

The paused owner is stopped inside a step body, so on waking it finishes that body
and tries to checkpoint it straight away, before its heartbeat can notice anything:
only the store's fencing stands between it and the new owner's checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable import Workflow

WORKER = Path(__file__).with_name("fencing_worker.py")
PAUSE_AT = 2


def start(db: str, role: str, ledger: Path, where: str = "body") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), db, role, str(ledger), str(PAUSE_AT), where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answer(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"worker (rc={proc.returncode}) gave no answer: {out!r} {err[-2000:]}"
    return dict(json.loads(lines[-1]))


def paused_owner_is_fenced(db: str, ledger: Path, where: str = "body") -> None:
    first = start(db, "a", ledger, where)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "ready"
        if where == "sleep":
            time.sleep(0.05)  # past the sleep's own checkpoint, inside its wait
        os.kill(first.pid, signal.SIGSTOP)
        # The second owner waits out the first one's lease (1 s), takes the run over,
        # replays steps 0-1 and executes the rest.
        second = start(db, "b", ledger, where)
        expected = ["a-0", "a-1", *(f"b-{i}" for i in range(PAUSE_AT, 6))]
        assert answer(second) == {"result": expected}
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stale = answer(first)
    assert stale["error"] == "LeaseLostError", stale

    ledger_lines = ledger.read_text().split("\n")
    assert f"a start {PAUSE_AT + 1}" not in ledger_lines  # no further step ran in a
    if where == "sleep":  # woken after the take-over: not even the next body starts
        assert f"a start {PAUSE_AT}" not in ledger_lines
    record = asyncio.run(_record(db))
    assert record.status == "completed"
    assert record.result == expected
    assert {step.step_id: step.value for step in record.steps}[
        f"step-{PAUSE_AT}"
    ] == f"b-{PAUSE_AT}"


async def _record(db: str):  # type: ignore[no-untyped-def]
    async with Workflow("fence", db=db) as wf:
        record = await wf.get_run("fenced-run")
        assert record is not None
        return record


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
def test_paused_owner_cannot_overwrite_the_new_owners_checkpoint_sqlite(tmp_path: Path) -> None:
    paused_owner_is_fenced(str(tmp_path / "fence.db"), tmp_path / "ledger.txt")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
def test_paused_owner_cannot_overwrite_the_new_owners_checkpoint_redis(
    redis_db: str, tmp_path: Path
) -> None:
    paused_owner_is_fenced(redis_db, tmp_path / "ledger.txt")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
@pytest.mark.parametrize("kind", ["sqlite", "jsondir"])
def test_owner_paused_in_a_durable_sleep_starts_no_body_on_waking(
    kind: str, tmp_path: Path
) -> None:
    db = str(tmp_path / "fence.db") if kind == "sqlite" else f"jsondir://{tmp_path}/runs"
    paused_owner_is_fenced(db, tmp_path / "ledger.txt", where="sleep")
