"""Waiting for a run to change (``wait_for_change``): how a waiting run hears of its
cancellation at once. Checked against a store that declares ``Store.notifies_changes``;
any other store must still return after ``max_wait``."""

from __future__ import annotations

import asyncio

import pytest

from ..store import Store
from ._harness import LIVE, ContractHarness, store_test


def _declares(store: Store) -> None:
    if not type(store).notifies_changes:  # the heartbeat notices its cancellations
        pytest.skip(f"{type(store).__name__}.notifies_changes is False")


class ChangeChecks(ContractHarness):
    """``wait_for_change``: wakes on a cancellation or a signal, from another store object."""

    @store_test()
    async def test_wait_for_change_returns_after_max_wait(self, store: Store) -> None:
        """With nothing happening, the wait ends after ``max_wait`` (a poll, at worst)."""
        await asyncio.wait_for(store.wait_for_change("run-1", 0.05), 5.0)

    @store_test("records_runs", "manages_runs", "persistent")
    async def test_wait_for_change_wakes_on_a_cancellation(self, store: Store) -> None:
        """A cancellation requested through another store object wakes the waiter."""
        _declares(store)
        other = await self.open_store_again()
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        waiter = asyncio.ensure_future(store.wait_for_change("run-1", 600.0))
        await asyncio.sleep(0.1)
        await other.request_cancel("run-1")
        await asyncio.wait_for(waiter, 5.0)

    @store_test("persistent")
    async def test_wait_for_change_wakes_on_a_signal(self, store: Store) -> None:
        """A signal delivered through another store object wakes the waiter."""
        _declares(store)
        other = await self.open_store_again()
        waiter = asyncio.ensure_future(store.wait_for_change("run-1", 600.0))
        await asyncio.sleep(0.1)
        assert await other.set_signal("run-1", "go", 1) is True
        await asyncio.wait_for(waiter, 5.0)
