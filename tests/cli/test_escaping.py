"""What a run holds is printed with its control characters escaped (a run id, a
workflow name or an error cannot move the cursor, clear the screen, recolour the
terminal or add a line), and long values are cut in tables, full in ``runs show``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from durable_sqlite import SQLiteStore

from .conftest import Cli, write_runs

EVIL_ID = "evil\x1b[31mred\nsecond line\u202e"  # an argument: no NUL
EVIL_WORKFLOW = "app.\x1b]0;title\x07fl\x00ow\r"
EVIL_ERROR = "Boom: one\ntwo\x1b[2J\x08\x7f\x9bend\u2028\x00"
#: What none of the output may hold: C0 and C1 controls (but the newline ending each
#: line), DEL, the line and paragraph separators, bidirectional overrides.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _evil_run(db_file: Path) -> None:
    write_runs(
        db_file,
        [{"run_id": EVIL_ID, "workflow": EVIL_WORKFLOW, "inputs": {"n": 1}, "error": EVIL_ERROR}],
    )


def _escaped(text: str) -> str:
    return repr(text)[1:-1]


def test_runs_list_escapes_ids_workflows_and_errors(cli: Cli, db_file: Path) -> None:
    _evil_run(db_file)
    done = cli("runs", "list", "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert not UNSAFE.search(done.stdout)
    _header, *rows = done.stdout.splitlines()
    assert len(rows) == 1
    assert rows[0].startswith(_escaped(EVIL_ID))
    assert _escaped(EVIL_WORKFLOW) in rows[0]
    assert r"Boom: one\ntwo\x1b[2J\x08\x7f\x9bend\u2028\x00" in rows[0]


def test_runs_show_escapes_every_field(cli: Cli, db_file: Path) -> None:
    _evil_run(db_file)
    done = cli("runs", "show", EVIL_ID, "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert not UNSAFE.search(done.stdout)
    fields = dict(line.split(None, 1) for line in done.stdout.split("\n\n")[0].splitlines())
    assert fields["run"] == _escaped(EVIL_ID)
    assert fields["workflow"] == _escaped(EVIL_WORKFLOW)
    assert fields["error"] == _escaped(EVIL_ERROR)


def test_steps_and_signals_are_escaped_in_runs_show(cli: Cli, db_file: Path) -> None:
    write_runs(
        db_file,
        [{"run_id": "r1", "workflow": "app.flow", "inputs": {"s": "\x1b[1m"},
          "step": ("step\x1b[5m\none", "val\x00ue")}],
    )  # fmt: skip

    async def signal() -> None:
        store = SQLiteStore(db_file)
        await store.setup()
        await store.set_signal("r1", "sig\r\nnal", {"x": "\x1b[0m\u202e"})
        await store.close()

    import asyncio

    asyncio.run(signal())
    done = cli("runs", "show", "r1", "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert not UNSAFE.search(done.stdout)
    assert r"step\x1b[5m\none" in done.stdout
    assert r"sig\r\nnal" in done.stdout
    assert r"\u202e" in done.stdout


def test_messages_of_commands_that_write_are_escaped(cli: Cli, db_file: Path) -> None:
    _evil_run(db_file)
    resumed = cli("runs", "resume", EVIL_ID, "--db", db_file)
    assert resumed.returncode == 0, resumed.stderr
    assert not UNSAFE.search(resumed.stdout + resumed.stderr)
    assert len(resumed.stdout.splitlines()) == 1
    assert _escaped(EVIL_ID) in resumed.stdout
    assert _escaped(EVIL_WORKFLOW) in resumed.stdout
    again = cli("runs", "resume", EVIL_ID, "--db", db_file)  # running now: nothing to do
    assert again.returncode == 1
    assert not UNSAFE.search(again.stderr)
    assert len(again.stderr.splitlines()) == 1
    signalled = cli("signal", EVIL_ID, "go\x1b[31m", "--db", db_file)
    assert signalled.returncode == 0, signalled.stderr
    assert not UNSAFE.search(signalled.stdout)
    assert len(signalled.stdout.splitlines()) == 1


@pytest.mark.parametrize("action", ["show", "cancel", "resume"])
def test_an_unknown_run_id_is_escaped_in_the_message(cli: Cli, db_file: Path, action) -> None:
    write_runs(db_file, [{"run_id": "r1", "workflow": "app.flow", "inputs": {}}])
    done = cli("runs", action, "no\x1b[2Jbody\n", "--db", db_file)
    assert done.returncode == 1
    assert not UNSAFE.search(done.stderr)
    assert len(done.stderr.splitlines()) == 1


def test_long_values_are_cut_in_the_table_and_full_in_runs_show(cli: Cli, db_file: Path) -> None:
    long_id = "order-" + "7" * 300
    long_workflow = "app." + "w" * 300
    long_error = "Boom: " + "x" * 2000 + "\n" + "y" * 100
    write_runs(
        db_file,
        [{"run_id": long_id, "workflow": long_workflow, "inputs": {}, "error": long_error}],
    )
    listed = cli("runs", "list", "--db", db_file)
    assert listed.returncode == 0, listed.stderr
    _header, row = listed.stdout.splitlines()
    assert len(row) < 250
    assert row.split()[0].endswith("…")
    assert long_id not in row
    assert long_workflow not in row
    assert "…" in row.split()[1]
    # Full (escaped) where one run is shown, and exact in JSON.
    shown = cli("runs", "show", long_id, "--db", db_file)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(None, 1) for line in shown.stdout.split("\n\n")[0].splitlines())
    assert fields["run"] == long_id
    assert fields["workflow"] == long_workflow
    assert fields["error"] == _escaped(long_error)
    exact = json.loads(cli("runs", "show", long_id, "--db", db_file, "--json").stdout)
    assert (exact["run_id"], exact["error"]) == (long_id, long_error)


def test_json_output_keeps_values_exact(cli: Cli, db_file: Path) -> None:
    _evil_run(db_file)
    done = cli("runs", "list", "--db", db_file, "--json")
    assert done.returncode == 0, done.stderr
    assert not UNSAFE.search(done.stdout)  # JSON escapes them itself
    [run] = json.loads(done.stdout)
    assert (run["run_id"], run["workflow"], run["error"]) == (EVIL_ID, EVIL_WORKFLOW, EVIL_ERROR)
