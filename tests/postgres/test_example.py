"""examples/postgres_orders.py runs against the real server (a signal from another
Workflow, a replay, a run of a killed process recovered), and says clearly when the
server is not there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import drop_schema

EXAMPLE = Path(__file__).parents[2] / "examples" / "postgres_orders.py"


def run_example(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=90
    )


def test_example_runs_on_the_server(pg_url: str) -> None:
    try:
        done = run_example(pg_url)
    finally:
        drop_schema(pg_url, "orders_example")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    run_1, rest = out.split("run 2:")
    run_2, run_3 = rest.split("run 3:")
    for task in ("reserve_stock", "charge_card", "ship"):
        assert run_1.count(f"ran       {task}") == 1, out
    assert "approval delivered from another Workflow: True" in run_1
    assert "record: status=completed" in run_2
    assert "ran " not in run_2, "the second call executed a task"
    # The killed process reserved the stock; the recovering one did the rest, once.
    assert run_3.count("(process B) ran       reserve_stock") == 1, out
    assert run_3.count("ran       reserve_stock") == 1, out
    assert run_3.count("ran       charge_card") == 1, out
    assert run_3.count("ran       ship") == 1, out
    assert "record: status=completed recoveries=1" in run_3, out


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_example_without_a_server_says_so() -> None:
    done = run_example(f"postgresql://app:hunter2@127.0.0.1:{_spare_port()}/shop")
    assert done.returncode == 1
    assert "PostgreSQL is not reachable" in done.stderr
    assert "postgresql://app:***@127.0.0.1" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
