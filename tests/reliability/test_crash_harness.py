"""Workers SIGKILLed at random moments and at every named fault point of the engine,
restarted until all runs finish; the checker of harness.py finds nothing wrong.

The full soak is ``python tests/reliability/soak.py --kills 500``; here a short one
runs (seed printed; ``DURABLE_RELIABILITY_SEED`` reproduces it), every fault point is
armed once on purpose, and the checker is shown to catch planted violations.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import pytest

from . import harness
from .harness import Figures, Round, Snapshot

#: Kills of the short soak that runs with the suite.
SHORT_SOAK_KILLS = 25


def assert_clean(fig: Figures) -> None:
    assert fig.ok, "\n".join(fig.violations[:30])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Round, Figures]:
    return harness.fault_free(tmp_path_factory.mktemp("fault-free"))


def test_a_fault_free_round_gives_the_expected_results(reference: tuple[Round, Figures]) -> None:
    rnd, fig = reference
    assert_clean(fig)
    assert fig.identical == fig.runs == rnd.runs
    ledger = harness.read_ledger(rnd.ledger)
    # Each task step's body ran exactly once; the flaky ones failed twice first.
    task_steps = sum(len(harness.task_steps(n, rnd.steps)) for n in range(rnd.runs))
    assert fig.executions == task_steps
    assert fig.re_executions == 0
    fails = [e for e in ledger if e["e"] == "fail"]
    flaky_runs = [n for n in range(rnd.runs) if harness.has_flaky(n)]
    assert len(fails) == harness.FLAKY_FAILS * len(flaky_runs)
    final = Snapshot.read(rnd.db)
    for n in flaky_runs:  # succeeded on attempt 3 of 4: the failed attempts were counted
        assert final.steps[harness.run_id(n), "flaky"][1] == harness.FLAKY_FAILS + 1


# -- every fault point, once --------------------------------------------------------------

POINTS = [
    ("before-checkpoint@w2", "normal"),
    ("after-checkpoint@w2", "normal"),
    ("before-checkpoint@flaky", "normal"),
    ("after-checkpoint@total", "normal"),
    ("before-finish@job-4", "normal"),
    ("after-finish@job-4", "normal"),
    ("after-commit", "normal"),
    ("after-commit+0.15", "normal"),
    ("after-checkpoint@w0", "full"),
    ("after-commit+0.15", "full"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "durability"), POINTS)
def test_a_worker_killed_at_a_fault_point_resumes_without_rerunning_commits(
    tmp_path: Path, fault: str, durability: str
) -> None:
    rnd = Round(0, 0, tmp_path / "round", 6, 4, durability)
    fig = harness.play_and_check(rnd, random.Random(0), 1, faults=(fault,))
    assert_clean(fig)
    first = rnd.generations[0]
    assert first.killed, f"{fault} never fired: {first.describe()}"
    assert not first.killed_by_driver
    assert rnd.generations[-1].clean
    assert fig.identical == rnd.runs
    ledger = harness.read_ledger(rnd.ledger)
    if fault.startswith("before-checkpoint@"):
        # The step whose checkpoint the kill prevented ran again: that is allowed, once.
        step = fault.split("@")[1]
        bodies = [e for e in ledger if e["e"] == "ok" and e["step"] == step]
        assert fig.re_executions >= 1
        assert any(e["g"] == 1 for e in bodies)
    if fault.startswith("after-checkpoint@"):
        # The runs whose checkpoint committed before the kill never ran that step again
        # (other runs may have been between their body and their checkpoint).
        step = fault.split("@")[1]
        at_kill = first.snapshot
        assert at_kill is not None
        committed = [
            run
            for (run, sid), (value, _, _) in at_kill.steps.items()
            if sid == step and value["x"].startswith("0.")
        ]
        assert committed, "the kill came before the checkpoint it was armed after"
        for run in committed:
            bodies = [e for e in ledger if e["e"] == "ok" and (e["run"], e["step"]) == (run, step)]
            assert [e["g"] for e in bodies] == [0], f"{run} {step} ran again after its commit"
    if fault.startswith("after-finish@"):
        rid = fault.split("@")[1]
        assert [e["g"] for e in ledger if e["e"] == "enter" and e["run"] == rid] == [0]


# -- the short soak -------------------------------------------------------------------------


@pytest.mark.slow
def test_short_soak_of_random_kills(tmp_path: Path) -> None:
    seed = harness.master_seed()
    with harness.seed_banner(seed):
        started = time.monotonic()
        fig = harness.soak(SHORT_SOAK_KILLS, seed, tmp_path)
        print(f"{fig.summary()} [{time.monotonic() - started:.1f} s]")
    assert_clean(fig)
    assert fig.kills >= SHORT_SOAK_KILLS
    assert fig.identical == fig.runs
    assert fig.integrity_ok == fig.rounds


# -- the checker catches what it is meant to ---------------------------------------------------


def planted(reference: tuple[Round, Figures]) -> tuple[Round, list[dict], Snapshot]:
    rnd, _ = reference
    return copy.deepcopy(rnd), harness.read_ledger(rnd.ledger), Snapshot.read(rnd.db)


def ok_line(ledger: list[dict], run: str, step: str) -> dict:
    return next(e for e in ledger if e["e"] == "ok" and e["run"] == run and e["step"] == step)


def test_the_checker_passes_the_reference(reference: tuple[Round, Figures]) -> None:
    rnd, ledger, final = planted(reference)
    assert_clean(harness.check_round(rnd, ledger, final, "ok"))


def test_the_checker_catches_a_body_rerun_after_its_commit(
    reference: tuple[Round, Figures],
) -> None:
    rnd, ledger, final = planted(reference)
    again = dict(ok_line(ledger, "job-0", "w1"), x="0.999")
    ledger.append(again)  # ran again after the stored execution, in the same process
    fig = harness.check_round(rnd, ledger, final, "ok")
    assert fig.rerun_after_commit == 1, fig.violations


def test_the_checker_catches_a_replaced_checkpoint(reference: tuple[Round, Figures]) -> None:
    rnd, ledger, final = planted(reference)
    key = ("job-1", "w0")
    ledger.append(dict(ok_line(ledger, *key), x="0.998", g=0))
    value, attempt, at = final.steps[key]
    final.steps[key] = ({**value, "x": "0.998"}, attempt, at + 1)
    fig = harness.check_round(rnd, ledger, final, "ok")
    assert fig.duplicated >= 1, fig.violations
    assert fig.lost >= 1  # the workflow went on with the first value
    assert fig.unaccounted >= 1  # and the lost execution was no kill's doing


def test_the_checker_catches_a_lost_checkpoint(reference: tuple[Round, Figures]) -> None:
    rnd, ledger, final = planted(reference)
    del final.steps["job-2", "w3"]
    fig = harness.check_round(rnd, ledger, final, "ok")
    assert fig.lost >= 1, fig.violations


def test_the_checker_catches_a_wrong_result_and_a_corrupt_file(
    reference: tuple[Round, Figures],
) -> None:
    rnd, ledger, final = planted(reference)
    status, result, recoveries = final.runs["job-3"]
    final.runs["job-3"] = (status, {**result, "total": -1}, recoveries)
    fig = harness.check_round(rnd, ledger, final, "*** in database main ***")
    assert fig.identical == rnd.runs - 1
    assert fig.integrity_ok == 0
    assert fig.other == 2, fig.violations


def test_the_checker_catches_a_reentered_completed_run(reference: tuple[Round, Figures]) -> None:
    rnd, ledger, final = planted(reference)
    rnd.generations.append(copy.deepcopy(rnd.generations[0]))
    rnd.generations[-1].index = 1
    ledger.append({"e": "enter", "run": "job-5", "g": 1})
    fig = harness.check_round(rnd, ledger, final, "ok")
    assert any("body ran again" in v for v in fig.violations), fig.violations
