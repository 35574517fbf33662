"""What every benchmark case shares: a loop-stall ticker, peak RSS, one case per process.

A *case* is an ``async def case(env: Env) -> Outcome`` in one of the benchmark modules.
It sets itself up (opening connections, a short warm-up), then wraps exactly the part
being measured in ``async with env.measure():``. Each case runs in a fresh interpreter
(``worker.py``) so that its peak RSS is its own, on a fresh database in a fresh
temporary directory; :func:`spawn` runs one and returns what it printed.

This module imports nothing of ``durable``: the floors must not pay for its imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"

#: How long after each run the ticker asks to run again.
TICK = 0.001


class RunQueueClock:
    """Nanoseconds this thread has spent runnable but waiting for a CPU (Linux schedstat).

    On a busy machine another process can hold the CPU for a few milliseconds: a gap
    the ticker sees, but no fault of the loop. Subtracting the run-queue wait from a gap
    leaves what the loop itself took (blocking calls such as an fsync still count).
    """

    def __init__(self) -> None:
        try:
            path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> float:
        """Seconds waited so far (0.0 where schedstat is unavailable)."""
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class IdleClock:
    """When the loop last waited in its selector (epoll), as ``loop.time()`` values.

    epoll counts in whole milliseconds: a loop that goes idle 0.3 ms before a timer is
    due sleeps 1 ms, so the timer runs 0.7 ms late with the loop doing nothing. Such
    waiting is not a stall, and the ticker subtracts it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.start = self.end = 0.0
        self._selector: Any = getattr(loop, "_selector", None)
        self._select: Any = None
        if self._selector is not None:
            self._select = self._selector.select
            self._selector.select = self._timed_select
        self._time = loop.time

    def _timed_select(self, timeout: float | None = None) -> Any:
        self.start = self._time()
        try:
            return self._select(timeout)
        finally:
            self.end = self._time()

    def idle_after(self, due: float) -> float:
        """Seconds of the last wait that fell after ``due``."""
        return max(0.0, self.end - max(self.start, due))

    def close(self) -> None:
        if self._selector is not None:
            self._selector.select = self._select


class StallTicker:
    """Asks the loop to run a callback every :data:`TICK` seconds; records how late each ran.

    A stall is how long after its due time the loop got to a callback, less any time
    it spent waiting idle in epoll meanwhile (see :class:`IdleClock`): how long the loop
    was held by what ran before it. ``net_stalls`` are the same less the run-queue
    wait (see :class:`RunQueueClock`). A *task* waking from ``asyncio.sleep`` needs one
    more turn of the loop (the timer resolves its future, the next turn resumes it), so
    its lateness is kept too (``task_stalls``): about two turns, where a stall is one.
    """

    def __init__(self, interval: float = TICK) -> None:
        self.interval = interval
        self.stalls: list[float] = []
        self.net_stalls: list[float] = []
        self.task_stalls: list[float] = []
        self.runq_wait = 0.0
        self._clock = RunQueueClock()
        self._idle: IdleClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = self._last_wait = self._first_wait = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._idle = IdleClock(loop)
        self._last_wait = self._first_wait = self._clock.read()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick)
        self._task = loop.create_task(self._task_ticks())
        await asyncio.sleep(0)  # let the task reach its first sleep before the workload

    def _record(self, now: float) -> None:
        wait = self._clock.read()
        idle = self._idle.idle_after(self._due) if self._idle is not None else 0.0
        late = max(0.0, now - self._due - idle)
        self.stalls.append(late)
        self.net_stalls.append(max(0.0, late - (wait - self._last_wait)))
        self._last_wait = wait

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._record(now)
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    async def _task_ticks(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.task_stalls.append(max(0.0, time.perf_counter() - asked - self.interval))

    async def stop(self) -> None:
        # The workload may have held the loop past the next due time: that counts too.
        assert self._loop is not None
        now = self._loop.time()
        if now > self._due:
            self._record(now)
        self.runq_wait = self._last_wait - self._first_wait
        self._clock.close()
        if self._idle is not None:
            self._idle.close()
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Outcome:
    """What a case did in its measured part."""

    steps: int
    workflows: int
    errors: int = 0
    checks: dict[str, Any] = field(default_factory=dict[str, Any])


@dataclass
class Result:
    """One run of one case, as printed by the worker (one JSON line)."""

    case: str
    size: int
    elapsed_s: float
    steps: int
    workflows: int
    errors: int
    stall_p999_ms: float
    stall_max_ms: float
    net_stall_p999_ms: float
    net_stall_max_ms: float
    task_stall_p999_ms: float
    task_stall_max_ms: float
    startup_stall_ms: float  # the first tick: the turn(s) in which the workload started
    later_net_p999_ms: float  # net stalls after the first tick
    later_net_max_ms: float
    runq_wait_s: float
    ticks: int
    peak_rss_mb: float
    started_at: float
    ended_at: float
    checks: dict[str, Any]

    @property
    def us_per_step(self) -> float:
        return self.elapsed_s / self.steps * 1e6 if self.steps else math.nan


class Env:
    """A case's fresh directory, its size parameter and its stopwatch."""

    def __init__(self, directory: Path, size: int, extra: dict[str, Any]) -> None:
        self.directory = directory
        self.size = size
        self.extra = extra
        self.elapsed = math.nan
        self.ticker = StallTicker()
        self.started_at = 0.0
        self.ended_at = 0.0

    def path(self, name: str = "bench.db") -> str:
        return str(self.directory / name)

    @contextlib.asynccontextmanager
    async def measure(self) -> AsyncGenerator[None]:
        """Time the body and watch the loop while it runs (use once per case)."""
        # Start from a collected heap, as a service long past its start-up would: the
        # objects that imports and setup just made are otherwise collected in one
        # go (~2 ms here) inside the window of whichever variant happens to trigger it.
        gc.collect()
        ticker = self.ticker = StallTicker()
        await ticker.start()
        self.started_at = time.time()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed = time.perf_counter() - start
            self.ended_at = time.time()
            await ticker.stop()


Case = Callable[[Env], Coroutine[Any, Any, Outcome]]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0-100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_case(target: str) -> Case:
    """``"module:function"`` of this directory, imported only now."""
    module_name, _, function = target.partition(":")
    case: Case = getattr(importlib.import_module(module_name), function)
    return case


def run_case(name: str, target: str, size: int, extra: dict[str, Any]) -> Result:
    """Run one case in this process, in a fresh temporary directory."""
    case = load_case(target)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        env = Env(Path(tmp), size, extra)
        outcome = asyncio.run(case(env))
    return Result(
        case=name,
        size=size,
        elapsed_s=env.elapsed,
        steps=outcome.steps,
        workflows=outcome.workflows,
        errors=outcome.errors,
        stall_p999_ms=percentile(env.ticker.stalls, 99.9) * 1e3,
        stall_max_ms=max(env.ticker.stalls, default=math.nan) * 1e3,
        net_stall_p999_ms=percentile(env.ticker.net_stalls, 99.9) * 1e3,
        net_stall_max_ms=max(env.ticker.net_stalls, default=math.nan) * 1e3,
        task_stall_p999_ms=percentile(env.ticker.task_stalls, 99.9) * 1e3,
        task_stall_max_ms=max(env.ticker.task_stalls, default=math.nan) * 1e3,
        startup_stall_ms=(env.ticker.net_stalls or [math.nan])[0] * 1e3,
        later_net_p999_ms=percentile(env.ticker.net_stalls[1:], 99.9) * 1e3,
        later_net_max_ms=max(env.ticker.net_stalls[1:], default=math.nan) * 1e3,
        runq_wait_s=env.ticker.runq_wait,
        ticks=len(env.ticker.stalls),
        peak_rss_mb=peak_rss_mb(),
        started_at=env.started_at,
        ended_at=env.ended_at,
        checks=outcome.checks,
    )


def worker_main(argv: Sequence[str]) -> None:
    """``worker.py NAME MODULE:FUNCTION SIZE [EXTRA_JSON]``: print one JSON result."""
    name, target, size = argv[0], argv[1], int(argv[2])
    extra: dict[str, Any] = json.loads(argv[3]) if len(argv) > 3 else {}
    sys.path.insert(0, str(HERE))
    result = run_case(name, target, size, extra)
    print(json.dumps(asdict(result)), flush=True)


def spawn_args(name: str, target: str, size: int, extra: dict[str, Any] | None = None) -> list[str]:
    args = [sys.executable, str(WORKER), name, target, str(size)]
    return [*args, json.dumps(extra)] if extra else args


def parse_result(stdout: str) -> Result:
    return Result(**json.loads(stdout.strip().splitlines()[-1]))


def spawn(
    name: str, target: str, size: int, extra: dict[str, Any] | None = None, timeout: float = 300
) -> Result:
    """Run one case in a fresh interpreter and return its result."""
    done = subprocess.run(
        spawn_args(name, target, size, extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"case {name} failed (exit {done.returncode}):\n{done.stderr}")
    return parse_result(done.stdout)


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan
