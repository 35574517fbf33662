"""Capabilities are declared by the store and read by the engine: a store that cannot
keep one owner per run (no run records) or cannot fence a stale owner says so once,
with a StoreGuaranteeWarning, when a Workflow first opens it."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from durable import InMemoryStore, Store, StoreGuaranteeWarning, Workflow
from durable.capabilities import _warned  # pyright: ignore[reportPrivateUsage]


class SeedStore(Store):
    """The seed's seven methods only."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], Any] = {}
        self.signals: dict[tuple[str, str], Any] = {}

    async def setup(self) -> None:
        return None

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        key = (run_id, step_id)
        return (key in self.steps, self.steps.get(key))

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        self.steps[(run_id, step_id)] = result

    async def mark_run_done(self, run_id: str) -> None:
        return None

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        return None

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        key = (run_id, name)
        return (key in self.signals, self.signals.get(key))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        return self.signals.setdefault((run_id, name), payload) is payload


class UnfencedStore(InMemoryStore):
    fences_writes = False


@pytest.fixture(autouse=True)
def forget_warnings() -> None:
    _warned.clear()


async def guarantee_warnings(store: Store) -> list[str]:
    """Run a one-step workflow on ``store``; the StoreGuaranteeWarnings it gave."""
    wf = Workflow("app", db=store)

    @wf.task
    async def one() -> int:
        return 1

    @wf.workflow(id="r")
    async def flow() -> int:
        return await one()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await flow() == 1
    await wf.close()
    return [str(w.message) for w in caught if issubclass(w.category, StoreGuaranteeWarning)]


@pytest.mark.parametrize(
    ("store", "says"),
    [(SeedStore, "keeps no run records"), (UnfencedStore, "does not fence writes")],
)
async def test_a_store_lacking_a_guarantee_says_so_once(store: type[Store], says: str) -> None:
    first = await guarantee_warnings(store())
    assert len(first) == 1
    assert store.__qualname__ in first[0]
    assert says in first[0]
    assert await guarantee_warnings(store()) == []  # once per store class and process


async def test_a_store_with_every_guarantee_says_nothing() -> None:
    wf = Workflow("app", db=InMemoryStore())

    @wf.workflow(id="r")
    async def flow() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreGuaranteeWarning)
        assert await flow() == 1


class OldOverrideStore(InMemoryStore):
    """A subclass written before fencing: checkpoint_step without owner=."""

    async def checkpoint_step(  # type: ignore[override]
        self, run_id: str, step_id: str, result: Any, attempt: int = 1
    ) -> bool:
        return await super().checkpoint_step(run_id, step_id, result, attempt)


async def test_a_subclass_overriding_a_write_without_owner_keeps_working_unfenced() -> None:
    # It inherits fences_writes = True; passing it owner= would be a TypeError in every
    # step. The engine reads the signature, writes unfenced, and says so once.
    messages = await guarantee_warnings(OldOverrideStore())
    assert len(messages) == 1
    assert "overrides checkpoint_step or record_attempt without the owner= keyword" in messages[0]
