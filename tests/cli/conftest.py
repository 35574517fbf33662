"""Fixtures of the ``durable`` command's suite: the CLI run as a real process.

``cli``         runs ``python -m durable.cli ...`` (in ``cwd`` if given; ``env`` adds
                variables, a None value removes one), returns the CompletedProcess.
``db_file``     a fresh SQLite path (not created).
``write_runs``  ``write_runs(path, [{"run_id": ..., "workflow": ..., ...}])`` writes runs
                into a SQLite file through the store's API, as a workflow process would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from durable_sqlite import SQLiteStore

Cli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli() -> Cli:
    def run(
        *args: object, env: dict[str, str | None] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "PYTHONIOENCODING": "utf-8"}
        for name, value in (env or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        return subprocess.run(
            [sys.executable, "-m", "durable.cli", *map(str, args)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            cwd=cwd,
            env=environ,
        )

    return run


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


def write_runs(path: Path, runs: list[dict[str, Any]]) -> None:
    """Create ``runs`` (dicts of run_id, workflow, inputs, and optionally status and
    error) in the SQLite file at ``path``, through the store."""

    async def write() -> None:
        store = SQLiteStore(path)
        await store.setup()
        try:
            for run in runs:
                owner = "writer:1:x"
                claim = await store.claim_run(
                    run["run_id"], run["workflow"], run.get("inputs"), owner=owner,
                    lease_seconds=30,
                )  # fmt: skip
                assert claim.acquired
                if "step" in run:
                    step_id, value = run["step"]
                    await store.set_step(run["run_id"], step_id, value)
                status = run.get("status", "failed")
                await store.finish_run(
                    run["run_id"], owner, status, result=run.get("result"),
                    has_result=status == "completed", error=run.get("error"),
                )  # fmt: skip
        finally:
            await store.close()

    asyncio.run(write())
