"""Shared fixtures of the core behaviour suite.

``wf``        a Workflow on a fresh InMemoryStore (retries wait 0 s).
``db``        parametrized: a callable returning a store over one set of data. For
              ``memory`` it returns the same InMemoryStore every time; for ``sqlite`` a
              new ``SQLiteStore`` on the same file each call (a "restarted process").
              The sqlite case is skipped while ``durable_sqlite`` is not importable.
``make_wf``   builds Workflows on ``db()`` and closes them at teardown.
"""

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from durable import InMemoryStore, Store, Workflow
from durable.backoff import constant
from durable.store import RunClaim, RunRecord


def sqlite_store_class() -> Any:
    """``durable_sqlite.SQLiteStore``, or None while the plugin is not importable."""
    try:
        module = importlib.import_module("durable_sqlite")
    except ImportError:
        return None
    return getattr(module, "SQLiteStore", None)


StoreSource = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSource]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda: store
        return
    cls = sqlite_store_class()
    if cls is None:
        pytest.skip("durable_sqlite is not importable yet")
    path = tmp_path / "t.db"
    yield lambda: cls(str(path))


WorkflowFactory = Callable[..., Workflow]


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
async def wf(store: InMemoryStore) -> AsyncIterator[Workflow]:
    workflow = Workflow("app", db=store, default_backoff=constant(0))
    yield workflow
    await workflow.close()


class RecordingStore(InMemoryStore):
    """An InMemoryStore that records the name of every store method called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def count(self, method: str) -> int:
        return self.calls.count(method)

    async def setup(self) -> None:
        self.calls.append("setup")
        await super().setup()

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        self.calls.append("get_step")
        return await super().get_step(run_id, step_id)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        self.calls.append("set_step")
        await super().set_step(run_id, step_id, result, attempt)

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        self.calls.append("load_steps")
        return await super().load_steps(run_id)

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        self.calls.append("get_signal")
        return await super().get_signal(run_id, name)

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        self.calls.append("set_signal")
        return await super().set_signal(run_id, name, payload)

    async def claim_run(
        self,
        run_id: str,
        workflow: str,
        inputs: Any,
        *,
        owner: str,
        lease_seconds: float,
        takeover_from: str | None = None,
    ) -> RunClaim:
        self.calls.append("claim_run")
        return await super().claim_run(
            run_id,
            workflow,
            inputs,
            owner=owner,
            lease_seconds=lease_seconds,
            takeover_from=takeover_from,
        )

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        self.calls.append("renew_lease")
        return await super().renew_lease(run_id, owner, lease_seconds)

    async def release_run(self, run_id: str, owner: str) -> None:
        self.calls.append("release_run")
        await super().release_run(run_id, owner)

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: Literal["completed", "failed"],
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        self.calls.append("finish_run")
        await super().finish_run(
            run_id, owner, status, result=result, has_result=has_result, error=error
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.calls.append("get_run")
        return await super().get_run(run_id)


@pytest.fixture
def recording_store() -> RecordingStore:
    return RecordingStore()


async def _wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``await wait_until(predicate, timeout=2.0)``: yield to the loop until it holds."""
    return _wait_until
