"""The crash harness: worker processes SIGKILLed at random moments and at the engine's
named fault points, restarted until every run finishes, then checked.

One *round* is a fresh SQLite file, a fresh ledger and ``runs`` workflow runs (see
``worker.py crash``). A *generation* is one worker process: it calls every run (or
recovers the orphans with ``wf.recover()``), and the driver ends it

- at a random moment (``timer``): SIGKILL from the driver, after the worker said
  READY, or (now and then) while it is still importing and opening the store;
- at a named fault point (``point``): ``DURABLE_FAULTS`` is set so the worker kills
  itself there (``before-checkpoint@<step>``, ``after-checkpoint@<step>``,
  ``before-finish@<run>``, ``after-finish@<run>``, ``after-commit``), or the worker
  arms ``after-commit`` itself after a random delay, so that it dies right after some
  commit in the middle of the work;
- not at all (``clean``): the worker finishes every run and exits 0; the round ends.

After each generation the driver takes a *snapshot* of the store (the worker is dead,
so the file is still), and at the end of the round :func:`check_round` compares the
ledger the step bodies wrote (outside the store, fsynced before they return) with the
snapshots and the final store:

lost                a checkpoint a snapshot (or an ``ack`` line) saw is gone later, or
                    the value a workflow went on with is not the stored one
duplicated          a committed checkpoint was replaced by another value, or a step is
                    stored twice
re-run after commit a step body ran (an ``ok`` line) after its checkpoint committed: a
                    later generation than the snapshot that first holds it, or a later
                    line than the execution whose value is stored
unaccounted         an execution that was not checkpointed (a re-execution) in a
                    generation that ended cleanly, or more than one per run in a
                    generation that was killed: re-executions <= kills that landed
                    before a checkpoint, run by run
results             a run's result differs from the fault-free one, a run did not end
                    ``completed``, a completed run's body ran again, a fault point
                    did not land where it was armed, ``PRAGMA integrity_check`` failed

Every step body returns ``{"v": value, "x": token}``: ``v`` is a pure function of the
run and step (:func:`expected_result` computes the fault-free outcome), ``x`` names
the execution (generation.sequence), so the store says which execution it kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"

SEED_ENV = "DURABLE_RELIABILITY_SEED"

# -- the workload (shared with worker.py) ------------------------------------------------

#: Seconds each step body takes.
STEP_PAUSE = 0.008
#: Failures of the ``flaky`` step before it succeeds (it has retries=3).
FLAKY_FAILS = 2
FLAKY_RETRIES = 3
#: The durable sleep of runs with n % 3 == 1.
SLEEP_SECONDS = 0.12


def run_id(n: int) -> str:
    return f"job-{n}"


def has_flaky(n: int) -> bool:
    return n % 2 == 0


def has_sleep(n: int) -> bool:
    return n % 3 == 1


def has_signal(n: int) -> bool:
    return n % 3 == 2


def fetch_value(n: int) -> int:
    return 1000 + n


def work_value(n: int, k: int) -> int:
    return (n + 1) * (k + 3) + k * k


def flaky_value(n: int) -> int:
    return 7 * n + 5


def signal_payload(n: int) -> dict[str, Any]:
    return {"n": n, "approved": True, "note": f"go {n}"}


def total_value(parts: list[int]) -> int:
    return sum(p * (i + 1) for i, p in enumerate(parts)) % 1_000_003


def task_steps(n: int, steps: int) -> list[str]:
    """The ids of the task steps of run n, in order (their bodies write the ledger)."""
    ids = ["fetch", *(f"w{k}" for k in range(steps))]
    if has_flaky(n):
        ids.append("flaky")
    ids.append("total")
    return ids


def stored_steps(n: int, steps: int) -> set[str]:
    """Every step id run n stores: its task steps, and ``sleep`` when it sleeps."""
    return set(task_steps(n, steps)) | ({"$sleep"} if has_sleep(n) else set())


def expected_result(n: int, steps: int) -> dict[str, Any]:
    parts = [fetch_value(n), *(work_value(n, k) for k in range(steps))]
    if has_flaky(n):
        parts.append(flaky_value(n))
    if has_signal(n):
        parts.append(signal_payload(n)["n"] * 7)
    return {"n": n, "parts": parts, "total": total_value(parts)}


# -- reading the ledger and the store ---------------------------------------------------


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The ledger's entries in file order (a torn last line, if any, is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


@dataclasses.dataclass
class Snapshot:
    """What the store held at one moment."""

    steps: dict[tuple[str, str], tuple[Any, int, float]]  # value, attempt, created_at
    runs: dict[str, tuple[str, Any, int]]  # status, result, recoveries
    signals: dict[tuple[str, str], Any]
    duplicates: int = 0

    @classmethod
    def read(cls, db: Path) -> Snapshot:
        """Read without changing anything (``mode=ro``: no WAL checkpoint at close)."""
        if not db.exists():
            return cls({}, {}, {})
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not {"steps", "runs", "signals"} <= tables:
                return cls({}, {}, {})
            steps = {
                (r, s): (json.loads(v), a, t)
                for r, s, v, a, t in conn.execute(
                    "SELECT run_id, step_id, result, attempt, created_at FROM steps"
                )
            }
            runs = {
                r: (status, None if result is None else json.loads(result), rec)
                for r, status, result, rec in conn.execute(
                    "SELECT run_id, status, result, recoveries FROM runs"
                )
            }
            signals = {
                (r, name): json.loads(p)
                for r, name, p in conn.execute("SELECT run_id, name, payload FROM signals")
            }
            duplicates = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM steps GROUP BY run_id, step_id "
                "HAVING count(*) > 1)"
            ).fetchone()[0]
        finally:
            conn.close()
        return cls(steps, runs, signals, duplicates)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- one round ------------------------------------------------------------------------------


@dataclasses.dataclass
class Generation:
    index: int
    mode: str  # "timer", "point" or "clean"
    fault: str | None = None  # DURABLE_FAULTS, or "after-commit+<delay>" (armed late)
    delay: float | None = None  # timer: seconds after READY (negative: after spawn)
    pid: int = 0
    returncode: int | None = None
    killed_by_driver: bool = False
    output: str = ""
    error: str = ""
    snapshot: Snapshot | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def clean(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        what = self.fault or (f"kill after {self.delay:.3f}s" if self.delay is not None else "")
        return f"gen {self.index} ({self.mode} {what}, pid {self.pid}, rc {self.returncode})"


@dataclasses.dataclass
class Round:
    index: int
    seed: int
    directory: Path
    runs: int
    steps: int
    durability: str
    generations: list[Generation] = dataclasses.field(default_factory=list)
    results: dict[str, Any] | None = None

    @property
    def db(self) -> Path:
        return self.directory / "store.db"

    @property
    def ledger(self) -> Path:
        return self.directory / "ledger.jsonl"

    @property
    def url(self) -> str:
        query = "?durability=full" if self.durability == "full" else ""
        return f"sqlite:///{self.db}{query}"


def spawn_worker(
    rnd: Round, gen: Generation, *, env_faults: str | None, arm_after: float | None, mode: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("DURABLE_FAULTS", None)
    if env_faults:
        env["DURABLE_FAULTS"] = env_faults
    args = [
        sys.executable,
        str(WORKER),
        "crash",
        rnd.url,
        str(rnd.ledger),
        str(gen.index),
        str(rnd.seed * 1000 + gen.index),
        str(rnd.runs),
        str(rnd.steps),
        mode,
        "" if arm_after is None else f"{arm_after:.4f}",
    ]
    with (
        open(rnd.directory / f"gen{gen.index}.out", "wb") as out,
        open(rnd.directory / f"gen{gen.index}.err", "wb") as err,
    ):  # the child keeps its own copies of these files
        return subprocess.Popen(args, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen[bytes], out: Path, timeout: float = 20.0) -> bool:
    """True once the worker printed READY; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and b"READY" in out.read_bytes():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.003)
    raise TimeoutError(f"worker {proc.pid} did not start within {timeout} s")


def choose_fault(rng: random.Random, rnd: Round, snap: Snapshot) -> str:
    """A named fault point that some unfinished run can still reach."""
    unfinished = [n for n in range(rnd.runs) if snap.runs.get(run_id(n), ("",))[0] != "completed"]
    if not unfinished:
        return "after-commit"
    n = rng.choice(unfinished)
    missing = [s for s in task_steps(n, rnd.steps) if (run_id(n), s) not in snap.steps]
    kind = rng.choices(
        ["before-checkpoint", "after-checkpoint", "before-finish", "after-finish",
         "after-commit", "after-commit-late"],
        weights=[30, 30, 8, 8, 4, 20],
    )[0]  # fmt: skip
    if kind in ("before-checkpoint", "after-checkpoint") and missing:
        return f"{kind}@{rng.choice(missing)}"
    if kind in ("before-finish", "after-finish", "before-checkpoint", "after-checkpoint"):
        finish = "before-finish" if kind.startswith("before") else "after-finish"
        return f"{finish}@{run_id(n)}"
    if kind == "after-commit-late":
        return f"after-commit+{rng.uniform(0.0, 0.35):.4f}"
    return "after-commit"


def run_generation(
    rng: random.Random, rnd: Round, mode: str, last: Snapshot, fault: str | None = None
) -> Generation:
    gen = Generation(len(rnd.generations), mode)
    env_faults: str | None = None
    arm_after: float | None = None
    if mode == "point":
        gen.fault = fault or choose_fault(rng, rnd, last)
        if "+" in gen.fault:
            arm_after = float(gen.fault.split("+", 1)[1])
        else:
            env_faults = gen.fault
    elif mode == "timer":
        # Mostly during the work; now and then while importing or opening the store.
        gen.delay = rng.uniform(0.0, 0.3) if rng.random() > 0.1 else -rng.uniform(0.0, 0.3)
    how = rng.choice(["call", "call", "recover-first", "recover-with"])
    proc = spawn_worker(rnd, gen, env_faults=env_faults, arm_after=arm_after, mode=how)
    gen.pid = proc.pid
    out = rnd.directory / f"gen{gen.index}.out"
    try:
        if gen.delay is not None:
            if gen.delay >= 0:
                ready = wait_ready(proc, out)
                if ready:
                    time.sleep(gen.delay)
            else:
                time.sleep(-gen.delay)
            if proc.poll() is None:
                proc.kill()
                gen.killed_by_driver = True
        proc.wait(timeout=60)
    except (subprocess.TimeoutExpired, TimeoutError):
        proc.kill()
        proc.wait()
        gen.returncode = None
        gen.error = "the worker hung (killed after 60 s)"
    else:
        gen.returncode = proc.returncode
    gen.output = out.read_text(errors="replace") if out.exists() else ""
    err = rnd.directory / f"gen{gen.index}.err"
    if not gen.error and gen.returncode not in (0, -signal.SIGKILL) and err.exists():
        gen.error = err.read_text(errors="replace")[-3000:]
    gen.snapshot = Snapshot.read(rnd.db)
    rnd.generations.append(gen)
    return gen


def play_round(
    rnd: Round,
    rng: random.Random,
    kills: int,
    *,
    max_clean: int = 3,
    faults: tuple[str, ...] = (),
) -> tuple[list[str], int]:
    """Run generations until ``kills`` workers were killed and then one finished cleanly.

    ``faults`` are fault points to arm first, in order (then random choices). Returns
    problems found while playing (hung or failing workers) and the kills made.
    """
    rnd.directory.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    made = 0
    clean_tries = 0
    last = Snapshot({}, {}, {})
    forced = list(faults)
    while True:
        fault = forced.pop(0) if forced else None
        if fault is not None:
            mode = "point"
        else:
            mode = "clean" if made >= kills else rng.choice(["timer", "point"])
        if mode == "clean":
            clean_tries += 1
            if clean_tries > max_clean:
                problems.append(f"round {rnd.index}: no clean finish in {max_clean} tries")
                return problems, made
        gen = run_generation(rng, rnd, mode, last, fault)
        assert gen.snapshot is not None
        last = gen.snapshot
        if gen.killed:
            made += 1
            continue
        if gen.clean:
            lines = [ln for ln in gen.output.splitlines() if ln.startswith("{")]
            if not lines:
                problems.append(f"round {rnd.index}: {gen.describe()} printed no results")
            else:
                rnd.results = json.loads(lines[-1])["results"]
            return problems, made
        problems.append(f"round {rnd.index}: {gen.describe()} failed: {gen.error.strip()}")
        if made >= kills or len(problems) >= 3:
            return problems, made


# -- checking a round -----------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    rounds: int = 0
    generations: int = 0
    kills: int = 0
    kills_at_random: int = 0
    kills_at_points: Counter[str] = dataclasses.field(default_factory=Counter)
    runs: int = 0
    identical: int = 0
    steps: int = 0
    executions: int = 0
    re_executions: int = 0
    #: (run, killed generation) pairs: a kill that found the run unfinished and working.
    run_kills: int = 0
    #: (run, killed generation) pairs that lost an execution: kills before a checkpoint.
    kills_before_checkpoint: int = 0
    lost: int = 0
    duplicated: int = 0
    rerun_after_commit: int = 0
    unaccounted: int = 0
    other: int = 0
    integrity_ok: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: Figures) -> None:
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, Counter | list):
                mine += theirs
            else:
                setattr(self, field.name, mine + theirs)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        points = ", ".join(f"{k} {v}" for k, v in sorted(self.kills_at_points.items()))
        return (
            f"{self.kills} kills ({self.kills_at_random} at random moments; at fault points: "
            f"{points or 'none'}) over {self.rounds} rounds, {self.generations} worker "
            f"processes, {self.runs} runs, {self.steps} checkpointed steps: "
            f"{self.lost} lost, {self.duplicated} duplicated checkpoints, "
            f"{self.rerun_after_commit} re-run after commit, "
            f"{self.identical}/{self.runs} identical results, "
            f"integrity {'ok' if self.integrity_ok == self.rounds else 'FAILED'} "
            f"({self.integrity_ok}/{self.rounds}); "
            f"{self.re_executions} step bodies re-executed, each after a kill that landed "
            f"before its checkpoint, at most 1 per run per kill ({self.kills_before_checkpoint}"
            f" of {self.run_kills} run-kills; {self.unaccounted} unaccounted); "
            f"{len(self.violations)} violations"
        )


def check_round(
    rnd: Round,
    ledger: list[dict[str, Any]],
    final: Snapshot,
    integrity_result: str,
) -> Figures:
    """Every invariant of the module docstring, for one finished round."""
    fig = Figures(rounds=1, generations=len(rnd.generations), runs=rnd.runs)
    bad: dict[str, list[str]] = defaultdict(list)

    def violation(kind: str, text: str) -> None:
        bad[kind].append(f"round {rnd.index} (seed {rnd.seed}): {text}")

    gens = rnd.generations
    for gen in gens:
        if gen.killed:
            fig.kills += 1
            if gen.mode == "point" and not gen.killed_by_driver:
                point = (gen.fault or "").split("@")[0].split("+")[0]
                fig.kills_at_points[point + ("-late" if "+" in (gen.fault or "") else "")] += 1
            else:
                fig.kills_at_random += 1
        elif not gen.clean:
            violation("other", f"{gen.describe()}: the worker failed: {gen.error.strip()[-500:]}")

    oks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    acks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    enters: dict[str, list[int]] = defaultdict(list)
    signals_sent: Counter[str] = Counter()
    last_ok: dict[tuple[str, int], int] = {}  # (run, gen): position of its last ok line
    for position, entry in enumerate(ledger):
        kind = entry["e"]
        entry["pos"] = position
        if kind == "ok":
            oks[entry["run"], entry["step"]].append(entry)
            last_ok[entry["run"], entry["g"]] = position
        elif kind == "ack":
            acks[entry["run"], entry["step"]].append(entry)
        elif kind == "enter":
            enters[entry["run"]].append(entry["g"])
        elif kind == "signal":
            signals_sent[entry["run"]] += 1
    fig.executions = sum(len(v) for v in oks.values())

    # The final state: every run completed with the fault-free result.
    for n in range(rnd.runs):
        rid = run_id(n)
        want = expected_result(n, rnd.steps)
        status, result, _ = final.runs.get(rid, ("missing", None, 0))
        printed = (rnd.results or {}).get(rid)
        if status != "completed":
            violation("results", f"{rid} ended {status!r}, not completed")
        elif result == want and printed == want:
            fig.identical += 1
        else:
            violation("results", f"{rid}: stored {result}, printed {printed}, expected {want}")
        have = {s for (r, s) in final.steps if r == rid}
        if have != stored_steps(n, rnd.steps):
            violation("results", f"{rid} stores steps {sorted(have)}")
        if has_signal(n):
            if final.signals.get((rid, "go")) != signal_payload(n):
                violation("results", f"{rid}: signal payload {final.signals.get((rid, 'go'))}")
            if signals_sent[rid] > 1:
                violation("duplicated", f"{rid}: complete() returned True {signals_sent[rid]}x")
    fig.steps = len(final.steps)
    if final.duplicates:
        violation("duplicated", f"{final.duplicates} steps are stored more than once")
    if integrity_result == "ok":
        fig.integrity_ok = 1
    else:
        violation("other", f"PRAGMA integrity_check: {integrity_result}")

    # Checkpoints never change or disappear once a snapshot saw them.
    snaps = [(g.index, g.snapshot) for g in gens if g.snapshot is not None]
    first_seen: dict[tuple[str, str], int] = {}
    for index, snap in snaps:
        for key, (value, _, _) in snap.steps.items():
            first_seen.setdefault(key, index)
            later = final.steps.get(key)
            if later is None:
                violation("lost", f"{key} was stored after gen {index}, then lost")
            elif later[0] != value:
                violation("duplicated", f"{key}: {value} stored after gen {index}, then {later[0]}")
        for rid, (status, _, _) in snap.runs.items():
            if status == "completed" and any(g > index for g in enters[rid]):
                violation("results", f"{rid} completed in gen {index}, its body ran again later")

    # Every execution whose value is not the stored one was cut short by a kill.
    lost_per_gen: Counter[tuple[str, int]] = Counter()
    for (rid, sid), lines in oks.items():
        stored = final.steps.get((rid, sid))
        if stored is None:
            continue  # reported above
        token = stored[0].get("x") if isinstance(stored[0], dict) else None
        kept = [i for i, e in enumerate(lines) if e["x"] == token]
        if not kept:
            violation("lost", f"({rid}, {sid}) stores {token}, which no execution returned")
            continue
        if kept[0] != len(lines) - 1:
            after = lines[kept[0] + 1 :]
            violation(
                "rerun", f"({rid}, {sid}): executions {[e['x'] for e in after]} ran after "
                f"the stored one {token}",
            )  # fmt: skip
        if lines[kept[0]]["t"] > stored[2] + 1e-3:
            violation("other", f"({rid}, {sid}): checkpoint time precedes its body's end")
        seen = first_seen.get((rid, sid))
        if seen is not None and any(e["g"] > seen for e in lines):
            violation("rerun", f"({rid}, {sid}) committed by gen {seen}, its body ran later")
        for entry in lines:
            if entry["x"] != token:
                fig.re_executions += 1
                lost_per_gen[rid, entry["g"]] += 1
                # Only the step in flight at the kill can be lost: the run's last one.
                if last_ok[rid, entry["g"]] != entry["pos"]:
                    violation(
                        "unaccounted", f"({rid}, {sid}) execution {entry['x']} was not "
                        f"checkpointed, yet the run went on to other steps in gen {entry['g']}",
                    )  # fmt: skip
    for (rid, index), count in lost_per_gen.items():
        gen = gens[index] if index < len(gens) else None
        if gen is None or not gen.killed:
            violation("unaccounted", f"{rid}: {count} executions lost in gen {index}, not killed")
        elif count > 1:
            violation("unaccounted", f"{rid}: {count} executions lost to one kill (gen {index})")
    fig.kills_before_checkpoint = len(lost_per_gen)
    done_before: set[str] = set()
    for gen in gens:
        if gen.killed:
            fig.run_kills += sum(
                1 for rid, seen in enters.items() if gen.index in seen and rid not in done_before
            )
        if gen.snapshot is not None:
            done_before |= {r for r, (st, _, _) in gen.snapshot.runs.items() if st == "completed"}

    # A workflow only ever goes on with the stored value.
    for key, lines in acks.items():
        stored = final.steps.get(key)
        token = stored[0].get("x") if stored and isinstance(stored[0], dict) else None
        wrong = [e["x"] for e in lines if e["x"] != token]
        if wrong:
            violation("lost", f"{key}: the workflow went on with {wrong}, the store has {token}")
        for entry in lines:
            snap = gens[entry["g"]].snapshot if entry["g"] < len(gens) else None
            if snap is not None and key not in snap.steps:
                violation("lost", f"{key} returned in gen {entry['g']}, not stored after it")

    # Attempts: 1 for steps that never fail, at most retries + 1 for the flaky one.
    for (rid, sid), (_, attempt, _) in final.steps.items():
        limit = FLAKY_RETRIES + 1 if sid == "flaky" else 1
        if not 1 <= attempt <= limit:
            violation("other", f"({rid}, {sid}) stored attempt {attempt}")

    # The fault points landed where they were armed.
    for gen in gens:
        fault = gen.fault or ""
        if gen.mode != "point" or not gen.killed or "@" not in fault or gen.snapshot is None:
            continue
        point, detail = fault.split("@", 1)
        mine = [
            (r, s)
            for (r, s), lines in oks.items()
            if s == detail and any(e["g"] == gen.index for e in lines)
        ]
        if point == "after-checkpoint":
            committed = [k for k in mine if gen.snapshot.steps.get(k, ({},))[0].get("x", "")
                         .startswith(f"{gen.index}.")]  # fmt: skip
            if not committed:
                violation("other", f"{gen.describe()}: no {detail} checkpoint of this gen")
        elif point == "before-checkpoint":
            if not any(k not in gen.snapshot.steps for k in mine):
                violation("other", f"{gen.describe()}: every {detail} of this gen was stored")
        elif point == "after-finish":
            if gen.snapshot.runs.get(detail, ("",))[0] != "completed":
                violation("other", f"{gen.describe()}: {detail} not completed at the kill")
        elif point == "before-finish":
            n = int(detail.rsplit("-", 1)[1])
            if gen.snapshot.runs.get(detail, ("",))[0] == "completed" or any(
                (detail, s) not in gen.snapshot.steps for s in stored_steps(n, rnd.steps)
            ):
                violation("other", f"{gen.describe()}: {detail} not all stored, or finished")

    fig.lost = len(bad["lost"])
    fig.duplicated = len(bad["duplicated"])
    fig.rerun_after_commit = len(bad["rerun"])
    fig.unaccounted = len(bad["unaccounted"])
    fig.other = len(bad["other"]) + len(bad["results"])
    fig.violations = [text for texts in bad.values() for text in texts]
    return fig


# -- the soak ------------------------------------------------------------------------------


def master_seed(seed: int | None = None) -> int:
    if seed is not None:
        return seed
    text = os.environ.get(SEED_ENV)
    return int(text) if text else random.randrange(2**31)


def soak(
    kills: int,
    seed: int,
    db_dir: Path,
    *,
    runs: int = 8,
    steps: int = 5,
    kills_per_round: tuple[int, int] = (3, 9),
    full_share: float = 0.25,
    progress: Any = None,
) -> Figures:
    """Kill workers ``kills`` times over as many rounds as that takes; check every round."""
    rng = random.Random(seed)
    total = Figures()
    index = 0
    while total.kills < kills:
        rseed = rng.randrange(2**31)
        rrng = random.Random(rseed)
        want = min(kills - total.kills, rrng.randint(*kills_per_round))
        rnd = Round(
            index,
            rseed,
            db_dir / f"round-{index:03d}",
            runs,
            steps,
            "full" if rrng.random() < full_share else "normal",
        )
        fig = play_and_check(rnd, rrng, want)
        total.add(fig)
        if progress is not None:
            progress(rnd, fig, total)
        index += 1
    return total


def play_and_check(
    rnd: Round, rng: random.Random, kills: int, *, faults: tuple[str, ...] = (), max_clean: int = 3
) -> Figures:
    """Play one round (see :func:`play_round`) and check it."""
    problems, _ = play_round(rnd, rng, kills, faults=faults, max_clean=max_clean)
    fig = check_round(rnd, read_ledger(rnd.ledger), Snapshot.read(rnd.db), integrity(rnd.db))
    fig.violations[:0] = problems
    fig.other += len(problems)
    return fig


def fault_free(db_dir: Path, *, runs: int = 8, steps: int = 5) -> tuple[Round, Figures]:
    """One worker, no faults: the reference the killed rounds must match."""
    rnd = Round(-1, 0, db_dir / "fault-free", runs, steps, "normal")
    return rnd, play_and_check(rnd, random.Random(0), 0, max_clean=1)


@contextlib.contextmanager
def seed_banner(seed: int) -> Iterator[None]:
    """Print the seed first (so a failure shows how to reproduce it)."""
    print(f"reliability seed: {seed} (rerun with {SEED_ENV}={seed})", flush=True)
    yield
