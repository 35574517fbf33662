"""Several processes writing one SQLite file at once (the ``MP`` workload).

Each child (``workloads:multiprocess_child``) opens its own ``Workflow`` on the shared
file, warms up, waits for a common start time, then runs its workflows of 5 steps one
after another and reports its own throughput and loop stalls. Run alone:
``python benchmarks/multiproc.py [--procs 4] [--size 250]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import Result, parse_result, spawn_args

CHILD = "workloads:multiprocess_child"
#: Seconds between spawning the children and their common start: enough to import
#: durable and warm up on a loaded machine.
START_DELAY = 1.5


@dataclass
class MultiResult:
    """The children's results and what the file holds afterwards."""

    children: list[Result]
    runs_by_status: dict[str, int]
    stored_steps: int

    @property
    def elapsed_s(self) -> float:
        """From the first child's start to the last child's end (wall clock)."""
        return max(c.ended_at for c in self.children) - min(c.started_at for c in self.children)

    @property
    def skew_s(self) -> float:
        """How far apart the children started (large when one was late to start)."""
        return max(c.started_at for c in self.children) - min(c.started_at for c in self.children)

    def as_result(self) -> Result:
        """One row for the table: the sum of the work, the worst child's stalls and RSS."""
        kids = self.children
        return Result(
            case="MP/durable",
            size=sum(c.size for c in kids),
            elapsed_s=self.elapsed_s,
            steps=sum(c.steps for c in kids),
            workflows=sum(c.workflows for c in kids),
            errors=sum(c.errors for c in kids),
            stall_p999_ms=max(c.stall_p999_ms for c in kids),
            stall_max_ms=max(c.stall_max_ms for c in kids),
            net_stall_p999_ms=max(c.net_stall_p999_ms for c in kids),
            net_stall_max_ms=max(c.net_stall_max_ms for c in kids),
            task_stall_p999_ms=max(c.task_stall_p999_ms for c in kids),
            task_stall_max_ms=max(c.task_stall_max_ms for c in kids),
            startup_stall_ms=max(c.startup_stall_ms for c in kids),
            later_net_p999_ms=max(c.later_net_p999_ms for c in kids),
            later_net_max_ms=max(c.later_net_max_ms for c in kids),
            runq_wait_s=sum(c.runq_wait_s for c in kids) / len(kids),
            ticks=sum(c.ticks for c in kids),
            peak_rss_mb=max(c.peak_rss_mb for c in kids),
            started_at=min(c.started_at for c in kids),
            ended_at=max(c.ended_at for c in kids),
            checks={
                "procs": len(kids),
                "runs_by_status": self.runs_by_status,
                "stored_steps": self.stored_steps,
                "start_skew_ms": round(self.skew_s * 1e3, 1),
            },
        )


def run_multiprocess(procs: int, size: int, timeout: float = 300) -> MultiResult:
    """``procs`` processes × ``size`` workflows of 5 steps, on one file."""
    with tempfile.TemporaryDirectory(prefix="durable-bench-mp-") as tmp:
        path = str(Path(tmp) / "shared.db")
        start_at = time.time() + START_DELAY
        children = [
            subprocess.Popen(
                spawn_args(
                    f"MP/child{k}", CHILD, size, {"path": path, "proc": k, "start_at": start_at}
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(procs)
        ]
        results: list[Result] = []
        for k, child in enumerate(children):
            out, err = child.communicate(timeout=timeout)
            if child.returncode != 0:
                raise RuntimeError(f"MP child {k} failed (exit {child.returncode}):\n{err}")
            results.append(parse_result(out))
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            by_status = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
            (steps,) = conn.execute("SELECT count(*) FROM steps").fetchone()
    return MultiResult(results, by_status, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description="several processes writing one file")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--size", type=int, default=250, help="workflows per process")
    args = parser.parse_args()
    multi = run_multiprocess(args.procs, args.size)
    for child in multi.children:
        print(
            f"{child.case}: {child.us_per_step:7.1f} µs/step  errors {child.errors}  "
            f"stall p99.9 {child.stall_p999_ms:.2f} ms  max {child.stall_max_ms:.2f} ms  "
            f"(net of CPU contention: {child.net_stall_p999_ms:.2f} / "
            f"{child.net_stall_max_ms:.2f} ms)"
        )
    total = multi.as_result()
    print(
        f"all: {total.steps / total.elapsed_s:,.0f} steps/s, "
        f"{total.workflows / total.elapsed_s:,.0f} workflows/s; runs {multi.runs_by_status}, "
        f"{multi.stored_steps} steps stored; start skew {multi.skew_s * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
