"""Shared fixtures of the operations suite (sleep, signal timeouts, cancel, resume,
recovery, inspection and the ``durable`` command).

``db``          parametrized over ``memory`` and ``sqlite``: a callable returning a store
                over one set of data (the same InMemoryStore each time; a new
                ``SQLiteStore`` on one fresh file each call, like a restarted process).
``make_wf``     builds Workflows on ``db()`` (retries wait 0 s) and closes them after.
``db_file``     a fresh SQLite path for tests that need a real file (subprocesses, CLI).
``worker``      the module ``worker.py`` (its ``build`` makes the subprocesses' workflows).
``spawn``       starts ``worker.py <command> ...`` as a real process; kills leftovers.
``cli``         runs ``python -m durable.cli ...``, returns the CompletedProcess.
``ledger``      a ledger file path and ``ledger_lines()`` to read it.
``wait_until``  ``await wait_until(predicate, timeout)`` polls a (sync or async) predicate.
``dead_owner``  an owner id of a process on this host that cannot exist.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from durable import InMemoryStore, Store
from durable.owners import local_owner_id
from durable_sqlite import SQLiteStore

HERE = Path(__file__).parent
WORKER = HERE / "worker.py"
REPO = HERE.parents[1]

StoreSource = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSource:
    if request.param == "memory":
        store = InMemoryStore()
        return lambda: store
    path = tmp_path / "ops.db"
    return lambda: SQLiteStore(str(path))


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture(scope="session")
def worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ops_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Proc:
    """A worker process whose JSON event lines are read as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []

    def next_event(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next JSON line (blocking the caller: use it from sync code or briefly)."""
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if line:
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                return event
            if self.popen.poll() is not None:
                err = self.popen.stderr.read() if self.popen.stderr else ""
                raise AssertionError(f"worker exited ({self.popen.returncode}):\n{err}")
        raise AssertionError("no event from the worker in time")

    def wait_for(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            if event.get("event") == name:
                return event

    def kill(self) -> None:
        self.popen.kill()  # SIGKILL: no cleanup, no exception handler
        self.popen.wait(timeout=10)

    def finish(self, timeout: float = 30.0) -> tuple[int, list[dict[str, Any]], str]:
        out, err = self.popen.communicate(timeout=timeout)
        self.events += [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.popen.returncode, self.events, err


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(*args: object, lease: float | None = None, max_recoveries: int | None = None) -> Proc:
        env = dict(os.environ)
        if lease is not None:
            env["OPS_LEASE"] = str(lease)
        if max_recoveries is not None:
            env["OPS_MAX_RECOVERIES"] = str(max_recoveries)
        proc = Proc([str(a) for a in args], env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.communicate()


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "durable.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    return run


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def ledger_lines(ledger: Path) -> Callable[[], list[tuple[str, str, str]]]:
    def read() -> list[tuple[str, str, str]]:
        if not ledger.exists():
            return []
        return [tuple(line.split()) for line in ledger.read_text().splitlines()]  # type: ignore[misc]

    return read


async def _wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return _wait_until


@pytest.fixture
def dead_owner() -> Callable[[str], str]:
    """``dead_owner("x")``: an owner id on this host whose pid is above pid_max."""

    def make(token: str = "gone") -> str:
        return local_owner_id(2**22 + 1, token)

    return make
