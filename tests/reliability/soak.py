"""The crash soak: SIGKILL workers N times, at random moments and at the engine's fault
points, and check every guarantee after each round (see harness.py).

    python tests/reliability/soak.py --kills 500 --seed 1 --db-dir /tmp/soak

Prints one line per round, then a summary such as

    500 kills (...) over 96 rounds, ...: 0 lost, 0 duplicated checkpoints, 0 re-run
    after commit, 768/768 identical results, integrity ok (96/96); ...

and exits 1 when any guarantee was violated (each violation is printed, with the
round's seed; the round's files stay in --db-dir). The seed defaults to
$DURABLE_RELIABILITY_SEED, else a random one, printed first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=500, help="worker kills in all (500)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (random)")
    parser.add_argument("--db-dir", type=Path, default=None, help="where rounds keep files")
    parser.add_argument("--runs", type=int, default=8, help="workflow runs per round (8)")
    parser.add_argument("--steps", type=int, default=5, help="loop steps per run (5)")
    parser.add_argument("--quiet", action="store_true", help="no line per round")
    args = parser.parse_args(argv)

    seed = harness.master_seed(args.seed)
    db_dir = args.db_dir or Path(tempfile.mkdtemp(prefix="durable-soak-"))
    db_dir.mkdir(parents=True, exist_ok=True)
    print(f"seed {seed} (rerun: --seed {seed}), files in {db_dir}", flush=True)

    started = time.monotonic()
    reference, ref = harness.fault_free(db_dir, runs=args.runs, steps=args.steps)
    if not ref.ok or reference.results is None:
        print("the fault-free reference run failed:", *ref.violations, sep="\n  ")
        return 1
    print(f"fault-free reference: {ref.identical}/{ref.runs} runs as expected", flush=True)

    def progress(rnd: harness.Round, fig: harness.Figures, total: harness.Figures) -> None:
        if args.quiet and fig.ok:
            return
        faults = " ".join(
            g.fault if g.mode == "point" and g.killed else "random" if g.killed else "clean"
            for g in rnd.generations
        )
        print(
            f"round {rnd.index:3d} seed {rnd.seed:10d} {rnd.durability:6s} kills "
            f"{fig.kills:2d} re-run {fig.re_executions:2d} "
            f"{'ok' if fig.ok else 'VIOLATED'}  [{faults}]  total kills {total.kills}",
            flush=True,
        )
        for text in fig.violations:
            print("   ", text, flush=True)

    total = harness.soak(args.kills, seed, db_dir, runs=args.runs, steps=args.steps,
                         progress=progress)  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"{total.summary()} [{elapsed:.0f} s wall, seed {seed}]")
    if not total.ok:
        print(f"{len(total.violations)} VIOLATIONS:", *total.violations[:50], sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
