"""Several real processes on one PostgreSQL schema (tests/postgres/worker.py).

- Contention: four processes call the same 1,000 run ids at once; every run is
  executed to completion exactly once (each step body and each workflow body ran
  once, over all processes), and every caller gets the right result.
- Two "machines" (processes with other host names in their owner ids): orphans of a
  killed process on either machine are taken over, each by exactly one recoverer,
  while another machine's live-looking owner (its lease not yet expired) is left
  alone, even though its pid does not exist here.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

from durable import Workflow

from .conftest import Spawn

#: Seconds for the workers to import and connect before they start together.
START_DELAY = 2.5


def last_json(proc: subprocess.Popen[str], timeout: float = 90.0) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"worker (rc={proc.returncode}) gave no answer: {out[-2000:]!r} {err[-3000:]}"
    return dict(json.loads(lines[-1]))


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"worker exited (rc={proc.returncode}) without output: {err}")
    return line.strip()


PROCESSES, RUNS, STEPS = 4, 1000, 2


def test_four_processes_contending_for_1000_runs_execute_each_once(
    pg_db: str, spawn: Spawn, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    t0 = time.time() + START_DELAY
    procs = [spawn("contend", pg_db, p, RUNS, STEPS, t0, ledger) for p in range(PROCESSES)]
    summaries = [last_json(proc) for proc in procs]
    for summary in summaries:
        assert summary["errors"] == [], summary
        assert summary["wrong"] == [], summary
        assert summary["right"] == RUNS, summary
    began = min(float(str(s["began"])) for s in summaries)
    ended = max(float(str(s["ended"])) for s in summaries)
    print(f"{PROCESSES} processes x {RUNS} shared runs x {STEPS} steps: {ended - began:.2f} s")
    assert max(float(str(s["began"])) for s in summaries) < min(
        float(str(s["ended"])) for s in summaries
    ), "the processes did not run at the same time"

    entries = ledger.read_text().splitlines()
    steps = collections.Counter(tuple(e.split()[1:3]) for e in entries if e.startswith("step "))
    done = collections.Counter(e.split()[1] for e in entries if e.startswith("done "))
    assert len(steps) == RUNS * STEPS
    assert {k: n for k, n in steps.items() if n != 1} == {}, "step bodies ran twice"
    assert len(done) == RUNS
    assert {k: n for k, n in done.items() if n != 1} == {}, "workflow bodies ran twice"
    executors = {e.split()[-1] for e in entries if e.startswith("done ")}
    assert len(executors) > 1, "one process executed everything: there was no contention"

    async def stored() -> None:
        async with Workflow("contend", db=pg_db) as wf:
            runs = await wf.list_runs(status="completed", limit=RUNS + 10)
            assert len(runs) == RUNS
            for record in runs:
                n = int(record.run_id.removeprefix("c-"))
                assert record.result == sum(n * 100 + i for i in range(STEPS)), record.run_id
            assert await wf.list_runs(status="running", limit=10) == []

    asyncio.run(stored())


def orphans_of(spawn: Spawn, db: str, host: str, ledger: Path, prefix: str, count: int,
               lease: float) -> subprocess.Popen[str]:  # fmt: skip
    """A process of ``host`` that leaves ``count`` runs in ``stuck``; not yet killed."""
    proc: subprocess.Popen[str] = spawn("orphan", db, host, ledger, prefix, count, lease)
    assert read_line(proc) == "READY"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def executions(ledger: Path, what: str) -> list[tuple[str, str, int]]:
    """(run, host, pid) of every ``what`` body the ledger saw start."""
    found: list[tuple[str, str, int]] = []
    for line in ledger.read_text().splitlines():
        kind, run, host, pid = line.split()
        if kind == what:
            found.append((run, host, int(pid)))
    return found


def test_two_machines_recover_each_others_orphans_none_taken_twice(
    pg_db: str, spawn: Spawn, tmp_path: Path
) -> None:
    ledger, count = tmp_path / "ledger.txt", 30
    alpha = orphans_of(spawn, pg_db, "alpha", ledger, "alpha", count, 1.0)
    beta = orphans_of(spawn, pg_db, "beta", ledger, "beta", count, 1.0)
    kill(alpha)
    kill(beta)
    time.sleep(1.1)  # both leases run out
    t0 = time.time() + START_DELAY
    recoverers = {host: spawn("recover", pg_db, host, ledger, t0) for host in ("alpha", "beta")}
    answers = {host: last_json(proc) for host, proc in recoverers.items()}
    every_run = sorted(f"{p}-{n}" for p in ("alpha", "beta") for n in range(count))
    for host, found in answers.items():
        # recover() returns what it resumed and waited for: all, whoever executed it.
        recovered = found["recovered"]
        assert isinstance(recovered, list), (host, found)
        assert {str(run) for run in cast("list[object]", recovered)} <= set(every_run), found

    recovering_pids = {p.pid: host for host, p in recoverers.items()}
    taken = [
        (run, host) for run, host, pid in executions(ledger, "stuck") if pid in recovering_pids
    ]
    per_run = collections.Counter(run for run, _ in taken)
    assert sorted(per_run) == every_run, "an orphan was not recovered"
    assert {run: n for run, n in per_run.items() if n != 1} == {}, "an orphan was taken twice"
    assert len(executions(ledger, "before")) == 2 * count, "a checkpointed step ran again"
    crossed = collections.Counter(
        (run.split("-")[0], host) for run, host in taken
    )  # (machine of the orphan, machine that took it)
    print(f"orphans taken over (orphan's machine, recoverer's machine): {dict(crossed)}")
    assert crossed[("alpha", "beta")] + crossed[("beta", "alpha")] > 0, (
        "no machine took over an orphan of the other", crossed,
    )  # fmt: skip

    async def stored() -> None:
        async with Workflow("machines", db=pg_db) as wf:
            for run in every_run:
                record = await wf.get_run(run)
                assert record is not None, run
                assert record.status == "completed", (run, record)
                n = int(run.split("-")[1])
                assert record.result == 11 * n, run

    asyncio.run(stored())


#: Long enough for a recoverer process to start and look while the lease is live.
LONG_LEASE = 12.0


def test_another_machines_orphan_waits_for_its_lease(
    pg_db: str, spawn: Spawn, tmp_path: Path
) -> None:
    """Its pid means nothing here: only the lease (judged by the database) frees it;
    this machine's own dead process is taken over at once."""
    ledger = tmp_path / "ledger.txt"
    gamma = orphans_of(spawn, pg_db, "gamma", ledger, "gamma", 3, LONG_LEASE)
    kill(gamma)
    killed = time.monotonic()
    other = last_json(spawn("recover", pg_db, "delta", ledger, 0, LONG_LEASE))
    assert time.monotonic() - killed < LONG_LEASE / 2, "too slow to test within the lease"
    assert other == {"recovered": []}, "a live-looking lease of another machine was taken"
    same = last_json(spawn("recover", pg_db, "gamma", ledger, 0, LONG_LEASE))
    assert time.monotonic() - killed < LONG_LEASE * 0.9, "too slow to tell pid from lease"
    assert same == {"recovered": ["gamma-0", "gamma-1", "gamma-2"]}
