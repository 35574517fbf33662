"""Run durable's benchmarks against their floors and print a table with the targets.

    python benchmarks/run.py                 # the full run (1-2 minutes)
    python benchmarks/run.py --quick         # a smoke run: small sizes, one repetition
    python benchmarks/run.py --reps 7 --only A,D,import
    python benchmarks/run.py --only PG       # the PostgreSQL store (postgres_overhead.py)

Every case (one variant of one workload, one repetition) runs in its own interpreter
on a fresh database file; repetitions are interleaved across variants so that noise
from other work on the machine hits durable and its floors alike, and the table shows
medians. See benchmarks/README.md for what each workload and floor is.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import StallTicker, median, percentile, spawn
from multiproc import run_multiprocess
from report import ImportTimes, Row, evaluate, format_table, format_targets

if TYPE_CHECKING:
    from postgres_overhead import Measured

MP_PROCS = 4


@dataclass(frozen=True)
class Variant:
    name: str
    target: str  # module:function of the case
    role: str  # "durable", "floor" or "info"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    size: int
    quick_size: int
    variants: tuple[Variant, ...]


PLAIN = "plain calls (E)"
PLAIN_WAITING = "plain calls, waiting"
WORKLOADS: tuple[Workload, ...] = (
    Workload("A", "one workflow of {n:,} sequential steps", 2000, 200, (
        Variant("durable", "workloads:sequential", "durable"),
        Variant("durable, yielding steps", "workloads:sequential_yielding", "info"),
        Variant("sqlite3 floor", "floors:sequential_sqlite3", "floor"),
        Variant("aiosqlite floor", "floors:sequential_aiosqlite", "floor"),
        Variant(PLAIN, "floors:sequential_plain", "floor"),
    )),
    Workload("F", "A with durability='full', {n:,} steps (an fsync per commit)", 200, 20, (
        Variant("durable full", "workloads:sequential_full", "durable"),
        Variant("sqlite3 FULL floor", "floors:sequential_sqlite3_full", "floor"),
    )),
    Workload("B", "{n:,} workflows of 3 steps, one after another", 1000, 100, (
        Variant("durable", "workloads:workflows", "durable"),
        Variant("durable, yielding steps", "workloads:workflows_yielding", "info"),
        Variant("sqlite3 floor", "floors:workflows_sqlite3", "floor"),
        Variant(PLAIN, "floors:workflows_plain", "floor"),
    )),
    Workload("C200", "{n:,} workflows of 5 steps at once (gather)", 200, 50, (
        Variant("durable", "workloads:concurrent", "durable"),
        Variant("durable, yielding steps", "workloads:concurrent_yielding", "info"),
        Variant("aiosqlite floor", "floors:concurrent_aiosqlite", "floor"),
        Variant(PLAIN, "floors:concurrent_plain", "floor"),
        Variant(PLAIN_WAITING, "floors:concurrent_plain_waiting", "floor"),
    )),
    Workload("C1000", "{n:,} workflows of 5 steps at once (gather)", 1000, 200, (
        Variant("durable", "workloads:concurrent", "durable"),
        Variant("durable, yielding steps", "workloads:concurrent_yielding", "info"),
        Variant("aiosqlite floor", "floors:concurrent_aiosqlite", "floor"),
        Variant(PLAIN, "floors:concurrent_plain", "floor"),
        Variant(PLAIN_WAITING, "floors:concurrent_plain_waiting", "floor"),
    )),
    Workload("D", "A's {n:,} recorded steps replayed by a fresh Workflow", 2000, 200, (
        Variant("durable replay", "workloads:replay", "durable"),
        Variant("sqlite3 read floor", "floors:replay_read_sqlite3", "floor"),
    )),
)  # fmt: skip
MP = Workload("MP", f"{MP_PROCS} processes × {{n:,}} workflows of 5 steps, one file", 250, 25, (
    Variant(f"durable, {MP_PROCS} processes", "multiproc", "durable"),
))  # fmt: skip
ALL_KEYS = [w.key for w in WORKLOADS] + ["MP", "import"]


def measure_imports(runs: int) -> ImportTimes | None:
    """Wall time of each command (interpreter start included), interleaved, and the
    sum of ``-X importtime``'s self times (imports only)."""
    commands = {"durable": "import durable", "baseline": "import json, asyncio"}
    wall: dict[str, list[float]] = {key: [] for key in commands}
    own: dict[str, list[float]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, code in commands.items():
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            wall[key].append((time.perf_counter() - start) * 1e3)
            if done.returncode != 0:
                print(f"{code!r} failed: {_last_line(done.stderr)}", file=sys.stderr)
                return None
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
            )
            selfs = re.findall(r"import time:\s+(\d+) \|", done.stderr)
            own[key].append(sum(int(us) for us in selfs) / 1e3)
    return ImportTimes(
        durable_ms=median(wall["durable"]),
        baseline_ms=median(wall["baseline"]),
        durable_self_ms=median(own["durable"]),
        baseline_self_ms=median(own["baseline"]),
        runs=runs,
    )


def idle_stalls(seconds: float = 0.3) -> tuple[float, float]:
    """The ticker on an idle loop (p99.9, max in ms): what the measurement itself reads."""

    async def idle() -> StallTicker:
        ticker = StallTicker()
        await ticker.start()
        await asyncio.sleep(seconds)
        await ticker.stop()
        return ticker

    stalls = asyncio.run(idle()).net_stalls
    return percentile(stalls, 99.9) * 1e3, max(stalls) * 1e3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="durable's benchmarks (see README.md)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions of each case (default 7)")
    parser.add_argument(
        "--only",
        help=f"comma-separated workloads, by prefix: {','.join(ALL_KEYS)}; PG (PG-A, PG-C, "
        "PG-D) selects the PostgreSQL workloads, which only run when asked for",
    )
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("DURABLE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        help="the PostgreSQL server of the PG workloads",
    )
    return parser.parse_args()


def split_postgres(only: str | None) -> tuple[str | None, str | None]:
    """``--only``'s PostgreSQL prefixes (``PG...``) and the others, each joined again."""
    parts = [p.strip() for p in (only or "").split(",") if p.strip()]
    pg = ",".join(p for p in parts if p.lower().startswith("pg"))
    rest = ",".join(p for p in parts if not p.lower().startswith("pg"))
    return pg or None, rest or None


def selected(only: str | None) -> set[str]:
    if not only:
        return set(ALL_KEYS)
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    keys = {k for k in ALL_KEYS if any(k.lower().startswith(p.lower()) for p in prefixes)}
    if not keys:
        raise SystemExit(f"--only {only!r} selects nothing; workloads: {', '.join(ALL_KEYS)}")
    return keys


def run_cases(workloads: list[Workload], size: dict[str, int], reps: int) -> list[Row]:
    """Every variant of every workload, ``reps`` times, interleaved."""
    plan = [(w, v, Row(w.key, v.name, v.role)) for w in workloads for v in w.variants]
    for rep in range(reps):
        print(f"repetition {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
        for workload, variant, row in plan:
            case = f"{workload.key}/{variant.name}"
            try:
                if workload is MP:
                    row.results.append(run_multiprocess(MP_PROCS, size["MP"]).as_result())
                else:
                    row.results.append(spawn(case, variant.target, size[workload.key]))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                print(f"{case} crashed: {exc}", file=sys.stderr, flush=True)
                row.crashes.append(_last_line(str(exc)))
    return [row for _, _, row in plan]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def library_version() -> str:
    """Where ``durable`` comes from: this checkout's commit (and whether packages/ has
    uncommitted changes), or the path it is imported from (e.g. through PYTHONPATH)."""
    spec = importlib.util.find_spec("durable")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    repo = Path(__file__).resolve().parent.parent
    if origin is None or repo not in origin.parents:
        return f"{origin.parent if origin else 'nowhere'} (not this checkout)"
    try:
        git = ["git", "-C", str(repo)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "packages"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "this checkout (no git)"
    return f"{commit}{' + uncommitted changes in packages/' if dirty else ''}"


def write_json(path: Path, reps: int, size: dict[str, int], rows: list[Row],
               imports: ImportTimes | None) -> None:  # fmt: skip
    results = [
        {"workload": r.workload, "variant": r.variant, "results": [asdict(x) for x in r.results]}
        for r in rows
    ]
    payload = {"reps": reps, "sizes": size, "rows": results, "imports": imports and asdict(imports)}
    path.write_text(json.dumps(payload, indent=1))


def measure_postgres(only: str, quick: bool, reps: int, dsn: str) -> Measured:
    """The PG workloads (``postgres_overhead.py``), imported only when asked for: they
    need asyncpg and a server."""
    from postgres_overhead import measure

    return measure(only, quick, reps, dsn)


def main() -> None:
    args = parse_args()
    reps = args.reps or (1 if args.quick else 7)
    pg_only, only = split_postgres(args.only)
    keys = selected(only) if only or not pg_only else set[str]()
    workloads = [w for w in (*WORKLOADS, MP) if w.key in keys]
    size = {w.key: w.quick_size if args.quick else w.size for w in workloads}
    began = time.perf_counter()
    rows = run_cases(workloads, size, reps)
    pg = measure_postgres(pg_only, args.quick, reps, args.pg_dsn) if pg_only else None
    imports = measure_imports(3 if args.quick else 15) if "import" in keys else None
    idle_p999, idle_max = idle_stalls()

    print(
        f"durable benchmarks: {reps} repetition(s), medians; Python {sys.version.split()[0]}; "
        f"library at {library_version()}"
    )
    for workload in workloads:
        print(f"  {workload.key:6} {workload.title.format(n=size[workload.key])}")
    if pg is not None:
        print("\n".join(pg.header))
    print(
        f"  stalls: how late a callback due every 1 ms ran; on an idle loop "
        f"{idle_p999:.2f} ms p99.9, {idle_max:.2f} ms max (net of CPU wait)\n"
    )
    if rows:
        print(format_table(rows))
        print()
    if pg is not None:
        print(pg.table)
        print()
    print(format_targets([*evaluate(rows, imports), *(pg.targets if pg else [])]))
    print(f"\n(ran in {time.perf_counter() - began:.0f} s)")
    if args.json:
        write_json(args.json, reps, size, [*rows, *(pg.rows if pg else [])], imports)


if __name__ == "__main__":
    main()
