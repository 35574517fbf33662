"""Signals: ``set_signal``, ``get_signal``, ``wait_for_signal``, ``list_signals``."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from ..errors import UnsupportedOperation
from ..store import SignalRecord, Store
from ._harness import FALSY, NESTED, ContractHarness, store_test


class SignalChecks(ContractHarness):
    """Signals: ``set_signal``, ``get_signal``, ``wait_for_signal``, ``list_signals``."""

    # -- signals ----------------------------------------------------------------------

    @store_test()
    async def test_get_signal_missing_is_not_found(self, store: Store) -> None:
        """A signal not delivered is ``(False, None)``."""
        assert await store.get_signal("run-1", "approval") == (False, None)
        await store.set_signal("run-1", "other", 1)
        assert await store.get_signal("run-1", "approval") == (False, None)

    @store_test()
    async def test_signal_first_write_wins(self, store: Store) -> None:
        """``set_signal`` is True the first time, then False; the first payload is kept."""
        assert await store.set_signal("run-1", "approval", {"approved": True}) is True
        assert await store.set_signal("run-1", "approval", {"approved": False}) is False
        assert await store.set_signal("run-1", "approval", None) is False
        assert await store.get_signal("run-1", "approval") == (True, {"approved": True})

    @store_test()
    async def test_signal_falsy_payloads_survive(self, store: Store) -> None:
        """Payloads None, 0, False, "", [] and {} are stored and found as given."""
        for i, payload in enumerate(FALSY):
            assert await store.set_signal("run-1", f"sig-{i}", payload) is True
        for i, payload in enumerate(FALSY):
            found, stored = await store.get_signal("run-1", f"sig-{i}")
            assert found is True, f"a signal with payload {payload!r} was not found"
            assert stored == payload
            assert type(stored) is type(payload)
            # A falsy first payload still counts as delivered.
            assert await store.set_signal("run-1", f"sig-{i}", "later") is False

    @store_test()
    async def test_signal_nested_and_large_payload(self, store: Store) -> None:
        """Nested, unicode and 1 MB payloads round-trip."""
        large = {"blob": "y" * 1_000_000}
        assert await store.set_signal("run-1", "nested", NESTED) is True
        assert await store.set_signal("run-1", "large", large) is True
        assert await store.get_signal("run-1", "nested") == (True, NESTED)
        assert await store.get_signal("run-1", "large") == (True, large)

    @store_test()
    async def test_signals_isolated_per_run_and_name(self, store: Store) -> None:
        """A signal belongs to one run and one name; steps are a separate namespace."""
        assert await store.set_signal("run-a", "go", "a") is True
        assert await store.set_signal("run-b", "go", "b") is True
        assert await store.set_signal("run-a", "stop", "a-stop") is True
        assert await store.get_signal("run-a", "go") == (True, "a")
        assert await store.get_signal("run-b", "go") == (True, "b")
        assert await store.get_signal("run-a", "stop") == (True, "a-stop")
        assert await store.get_signal("run-b", "stop") == (False, None)
        assert await store.set_signal("x", "y:z", 1) is True
        assert await store.set_signal("x:y", "z", 2) is True
        assert await store.get_signal("x", "y:z") == (True, 1)
        assert await store.get_signal("x:y", "z") == (True, 2)
        assert await store.get_step("run-a", "go") == (False, None)
        await store.set_step("run-c", "go", "step")
        assert await store.get_signal("run-c", "go") == (False, None)

    @store_test()
    async def test_concurrent_set_signal_exactly_one_wins(self, store: Store) -> None:
        """Many tasks delivering one signal at once: exactly one True, its payload kept."""
        n = self.concurrency
        results = await asyncio.gather(*(store.set_signal("run-1", "go", i) for i in range(n)))
        winners = [i for i, delivered in enumerate(results) if delivered is True]
        assert len(winners) == 1, f"set_signal returned True {len(winners)} times"
        assert all(r is False for i, r in enumerate(results) if i != winners[0])
        assert await store.get_signal("run-1", "go") == (True, winners[0])

    # -- waiting for signals ----------------------------------------------------------

    @store_test()
    async def test_wait_for_signal_returns_by_max_wait(self, store: Store) -> None:
        """``wait_for_signal`` of a signal never delivered returns after about ``max_wait``."""
        started = time.monotonic()
        await store.wait_for_signal("run-1", "approval", 0.1)
        assert time.monotonic() - started < 5.0
        assert await store.get_signal("run-1", "approval") == (False, None)

    @store_test()
    async def test_wait_for_signal_can_be_cancelled(self, store: Store) -> None:
        """A cancelled ``wait_for_signal`` stops at once and leaves the store working.

        The engine waits for a signal and for an in-process wake-up at once, and cancels
        whichever did not finish.
        """
        for _ in range(3):
            waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "go", 600.0))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiter, 5.0)
        assert await store.set_signal("run-1", "go", 1) is True
        assert await store.get_signal("run-1", "go") == (True, 1)
        await asyncio.wait_for(store.wait_for_signal("run-1", "other", 0.05), 5.0)

    @store_test("notifies_signals")
    async def test_wait_for_signal_wakes_on_delivery(self, store: Store) -> None:
        """A waiter returns soon after its signal is delivered, long before ``max_wait``."""
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "go", 600.0))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await store.set_signal("run-1", "other", 1)
        await store.set_signal("run-2", "go", 1)
        assert await store.set_signal("run-1", "go", {"ok": True}) is True
        await asyncio.wait_for(waiter, 5.0)
        assert await store.get_signal("run-1", "go") == (True, {"ok": True})

    @store_test("notifies_signals")
    async def test_wait_for_signal_wakes_many_waiters(self, store: Store) -> None:
        """Every task waiting on one signal wakes when it is delivered."""
        waiters = [
            asyncio.ensure_future(store.wait_for_signal("run-1", "go", 600.0))
            for _ in range(self.concurrency)
        ]
        await asyncio.sleep(0.1)
        assert await store.set_signal("run-1", "go", 0) is True
        await asyncio.wait_for(asyncio.gather(*waiters), 5.0)

    @store_test("notifies_signals")
    async def test_wait_for_signal_already_delivered_returns(self, store: Store) -> None:
        """Waiting for a signal delivered before the wait began returns at once."""
        assert await store.set_signal("run-1", "go", None) is True
        await asyncio.wait_for(store.wait_for_signal("run-1", "go", 600.0), 5.0)

    @store_test("notifies_signals", "persistent")
    async def test_wait_for_signal_wakes_across_stores(self, store: Store) -> None:
        """A delivery through another store object on the same data wakes the waiter."""
        other = await self.open_store_again()
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "go", 600.0))
        await asyncio.sleep(0.1)
        assert await other.set_signal("run-1", "go", "from elsewhere") is True
        await asyncio.wait_for(waiter, 5.0)
        assert await store.get_signal("run-1", "go") == (True, "from elsewhere")

    # -- list_signals -----------------------------------------------------------------

    @store_test()
    async def test_list_signals_lists_every_signal_or_is_unsupported(self, store: Store) -> None:
        """``list_signals`` gives every delivered signal of the run with its first payload
        (it may be unsupported without ``manages_runs``)."""
        await store.set_signal("run-1", "go", 0)
        await store.set_signal("run-1", "go", "late")
        await store.set_signal("run-1", "stop", None)
        await store.set_signal("run-2", "other", 1)
        try:
            listed = await store.list_signals("run-1")
        except UnsupportedOperation:
            assert not self._runs_managed(), "list_signals is unsupported but manages_runs is True"
            return
        assert all(isinstance(signal, SignalRecord) for signal in listed)
        assert len(listed) == 2
        assert {signal.name: signal.payload for signal in listed} == {"go": 0, "stop": None}

    @store_test("records_runs", "manages_runs")
    async def test_list_signals_oldest_first_with_times(self, store: Store) -> None:
        """``list_signals`` lists the run's signals oldest first, with the first payload
        (falsy too) and a timezone-aware ``created_at``; nothing of other runs or steps."""
        signals: list[tuple[str, Any]] = [("zeta", {"ok": True}), ("alpha", NESTED)]
        signals += [(f"falsy-{i}", value) for i, value in enumerate(FALSY)]
        before = time.time()
        for name, payload in signals:
            assert await store.set_signal("run-1", name, payload) is True
            await asyncio.sleep(0.01)  # distinct times, also for coarse clocks
        assert await store.set_signal("run-1", "zeta", "late") is False
        await store.set_signal("run-2", "other", 1)
        await store.set_step("run-1", "step", 1)
        listed = await store.list_signals("run-1")
        after = time.time()
        assert all(isinstance(signal, SignalRecord) for signal in listed)
        assert [(signal.name, signal.payload) for signal in listed] == signals
        for signal, (_, payload) in zip(listed, signals, strict=True):
            assert type(signal.payload) is type(payload)
            assert isinstance(signal.created_at, dt.datetime), f"{signal.name}: no created_at"
            assert signal.created_at.utcoffset() is not None, f"{signal.created_at!r} is naive"
            assert before - 1 <= signal.created_at.timestamp() <= after + 1
        stamps = [signal.created_at for signal in listed if signal.created_at is not None]
        assert stamps == sorted(stamps), "signals are not listed oldest first"

    @store_test("records_runs", "manages_runs")
    async def test_list_signals_unknown_run_is_empty(self, store: Store) -> None:
        """``list_signals`` of a run without signals is empty; runs sharing a prefix
        stay apart."""
        await store.set_signal("run-1", "go", 1)
        await store.set_signal("run-10", "stop", 2)
        await store.set_step("no-signals", "go", 3)
        assert list(await store.list_signals("no-such-run")) == []
        assert list(await store.list_signals("no-signals")) == []
        assert list(await store.list_signals("run")) == []
        assert [signal.name for signal in await store.list_signals("run-1")] == ["go"]
