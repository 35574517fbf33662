"""Two real processes on one host name, one store, two PID namespaces (issue #14).

The first process executes a long run; the second calls the same run id from a new PID
namespace (``unshare --pid --fork --mount-proc``), as a second container with the same
host name and database would. There the first owner's pid does not exist, yet the owner
is alive: the second must wait for its lease, not take the run over, so that no step
body runs in both processes, and both callers get the one result.

This file is also the worker: ``python test_pid_namespace.py DB LEDGER NAME RUN STEPS
PAUSE`` runs the workflow on DB (a path or a URL), each step body appending "NAME STEP"
to LEDGER before sleeping PAUSE seconds, and prints the result as JSON.

Without root, ``unshare`` is tried in a user namespace of its own (``--user
--map-root-user``). Skipped when ``unshare`` is missing or not permitted (the Redis case
also when no server answers), except with ``DURABLE_REQUIRE_SERVICES=1``: then a missing
Redis fails, and so does a missing or refused ``unshare`` when running as root.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

THIS = Path(__file__)
STEPS = 20
PAUSE = 0.2
RESULT = sum(i * i for i in range(STEPS))
REQUIRED = os.environ.get("DURABLE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("DURABLE_REDIS_URL", "redis://127.0.0.1:6379/9")
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
# Without root: a user namespace of its own, in which it may make a PID namespace.
UNSHARE_AS_USER = ["unshare", "--user", "--map-root-user", *UNSHARE[1:]]

Start = Callable[..., "subprocess.Popen[str]"]


def usable_unshare() -> tuple[list[str] | None, str]:
    """The command prefix giving a process a PID namespace of its own, or why there is none."""
    if shutil.which("unshare") is None:
        return None, "unshare (util-linux) is not installed"
    problems: list[str] = []
    for prefix in (UNSHARE, UNSHARE_AS_USER):
        command = " ".join([*prefix, "true"])
        try:
            probe = subprocess.run(
                [*prefix, "true"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"`{command}` did not run: {exc}")
            continue
        if probe.returncode == 0:
            return prefix, ""
        problems.append(f"`{command}` is not permitted ({probe.stderr.strip()})")
    return None, "; ".join(problems)


@pytest.fixture
def unshare() -> list[str]:
    """The command prefix that starts a process in a new PID namespace."""
    prefix, problem = usable_unshare()
    if prefix is None:
        if REQUIRED and os.geteuid() == 0:
            pytest.fail(f"{problem} (DURABLE_REQUIRE_SERVICES=1, and root)")
        pytest.skip(problem)
    return prefix


@pytest.fixture
def start() -> Iterator[Start]:
    """``start(prefix, db, ledger, name)``: this file as a worker, behind ``prefix``."""
    started: list[subprocess.Popen[str]] = []

    def launch(prefix: list[str], db: str, ledger: Path, name: str) -> subprocess.Popen[str]:
        command = [*prefix, sys.executable, str(THIS), db, str(ledger), name, "shared"]
        proc = subprocess.Popen(
            [*command, str(STEPS), str(PAUSE)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def ledger_lines(ledger: Path) -> list[tuple[str, int]]:
    if not ledger.exists():
        return []
    return [(name, int(step)) for name, step in map(str.split, ledger.read_text().splitlines())]


def outcome(proc: subprocess.Popen[str]) -> tuple[int | None, str]:
    """The result the worker printed (None when it failed), and its stderr."""
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        return None, f"exit {proc.returncode}:\n{err}"
    result: int = json.loads(out.strip().splitlines()[-1])["result"]
    return result, err


def check_second_namespace_waits(start: Start, unshare: list[str], db: str, ledger: Path) -> None:
    first = start([], db, ledger, "first")
    deadline = time.monotonic() + 30
    while not ledger_lines(ledger):  # the first owns the run and executes its steps
        assert first.poll() is None, f"the first process ended early:\n{first.communicate()}"
        assert time.monotonic() < deadline, "the first process executed no step in time"
        time.sleep(0.02)

    second = start(unshare, db, ledger, "second")
    time.sleep(1.0)  # time enough for the second to start, claim, and (wrongly) take over
    by_first = [step for name, step in ledger_lines(ledger) if name == "first"]
    assert len(by_first) < STEPS, "the first finished too soon for the test to mean anything"

    (first_result, first_err), (second_result, second_err) = outcome(first), outcome(second)
    lines = ledger_lines(ledger)
    by_step: dict[int, set[str]] = collections.defaultdict(set)
    for name, step in lines:
        by_step[step].add(name)
    both = sorted(step for step, names in by_step.items() if len(names) > 1)
    assert not both, f"steps {both} ran in both processes: {lines}"
    assert sorted(step for _, step in lines) == list(range(STEPS)), f"a step ran twice: {lines}"
    assert {name for name, _ in lines} == {"first"}, f"the second took the live run over: {lines}"
    assert first_result == RESULT, f"the first process: {first_err}"
    assert second_result == RESULT, f"the second process: {second_err}"


@pytest.mark.slow
def test_sqlite_owner_in_another_pid_namespace_is_waited_for(
    start: Start, unshare: list[str], tmp_path: Path
) -> None:
    check_second_namespace_waits(start, unshare, str(tmp_path / "shared.db"), tmp_path / "ledger")


@pytest.mark.slow
def test_redis_owner_in_another_pid_namespace_is_waited_for(
    start: Start, unshare: list[str], redis_db: str, tmp_path: Path
) -> None:
    check_second_namespace_waits(start, unshare, redis_db, tmp_path / "ledger")


def worker(db: str, ledger: str, name: str, run_id: str, steps: int, pause: float) -> None:
    import asyncio

    from durable import Workflow
    from durable.backoff import constant

    wf = Workflow("pidns", db=db, default_retries=0, default_backoff=constant(0))

    @wf.task
    async def square(i: int) -> int:
        with open(ledger, "a") as out:  # noqa: ASYNC230 - logged before the body returns
            out.write(f"{name} {i}\n")
        await asyncio.sleep(pause)
        return i * i

    @wf.workflow
    async def squares() -> int:
        return sum([await square(i, step_id=f"step-{i}") for i in range(steps)])

    async def run() -> None:
        async with wf:
            print(json.dumps({"result": await squares.run(run_id)}), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    db_arg, ledger_arg, name_arg, run_arg, steps_arg, pause_arg = sys.argv[1:]
    worker(db_arg, ledger_arg, name_arg, run_arg, int(steps_arg), float(pause_arg))
