"""Shared fixtures of the SQLite store suite.

``db_path``   a fresh database path in the test's temporary directory (not created).
``spawn``     starts ``tests/sqlite/worker.py <command> <args...>`` as a real process
              (text pipes) and kills any that are still running at teardown.
``raw``       opens a plain ``sqlite3`` connection on a path (closed at teardown).
``seed_db``   ``db_path`` made a database exactly as the seed (python-durable 0.2,
              schema version 0) left it; ``seed_steps`` is what its steps hold.
"""

import functools
import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("worker.py")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn(start_script: Callable[..., subprocess.Popen[str]]) -> Spawn:
    """Start this folder's worker script with these arguments."""
    return functools.partial(start_script, WORKER)


@pytest.fixture
def raw() -> Iterator[Callable[..., sqlite3.Connection]]:
    opened: list[sqlite3.Connection] = []

    def connect(path: Path | str, **kwargs: object) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), isolation_level=None, **kwargs)  # type: ignore[arg-type]
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


# -- the seed's version 0 files -----------------------------------------------------------

SEED_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',
    error TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    result TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS signals (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""

SEED_STEPS: dict[tuple[str, str], Any] = {
    ("seed-failed", "fetch"): None,
    ("seed-failed", "fetch#1"): "hello",
    ("seed-failed", "fetch#2"): {"a": [1, 2.5], "b": False},
    ("seed-done", "compute"): 42,
    ("seed-running", "label"): "",
}


def make_seed_file(path: Path) -> None:
    """A database exactly as python-durable 0.2 left it (version 0)."""
    conn = sqlite3.connect(path)
    conn.executescript(SEED_SCHEMA)
    conn.executemany(
        "INSERT INTO runs (run_id, workflow_id, status, error, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("seed-done", "app.compute_flow", "done", None,
             "2024-01-02 03:04:05", "2024-01-02 03:04:06"),
            ("seed-failed", "app.fetch_flow", "failed", "ValueError: boom",
             "2024-01-02 03:05:00", "2024-01-02 03:06:00"),
        ],
    )  # fmt: skip
    conn.execute(  # defaults for the timestamps, as the seed inserted them
        "INSERT INTO runs (run_id, workflow_id) VALUES ('seed-running', 'app.text_flow')"
    )
    conn.executemany(
        "INSERT INTO steps (run_id, step_id, result, attempt) VALUES (?, ?, ?, ?)",
        [
            (run_id, step_id, json.dumps({"v": value}), 2 if step_id == "fetch#1" else 1)
            for (run_id, step_id), value in SEED_STEPS.items()
        ],
    )
    conn.executemany(
        "INSERT INTO signals (run_id, name, payload) VALUES (?, ?, ?)",
        [
            ("seed-failed", "approval", json.dumps({"approved": True})),
            ("seed-failed", "nothing", json.dumps(None)),
            ("seed-running", "zero", json.dumps(0)),
        ],
    )
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


@pytest.fixture
def seed_steps() -> dict[tuple[str, str], Any]:
    return dict(SEED_STEPS)


@pytest.fixture
def seed_db(db_path: Path) -> Path:
    make_seed_file(db_path)
    return db_path
