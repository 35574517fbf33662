"""examples/redis_orders.py runs against the real server, and says clearly when it is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import delete_prefix, spare_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "redis_orders.py"


def run_example(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60
    )


def test_example_runs_on_the_server(redis_url: str) -> None:
    try:
        done = run_example(redis_url)
    finally:
        delete_prefix(redis_url, "redis-orders-example")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("ran       reserve_stock") == 1
    assert out.count("ran       charge_card") == 1
    assert out.count("ran       ship") == 1
    assert "approval delivered from another Workflow: True" in out
    assert "record: status=completed" in out
    _, run_2 = out.split("run 2:")
    assert "ran " not in run_2, "the second call executed a task"


def test_example_without_a_server_says_so() -> None:
    done = run_example(f"redis://:hunter2@127.0.0.1:{spare_port()}/0")
    assert done.returncode == 1
    assert "Redis is not reachable" in done.stderr
    assert "redis://:***@127.0.0.1" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
