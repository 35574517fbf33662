"""``durable runs list`` and ``durable runs show`` only look: a missing SQLite file is
exit 2 with one line, and an existing one is opened read-only (never migrated, never
switched to WAL, never created)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .conftest import Cli, write_runs

INSPECTING = [["runs", "list"], ["runs", "show", "order-1"]]


@pytest.mark.parametrize("command", INSPECTING)
def test_a_missing_file_is_exit_2_and_is_not_created(cli: Cli, db_file: Path, command) -> None:
    done = cli(*command, "--db", db_file)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == f"durable: no database at {db_file}\n"
    assert done.stdout == ""
    assert list(db_file.parent.iterdir()) == []


@pytest.mark.parametrize("command", INSPECTING)
def test_a_missing_file_named_by_a_url_is_exit_2(cli: Cli, tmp_path: Path, command) -> None:
    done = cli(*command, "--db", "sqlite:///nothing-here.db", cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == "durable: no database at sqlite:///nothing-here.db\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("unset", [None, ""])
def test_the_default_db_is_not_created_either(cli: Cli, tmp_path: Path, unset) -> None:
    # An empty $DURABLE_DB is no setting (it is not a store in memory, empty every time).
    done = cli("runs", "list", cwd=tmp_path, env={"DURABLE_DB": unset})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == "durable: no database at durable.db\n"
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_in_a_missing_folder_is_exit_2(cli: Cli, tmp_path: Path) -> None:
    where = tmp_path / "no" / "such" / "jobs.db"
    done = cli("runs", "list", "--db", where, "--json")
    assert done.returncode == 2
    assert done.stderr == f"durable: no database at {where}\n"
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", INSPECTING)
def test_an_existing_file_is_opened_read_only(cli: Cli, db_file: Path, command) -> None:
    write_runs(db_file, [{"run_id": "order-1", "workflow": "shop.order", "inputs": {"n": 1}}])
    # Back to a rollback journal: a read-write open switches the file to WAL again
    # (rewriting its header and making a -wal file); a read-only one cannot.
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    conn.close()
    before = db_file.read_bytes()
    done = cli(*command, "--db", db_file)
    assert done.returncode == 0, done.stderr
    assert "order-1" in done.stdout
    assert db_file.read_bytes() == before
    assert sorted(p.name for p in db_file.parent.iterdir()) == [db_file.name]


def test_an_explicit_url_is_opened_read_only_too(cli: Cli, db_file: Path) -> None:
    write_runs(db_file, [{"run_id": "order-1", "workflow": "shop.order", "inputs": {"n": 1}}])
    with sqlite3.connect(db_file) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = db_file.read_bytes()
    done = cli("runs", "list", "--db", f"sqlite:///{db_file}?durability=full", "--json")
    assert done.returncode == 0, done.stderr
    assert db_file.read_bytes() == before
    assert sorted(p.name for p in db_file.parent.iterdir()) == [db_file.name]


def test_commands_that_write_still_work_on_an_existing_file(cli: Cli, db_file: Path) -> None:
    write_runs(db_file, [{"run_id": "order-1", "workflow": "shop.order", "inputs": {"n": 1}}])
    done = cli("runs", "resume", "order-1", "--db", db_file)
    assert done.returncode == 0, done.stderr
    shown = cli("runs", "show", "order-1", "--db", db_file)
    assert "running" in shown.stdout
