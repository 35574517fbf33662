"""Several real processes on one Redis server (tests/redis/worker.py), bounded in time."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from durable import Workflow

Spawn = Callable[..., "subprocess.Popen[str]"]

#: Seconds given to the workers to import everything before they start together.
START_DELAY = 2.0


async def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line the process prints (without blocking the loop)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"worker exited (rc={proc.returncode}) without output: {err}")
    return line.strip()


async def wait_for_line(proc: subprocess.Popen[str], prefix: str) -> str:
    while not (line := await read_line(proc)).startswith(prefix):
        pass
    return line


def intervals(ledger: Path) -> list[tuple[int, int, float, float | None]]:
    """(pid, step, start, end or None) of every step body the ledger saw start."""
    started: dict[tuple[int, int], float] = {}
    done: list[tuple[int, int, float, float | None]] = []
    for line in ledger.read_text().splitlines():
        kind, pid, step, at = line.split()
        key = (int(pid), int(step))
        if kind == "start":
            started[key] = float(at)
        else:
            done.append((*key, started.pop(key), float(at)))
    done.extend((pid, step, at, None) for (pid, step), at in started.items())
    return sorted(done, key=lambda interval: interval[2])


def assert_never_overlapping(runs: Sequence[tuple[int, int, float, float | None]]) -> None:
    for before, after in itertools.pairwise(runs):
        assert before[3] is not None, f"step body {before} never ended, yet another started"
        assert before[3] <= after[2], f"step bodies ran at the same time: {before} and {after}"


async def test_same_run_in_three_processes_executes_each_step_once(
    spawn: Spawn, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    t0 = time.time() + START_DELAY
    url = f"{redis_url}?prefix={prefix}"
    procs = [spawn("same", url, ledger, "shared", 8, t0) for _ in range(3)]
    for proc in procs:
        assert await wait_for_line(proc, "RESULT") == "RESULT 28"
    runs = intervals(ledger)
    assert_never_overlapping(runs)
    assert sorted(step for _, step, _, _ in runs) == list(range(8)), "a step ran twice"
    assert len({pid for pid, _, _, _ in runs}) == 1, "the run changed hands while its owner lived"


async def test_owner_killed_mid_step_then_taken_over_without_overlap(
    spawn: Spawn, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    url = f"{redis_url}?prefix={prefix}"
    first = spawn("same", url, ledger, "taken-over", 20, 0)
    await wait_for_line(first, "STARTED")
    while not ledger.exists() or ledger.read_text().count("end ") < 5:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # another process writes the ledger: nothing to await
    second = spawn("same", url, ledger, "taken-over", 20, 0)
    await wait_for_line(second, "STARTED")
    await asyncio.sleep(0.5)  # the second is waiting for the live owner now
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.time()
    assert await wait_for_line(second, "RESULT") == f"RESULT {sum(range(20))}"
    runs = intervals(ledger)
    # The killed body's interval ends when its process died.
    runs = [(pid, step, start, killed_at if end is None else end) for pid, step, start, end in runs]
    assert_never_overlapping(runs)
    by_first = {step for pid, step, _, _ in runs if pid == first.pid}
    by_second = {step for pid, step, _, _ in runs if pid == second.pid}
    assert by_first | by_second == set(range(20))
    assert len(by_first & by_second) <= 1, "more than the interrupted step ran again"


async def test_signal_from_another_process_wakes_within_100ms(
    spawn: Spawn, redis_url: str, prefix: str
) -> None:
    url = f"{redis_url}?prefix={prefix}"
    latencies: list[float] = []
    wf = Workflow("signals", db=url)
    try:
        for attempt in range(3):
            run_id = f"approval-{attempt}"
            waiter = spawn("wait", url, run_id, 30.0)  # poll 30 s: only a push wakes it
            await wait_for_line(waiter, "WAITING")
            await asyncio.sleep(0.5)  # let it subscribe and park
            sent = time.time()
            assert await wf.complete(run_id, "go", {"approved": attempt}) is True
            woke = float((await wait_for_line(waiter, "WOKE")).split()[1])
            assert json.loads((await wait_for_line(waiter, "RESULT"))[7:]) == {"approved": attempt}
            latencies.append(woke - sent)
    finally:
        await wf.close()
    print(f"cross-process signal wake-up latencies: {[f'{x * 1000:.1f} ms' for x in latencies]}")
    assert max(latencies) < 0.1, latencies
