"""Lock contention on one SQLite file from four processes (tests/sqlite has 4 x 50; this
is 4 x 300 workflows x 5 steps, in both durabilities), and what a busy timeout that
runs out does: a clear error, and nothing that had committed is lost or re-run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Spawn, finish

PROCESSES, WORKFLOWS, STEPS = 4, 300, 5
#: Seconds for the workers to import and open the store before they start together.
START_DELAY = 3.0


def expected(p: int, n: int) -> int:
    return sum(p * 1_000_000 + n * 100 + i for i in range(STEPS))


def contend(spawn: Spawn, url: str) -> list[dict[str, Any]]:
    t0 = time.time() + START_DELAY
    procs = [spawn("contend", url, p, WORKFLOWS, STEPS, t0) for p in range(PROCESSES)]
    return [json.loads(finish(proc).strip().splitlines()[-1]) for proc in procs]


def table(conn: sqlite3.Connection, sql: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {row[:2]: row[2:] for row in conn.execute(sql)}


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["normal", "full"])
def test_four_processes_run_1200_workflows_on_one_file_without_a_failure(
    tmp_path: Path, spawn: Spawn, raw: Callable[..., sqlite3.Connection], durability: str
) -> None:
    db = tmp_path / "contended.db"
    summaries = contend(spawn, f"sqlite:///{db}?durability={durability}")
    began = min(s["began"] for s in summaries)
    ended = max(s["ended"] for s in summaries)
    wall = ended - began
    commits = PROCESSES * WORKFLOWS * (STEPS + 2)  # claim, steps, outcome
    print(
        f"{PROCESSES} processes x {WORKFLOWS} workflows x {STEPS} steps, durability="
        f"{durability}: {sum(s['completed'] for s in summaries)} completed, "
        f"{sum(s['failed'] for s in summaries)} failed, {wall:.2f} s "
        f"({commits / wall:.0f} commits/s over all processes)"
    )
    assert [s["failed"] for s in summaries] == [0] * PROCESSES, summaries
    assert [s["completed"] for s in summaries] == [WORKFLOWS] * PROCESSES
    # They really wrote at the same time.
    assert max(s["began"] for s in summaries) < min(s["ended"] for s in summaries)
    assert wall < 60

    conn = raw(db)
    runs = conn.execute("SELECT run_id, status, result FROM runs").fetchall()
    assert len(runs) == PROCESSES * WORKFLOWS
    for run_id, status, result in runs:
        p, n = (int(part[1:]) for part in run_id.split("-"))
        assert (status, json.loads(result)) == ("completed", expected(p, n)), run_id
    per_run = Counter(r for (r,) in conn.execute("SELECT run_id FROM steps"))
    assert set(per_run.values()) == {STEPS}
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_a_busy_timeout_that_runs_out_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, spawn: Spawn, raw: Callable[..., sqlite3.Connection]
) -> None:
    db = tmp_path / "impatient.db"
    # 2 ms of patience with four writers: many writes find the file locked for longer.
    first = contend(spawn, f"sqlite:///{db}?busy_timeout=0.002")
    errors: Counter[str] = Counter()
    for summary in first:
        errors.update(summary["errors"])
    failed = sum(errors.values())
    print(f"busy_timeout=2ms: {failed} of {PROCESSES * WORKFLOWS} workflows failed: {errors}")
    assert failed > 0, "no write ever ran out of patience: the test proves nothing"
    for summary in first:
        errors.update(summary["setup_errors"])  # opening the file can find it locked too
    for message in errors:
        assert message.startswith(f"StoreError: SQLite store {db}: could not "), message
        assert message.endswith(": database is locked"), message

    conn = raw(db)
    steps_before = table(conn, "SELECT run_id, step_id, result, attempt, created_at FROM steps")
    done_before = table(
        conn, "SELECT run_id, status, result, updated_at FROM runs WHERE status = 'completed'"
    )
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    second = contend(spawn, f"sqlite:///{db}")  # the default patience: 30 s
    assert [s["failed"] for s in second] == [0] * PROCESSES, second
    steps_after = table(conn, "SELECT run_id, step_id, result, attempt, created_at FROM steps")
    done_after = table(
        conn, "SELECT run_id, status, result, updated_at FROM runs WHERE status = 'completed'"
    )
    # Every checkpoint of the first pass is still there, unchanged: a step body that ran
    # again would have rewritten its row (and its time). Completed runs were not touched.
    assert {k: steps_after.get(k) for k in steps_before} == steps_before
    assert {k: done_after.get(k) for k in done_before} == done_before
    assert len(steps_after) == PROCESSES * WORKFLOWS * STEPS
    assert len(done_after) == PROCESSES * WORKFLOWS
    for (run_id, _), (result, _) in done_after.items():
        p, n = (int(part[1:]) for part in run_id.split("-"))
        assert json.loads(result) == expected(p, n)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
