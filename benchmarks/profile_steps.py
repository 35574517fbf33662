"""Where a step's time goes: a decomposition by store, then cProfile of A and C.

    python benchmarks/profile_steps.py [--steps 2000] [--workflows 1000] [--top 18]

1. Workload A's µs/step on stores that do less and less: the SQLite file, SQLite in
   memory (no file I/O), the in-memory dict store (the engine alone), plain calls.
2. cProfile of A (one workflow, ``--steps`` steps) and C (``--workflows`` workflows of
   5 steps at once): the functions with the most own time, in µs per step, and the
   same grouped by module. cProfile adds ~0.5 µs to every call it sees, so small
   functions look bigger than they are; read it for the ranking, section 1 for sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from floors import STEPS_C, WARMUP, plain_flow
from workloads import App, make_app

from durable import InMemoryStore

Scenario = Callable[[], Coroutine[Any, Any, float]]
FunctionKey = tuple[str, int, str]  # file, line, name
FunctionStats = tuple[int, int, float, float, Any]  # primitive calls, calls, own, cumulative


async def time_sequential(app: App, steps: int) -> float:
    """µs per step of one workflow of ``steps`` steps, after a warm-up run."""
    async with app.wf:
        await app.flow("warm", WARMUP)
        start = time.perf_counter()
        await app.flow("a", steps)
        return (time.perf_counter() - start) / steps * 1e6


async def time_plain(steps: int) -> float:
    await plain_flow(WARMUP)
    start = time.perf_counter()
    await plain_flow(steps)
    return (time.perf_counter() - start) / steps * 1e6


def decomposition(steps: int, reps: int) -> None:
    print(f"1. Workload A, {steps:,} steps: µs/step by store (median of {reps}, in-process)")
    with tempfile.TemporaryDirectory(prefix="durable-profile-") as tmp:
        scenarios: dict[str, Callable[[int], Scenario]] = {
            "SQLite file (the default store)": lambda k: (
                lambda: time_sequential(make_app(str(Path(tmp) / f"a{k}.db")), steps)
            ),
            "SQLite :memory: (no file I/O)": lambda k: (
                lambda: time_sequential(make_app(":memory:"), steps)
            ),
            "memory:// (engine alone)": lambda k: (
                lambda: time_sequential(make_app(InMemoryStore()), steps)
            ),
            "plain calls": lambda k: lambda: time_plain(steps),
        }
        timings: dict[str, list[float]] = defaultdict(list)
        for k in range(reps):
            for name, make in scenarios.items():
                timings[name].append(asyncio.run(make(k)()))
    for name, values in timings.items():
        print(f"   {name:34} {statistics.median(values):7.2f} µs/step")
    print()


def profile(title: str, run: Callable[[cProfile.Profile], None], steps: int, top: int) -> None:
    profiler = cProfile.Profile()
    run(profiler)
    stats = pstats.Stats(profiler)
    entries: dict[FunctionKey, FunctionStats] = vars(stats)["stats"]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    print(f"{title}: {total / steps * 1e6:.1f} µs/step under cProfile")
    print(f"   {'own µs/step':>11} {'calls/step':>10} {'cum µs/step':>11}  function")
    ranked = sorted(entries.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), (_, calls, own, cum, _) in ranked:
        where = _short(file, line, name)
        print(
            f"   {own / steps * 1e6:11.2f} {calls / steps:10.2f} {cum / steps * 1e6:11.2f}  {where}"
        )
    by_area: dict[str, float] = defaultdict(float)
    for (file, _, name), (_, _, own, _, _) in entries.items():
        by_area[_area(file, name)] += own
    print("   own time by area:")
    for area, own in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"   {own / steps * 1e6:11.2f} µs/step  {own / total:5.1%}  {area}")
    print()


def _short(file: str, line: int, name: str) -> str:
    if file == "~":
        return name
    parts = Path(file).parts
    for root in ("durable", "durable_sqlite", "asyncio", "benchmarks"):
        if root in parts:
            return f"{'/'.join(parts[parts.index(root) :])}:{line} {name}"
    return f"{Path(file).name}:{line} {name}"


def _area(file: str, name: str) -> str:
    if file == "~":
        if "sqlite3.Connection" in name or "sqlite3.Cursor" in name:
            return "sqlite3 (C: execute, fetchall)"
        if "json" in name or "encode" in name or "decode" in name:
            return "json (C)"
        return "other builtins (C)"
    for marker, area in (
        ("durable_sqlite", "durable_sqlite (Python)"),
        ("/durable/", "durable core (Python)"),
        ("/asyncio/", "asyncio (Python)"),
        ("/json/", "json (Python)"),
        ("/logging/", "logging"),
    ):
        if marker in file:
            return area
    return "other Python"


def profile_sequential(steps: int, directory: str) -> Callable[[cProfile.Profile], None]:
    def run(profiler: cProfile.Profile) -> None:
        async def main() -> None:
            app = make_app(str(Path(directory) / "profile-a.db"))
            async with app.wf:
                await app.flow("warm", WARMUP)
                profiler.enable()
                await app.flow("a", steps)
                profiler.disable()

        asyncio.run(main())

    return run


def profile_concurrent(workflows: int, directory: str) -> Callable[[cProfile.Profile], None]:
    def run(profiler: cProfile.Profile) -> None:
        async def main() -> None:
            app = make_app(str(Path(directory) / "profile-c.db"))
            async with app.wf:
                await app.flow("warm", STEPS_C)
                profiler.enable()
                await asyncio.gather(*(app.flow(f"c-{w}", STEPS_C) for w in range(workflows)))
                profiler.disable()

        asyncio.run(main())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="profile durable's per-step path")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    decomposition(args.steps, args.reps)
    with tempfile.TemporaryDirectory(prefix="durable-profile-") as tmp:
        print("2. cProfile")
        profile(
            f"A, {args.steps:,} sequential steps",
            profile_sequential(args.steps, tmp),
            args.steps,
            args.top,
        )
        profile(
            f"C, {args.workflows:,} workflows of {STEPS_C} steps at once (per step; a "
            f"workflow is {STEPS_C} steps + claim + outcome)",
            profile_concurrent(args.workflows, tmp),
            args.workflows * STEPS_C,
            args.top,
        )


if __name__ == "__main__":
    main()
