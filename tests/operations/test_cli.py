"""The ``durable`` command, run as a real process against a real SQLite file.

Exit status: 0 done, 1 nothing to do, 2 bad usage, 3 the store failed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable.backoff import constant


class Boom(Exception):
    pass


def shop(
    db: Path, ran: list[str] | None = None, fail: bool = True, max_recoveries: int = 5
) -> tuple[Workflow, Any]:
    wf = Workflow(
        "shop",
        db=str(db),
        default_retries=0,
        default_backoff=constant(0),
        max_recoveries=max_recoveries,
    )

    @wf.task
    async def pack(n: int) -> dict[str, int]:
        if ran is not None:
            ran.append(f"pack {n}")
        return {"box": n}

    @wf.task
    async def ship(n: int) -> str:
        if ran is not None:
            ran.append(f"ship {n}")
        if fail and n % 2:
            raise Boom(f"no truck for {n}")
        return f"shipped {n}"

    @wf.workflow(id="order-{n}")
    async def order(n: int) -> str:
        await pack(n)
        return await ship(n)

    return wf, order


@pytest.fixture
def populated(db_file: Path) -> Path:
    """order-2 completed (two steps), order-1 failed at its second step."""

    async def make() -> None:
        wf, order = shop(db_file)
        async with wf:
            await order(2)
            await asyncio.sleep(0.01)
            with pytest.raises(Boom):
                await order(1)
            await wf.complete("order-2", "note", {"gift": True})

    asyncio.run(make())
    return db_file


def status_of(db: Path, run_id: str) -> str | None:
    async def get() -> str | None:
        wf, _ = shop(db)
        async with wf:
            run = await wf.get_run(run_id)
            return None if run is None else run.status

    return asyncio.run(get())


def test_runs_list_prints_an_aligned_table(cli, populated: Path) -> None:
    done = cli("runs", "list", "--db", populated)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["RUN", "WORKFLOW", "STATUS", "UPDATED"]
    assert "RESULT / ERROR" in header
    assert [row.split()[0] for row in rows] == ["order-1", "order-2"]  # newest first
    column = header.index("STATUS")
    assert [row[column:].split()[0] for row in rows] == ["failed", "completed"]
    assert "Boom: no truck for 1" in rows[0]
    assert rows[1].endswith("shipped 2")


def test_runs_list_json_and_filters(cli, populated: Path) -> None:
    done = cli("runs", "list", "--db", populated, "--json")
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    assert [(r["run_id"], r["workflow"], r["status"]) for r in runs] == [
        ("order-1", "shop.order", "failed"),
        ("order-2", "shop.order", "completed"),
    ]
    assert runs[1]["result"] == "shipped 2"
    assert runs[0]["inputs"] == {"n": 1}
    assert "steps" not in runs[0]

    failed = json.loads(
        cli("runs", "list", "--db", populated, "--json", "--status", "failed").stdout
    )
    assert [r["run_id"] for r in failed] == ["order-1"]
    other = cli("runs", "list", "--db", populated, "--json", "--workflow", "shop.nothing")
    assert json.loads(other.stdout) == []
    limited = cli("runs", "list", "--db", populated, "--json", "--limit", "1")
    assert [r["run_id"] for r in json.loads(limited.stdout)] == ["order-1"]


def test_runs_list_of_an_empty_store(cli, db_file: Path) -> None:
    async def create() -> None:
        wf, _ = shop(db_file)
        async with wf:
            await wf.list_runs(limit=1)  # sets the store up: an empty database

    asyncio.run(create())
    done = cli("runs", "list", "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(none)"


def test_the_db_defaults_to_the_environment_variable(cli, populated: Path) -> None:
    done = cli("runs", "list", "--json", env={"DURABLE_DB": str(populated)})
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 2


def test_runs_show_lists_the_record_its_steps_and_signals(cli, populated: Path) -> None:
    done = cli("runs", "show", "order-2", "--db", populated)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    fields = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines() if line.strip())
    assert fields["run"] == "order-2"
    assert fields["workflow"] == "shop.order"
    assert fields["status"] == "completed"
    assert json.loads(fields["inputs"]) == {"n": 2}
    assert json.loads(fields["result"]) == "shipped 2"
    steps_table = out.split("\n\n")[1].splitlines()
    assert steps_table[0].split() == ["STEP", "ATTEMPT", "AT", "RESULT"]
    assert [row.split()[0] for row in steps_table[1:]] == ["pack", "ship"]
    assert '{"box": 2}' in steps_table[1]
    signals_table = out.split("\n\n")[2].splitlines()
    assert signals_table[0].split() == ["SIGNAL", "AT", "PAYLOAD"]
    assert signals_table[1].split()[0] == "note"
    assert '{"gift": true}' in signals_table[1]


def test_runs_show_json(cli, populated: Path) -> None:
    done = cli("runs", "show", "order-1", "--db", populated, "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "failed"
    assert "Boom: no truck for 1" in run["error"]
    assert [(s["step_id"], s["value"], s["attempt"]) for s in run["steps"]] == [
        ("pack", {"box": 1}, 1)
    ]
    assert run["signals"] == []


@pytest.mark.parametrize("action", ["show", "cancel", "resume"])
def test_an_unknown_run_exits_1(cli, populated: Path, action: str) -> None:
    done = cli("runs", action, "nobody", "--db", populated)
    assert done.returncode == 1
    assert "no run 'nobody'" in done.stderr


def test_runs_cancel_of_a_failed_run_cancels_it(cli, populated: Path) -> None:
    done = cli("runs", "cancel", "order-1", "--db", populated)
    assert done.returncode == 0, done.stderr
    assert "order-1: cancelled" in done.stdout
    assert status_of(populated, "order-1") == "cancelled"


def test_runs_cancel_of_a_completed_run_exits_1(cli, populated: Path) -> None:
    done = cli("runs", "cancel", "order-2", "--db", populated)
    assert done.returncode == 1
    assert "completed" in done.stderr
    assert status_of(populated, "order-2") == "completed"


@pytest.mark.slow
def test_runs_cancel_of_a_run_executing_in_another_process(
    cli, spawn, db_file, ledger, ledger_lines
) -> None:
    # Steps of 2 s: the CLI (a fresh interpreter, ~0.3 s on an idle 2-core machine, more
    # under a loaded test run) must land its request while step-1 runs.
    proc = spawn("steps", db_file, ledger, "c", 20, 2.0)
    deadline = time.monotonic() + 20
    while ("looper-c", "step-1", "start") not in ledger_lines():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    done = cli("runs", "cancel", "looper-c", "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert "cancel requested" in done.stdout
    code, events, err = proc.finish()
    assert code == 5, err
    assert events[-1]["error"] == "RunCancelledError"
    assert ("looper-c", "step-2", "start") not in ledger_lines()
    shown = json.loads(cli("runs", "show", "looper-c", "--db", db_file, "--json").stdout)
    assert shown["status"] == "cancelled"
    assert [s["step_id"] for s in shown["steps"]] == ["step-0", "step-1"]


def test_runs_resume_reopens_a_failed_run_for_a_worker(cli, populated: Path) -> None:
    done = cli("runs", "resume", "order-1", "--db", populated)
    assert done.returncode == 0, done.stderr
    assert "reopened" in done.stdout
    assert "shop.order" in done.stdout
    assert status_of(populated, "order-1") == "running"

    async def recover() -> tuple[list[str], Any]:
        ran: list[str] = []
        wf, _ = shop(populated, ran, fail=False)
        async with wf:
            ids = await wf.recover()
            return ids, (await wf.get_run("order-1"), ran)

    ids, (run, ran) = asyncio.run(recover())
    assert ids == ["order-1"]
    assert (run.status, run.result) == ("completed", "shipped 1")
    assert ran == ["ship 1"]  # pack replayed


def test_runs_resume_of_a_completed_run_exits_1(cli, populated: Path) -> None:
    done = cli("runs", "resume", "order-2", "--db", populated)
    assert done.returncode == 1
    assert "nothing to resume" in done.stderr


def test_runs_prune(cli, populated: Path) -> None:
    kept = cli("runs", "prune", "--older-than", "1h", "--db", populated, "--json")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout) == {"deleted": 0}
    time.sleep(0.05)
    narrow = cli("runs", "prune", "--older-than", "0s", "--status", "failed", "--db", populated)
    assert narrow.returncode == 0, narrow.stderr
    assert narrow.stdout.strip() == "deleted 1 run(s)"
    assert status_of(populated, "order-1") is None
    assert status_of(populated, "order-2") == "completed"
    rest = cli("runs", "prune", "--older-than", "0s", "--db", populated)
    assert rest.stdout.strip() == "deleted 1 run(s)"
    assert json.loads(cli("runs", "list", "--db", populated, "--json").stdout) == []


def test_runs_prune_leaves_running_runs(cli, db_file: Path) -> None:
    async def orphan() -> None:
        wf, order = shop(db_file)
        async with wf:
            await wf.store.claim_run(
                "order-4", order.workflow_id, {"n": 4}, owner="elsewhere:1:x", lease_seconds=-1
            )

    asyncio.run(orphan())
    done = cli("runs", "prune", "--older-than", "0s", "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deleted 0 run(s)"
    assert status_of(db_file, "order-4") == "running"


def test_signal_wakes_a_workflow_waiting_in_another_process(cli, spawn, db_file: Path) -> None:
    proc = spawn("signal", db_file, "approval-1", "approval", "none")
    proc.wait_for("waiting")
    time.sleep(0.2)
    done = cli(
        "signal", "approval-1", "approval", '{"approved": true, "by": "ann"}', "--db", db_file
    )
    assert done.returncode == 0, done.stderr
    assert "delivered" in done.stdout
    code, events, err = proc.finish(timeout=20)
    assert code == 0, err
    assert events[-1]["payload"] == {"approved": True, "by": "ann"}
    again = cli("signal", "approval-1", "approval", "false", "--db", db_file)
    assert again.returncode == 1
    assert "already delivered" in again.stderr


@pytest.mark.parametrize("payload", ["0", "false", '""', "null"])
def test_signal_payloads_are_stored_as_given(cli, db_file: Path, payload: str) -> None:
    done = cli("signal", "r", "s", payload, "--db", db_file)
    assert done.returncode == 0, done.stderr

    async def read() -> Any:
        wf, _ = shop(db_file)
        async with wf:
            return await wf.store.get_signal("r", "s")

    assert asyncio.run(read()) == (True, json.loads(payload))


def test_signal_with_a_payload_that_is_not_json_is_bad_usage(cli, db_file: Path) -> None:
    done = cli("signal", "r", "s", "{not json", "--db", db_file)
    assert "not JSON" in done.stderr
    assert done.returncode == 2


def test_stores_lists_memory_and_sqlite(cli) -> None:
    done = cli("stores")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "DISTRIBUTION", "PROVIDED", "BY"]
    names = {row.split()[1]: row for row in rows}
    assert "durable-core" in names["memory"]
    assert "durable-sqlite" in names["sqlite"]
    as_json = json.loads(cli("stores", "--json").stdout)
    assert {"memory", "sqlite"} <= {p["name"] for p in as_json}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["runs"],
        ["bogus"],
        ["runs", "frobnicate", "--db", "x.db"],
        ["runs", "show"],
        ["runs", "list", "--status", "sleepy"],
        ["runs", "list", "--limit", "many"],
        ["runs", "prune", "--db", "x.db"],
        ["runs", "prune", "--older-than", "soon"],
        ["runs", "prune", "--older-than", "1d", "--status", "running"],
        ["signal", "run-1"],
    ],
)
def test_bad_usage_exits_2(cli, tmp_path: Path, args: list[str]) -> None:
    done = cli(*args, "--db", tmp_path / "u.db") if args[:1] == ["signal"] else cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "usage: durable" in done.stdout + done.stderr
    assert not (tmp_path / "u.db").exists()


def test_an_unknown_scheme_exits_3_with_the_installed_schemes(cli) -> None:
    done = cli("runs", "list", "--db", "nosuch://somewhere")
    assert done.returncode == 3
    assert "nosuch" in done.stderr
    assert "memory" in done.stderr
    assert "sqlite" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_file_that_is_not_a_database_exits_3(cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all, not even close" * 100)
    done = cli("runs", "list", "--db", junk)
    assert done.returncode == 3
    assert "not a SQLite database" in done.stderr
    assert "Traceback" not in done.stderr


def test_writing_to_a_read_only_store_exits_3(cli, populated: Path) -> None:
    url = f"sqlite:///{populated}?mode=ro"
    listed = cli("runs", "list", "--db", url, "--json")
    assert listed.returncode == 0, listed.stderr
    done = cli("runs", "cancel", "order-1", "--db", url)
    assert done.returncode == 3
    assert "read-only" in done.stderr
    assert status_of(populated, "order-1") == "failed"


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "cancel"],
        ["runs", "resume"],
        ["runs", "prune"],
        ["signal"],
        ["stores"],
    ],
)
def test_every_command_has_help(cli, command: list[str]) -> None:
    done = cli(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: durable {' '.join(command)}".rstrip())
    if command not in ([], ["runs"], ["stores"]):  # the commands that open a store
        assert "--db" in done.stdout


def test_a_dead_lettered_run_is_shown_and_resumed_with_the_cli(cli, db_file: Path) -> None:
    async def dead_letter() -> None:
        wf, order = shop(db_file, fail=False, max_recoveries=0)  # no takeover allowed
        async with wf:
            await wf.store.claim_run(
                "order-3", order.workflow_id, {"n": 3}, owner="elsewhere:1:x", lease_seconds=-1
            )
            assert await wf.recover() == []  # dead-lettered: not resumed

    asyncio.run(dead_letter())
    listed = json.loads(cli("runs", "list", "--status", "dead", "--json", "--db", db_file).stdout)
    assert [r["run_id"] for r in listed] == ["order-3"]
    shown = cli("runs", "show", "order-3", "--db", db_file)
    assert shown.returncode == 0, shown.stderr
    assert "dead-lettered" in shown.stdout
    assert cli("runs", "resume", "order-3", "--db", db_file).returncode == 0

    async def recover() -> Any:
        wf, _ = shop(db_file, fail=False)
        async with wf:
            assert await wf.recover() == ["order-3"]
            return await wf.get_run("order-3")

    run = asyncio.run(recover())
    assert (run.status, run.result, run.recoveries) == ("completed", "shipped 3", 0)
