"""The contract every :class:`~durable.Store` keeps, as a pytest base class.

See :mod:`durable.testing` for how to use it and which capability flags exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from ..errors import UnsupportedOperation
from ..store import RunClaim, RunRecord, Store
from ..workflow import Workflow

Capability = Literal["records_runs", "loads_steps", "persistent", "notifies_signals"]
"""The name of a capability flag of :class:`StoreContract`."""

_C = TypeVar("_C", bound="StoreContract")

#: A long lease: the tests that need a live lease use it.
_LIVE = 30.0

#: Values a careless store confuses with "missing".
_FALSY: list[Any] = [None, 0, 0.0, False, "", [], {}]

_UNICODE = "héllo wörld ✓ 日本語 עברית 🎉 e\u0301 \u2028 \\ \" ' \x00 \t\n"

_NESTED: dict[str, Any] = {
    "order": {"id": 42, "lines": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B", "qty": 1}]},
    "flags": [True, False, None],
    "big": 2**62,
    "neg": -7,
    "float": 1.25,
    "empty": {"list": [], "dict": {}, "str": ""},
    "deep": [[[[{"k": [1, [2, [3, [4]]]]}]]]],
    _UNICODE: _UNICODE,
}

#: Ids that a store building keys by concatenation, escaping or hash tags gets wrong.
_ODD_IDS = [
    "заказ-42 ✓",
    'it\'s "quoted"',
    "100%_done\\n",
    "'; DROP TABLE steps; --",
    "{tag}:x",
    "a:b/c d#1",
    "x" * 500,
]


def store_test(
    *requires: Capability, set_up: bool = True
) -> Callable[[Callable[[_C, Store], Coroutine[Any, Any, None]]], Callable[[_C], None]]:
    """Turn ``async def test_x(self, store)`` into a plain ``def test_x(self)`` for pytest.

    Every contract test is written this way, and a store author may add tests of
    their own to a :class:`StoreContract` subclass like this too::

        @store_test("persistent")
        async def test_survives_vacuum(self, store: Store) -> None: ...

    The test is skipped unless every capability flag in ``requires`` is true. Its body
    runs on a fresh event loop (see :meth:`StoreContract.run_store_test`) with a store
    from ``make_store()``: set up by the harness, or, with ``set_up=False``, not set up
    (for a :class:`~durable.Workflow` made with ``self.make_workflow(store)`` to set
    up, or for :meth:`StoreContract.set_up_store`).
    """

    def decorate(body: Callable[[_C, Store], Coroutine[Any, Any, None]]) -> Callable[[_C], None]:
        def test(self: _C) -> None:
            for flag in requires:
                if not getattr(self, flag):
                    pytest.skip(f"{type(self).__name__}.{flag} is False")
            self.run_store_test(body, set_up=set_up)

        # Not functools.wraps: pytest would follow __wrapped__ and take the body's
        # ``store`` parameter for a fixture.
        test.__name__ = body.__name__
        test.__qualname__ = body.__qualname__
        test.__doc__ = body.__doc__
        test.__module__ = body.__module__
        return test

    return decorate


class StoreContract:
    """Subclass as ``Test<YourStore>`` and implement :meth:`make_store`.

    Each ``test_...`` method checks one promise of the store protocol; see
    :mod:`durable.testing` for the capability flags.
    """

    #: The store keeps run records (claims, leases, results, listing).
    records_runs: ClassVar[bool] = True
    #: ``load_steps`` returns all steps of a run in one call (not None).
    loads_steps: ClassVar[bool] = True
    #: Another store on the same backing data sees the same data.
    persistent: ClassVar[bool] = False
    #: ``wait_for_signal`` returns as soon as the signal is delivered (not only by timeout).
    notifies_signals: ClassVar[bool] = False
    #: The lease, in seconds, of the tests that wait for one to expire.
    short_lease_seconds: ClassVar[float] = 0.05
    #: How many tasks race in the concurrency tests.
    concurrency: ClassVar[int] = 20
    #: The longest a test body may run before it fails as hung.
    timeout_seconds: ClassVar[float] = 30.0

    #: A fresh directory for this test (pytest's ``tmp_path``).
    tmp_path: Path

    _open_stores: list[Store]
    _workflows: list[Workflow]

    # -- what a store author provides --------------------------------------------------

    async def make_store(self) -> Store:
        """A new store on empty data, not yet set up. Called once or more per test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_store()")

    async def reopen_store(self) -> Store:
        """Another store object on the same data as :meth:`make_store`'s, not set up.

        Used only when ``persistent`` is True. The default calls :meth:`make_store`
        again, which is right when it derives its location from ``self.tmp_path``.
        """
        return await self.make_store()

    # -- the harness ----------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _durable_tmp_path(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def run_store_test(
        self: _C, body: Callable[[_C, Store], Coroutine[Any, Any, None]], *, set_up: bool = True
    ) -> None:
        """Run ``body(self, store)`` on a fresh event loop, within ``timeout_seconds``.

        The store comes from :meth:`make_store` and is set up first (unless ``set_up`` is False),
        and every store and workflow the test opened is closed afterwards, also when
        the test failed.
        """
        __tracebackhide__ = True
        with asyncio.Runner() as runner:
            runner.run(self._lifecycle(body, set_up=set_up))

    async def _lifecycle(
        self: _C, body: Callable[[_C, Store], Coroutine[Any, Any, None]], *, set_up: bool
    ) -> None:
        __tracebackhide__ = True
        self._open_stores = []
        self._workflows = []
        try:
            store = await self.make_store()
            if set_up:
                await self.set_up_store(store)
            deadline = asyncio.timeout(self.timeout_seconds)
            try:
                async with deadline:
                    await body(self, store)
            except TimeoutError:
                if deadline.expired():
                    pytest.fail(f"the test did not finish within {self.timeout_seconds} s")
                raise
        except BaseException:
            await self._tear_down(raise_errors=False)
            raise
        await self._tear_down(raise_errors=True)

    async def _tear_down(self, *, raise_errors: bool) -> None:
        errors: list[BaseException] = []
        for wf in reversed(self._workflows):
            try:
                await wf.close()
            except Exception as exc:
                errors.append(exc)
        for store in reversed(self._open_stores):
            try:
                await store.close()
            except Exception as exc:
                errors.append(exc)
        self._workflows, self._open_stores = [], []
        if errors and raise_errors:
            raise errors[0]

    # -- helpers for test bodies ----------------------------------------------------

    async def set_up_store(self, store: Store) -> Store:
        """Call ``store.setup()``; the store is closed when the test ends."""
        self._open_stores.append(store)  # closed at the end even if setup() fails
        await store.setup()
        return store

    def _track(self, store: Store) -> Store:
        if store not in self._open_stores:
            self._open_stores.append(store)
        return store

    async def open_store_again(self) -> Store:
        """A set-up store from :meth:`reopen_store`, closed when the test ends."""
        return await self.set_up_store(await self.reopen_store())

    async def close_store(self, store: Store) -> None:
        """Close a store of this test now, rather than when the test ends."""
        self._open_stores.remove(store)
        await store.close()

    def make_workflow(self, store: Store, name: str = "contract") -> Workflow:
        """A :class:`~durable.Workflow` on ``store`` (no retries), closed when the test ends."""
        wf = Workflow(name, db=store, default_retries=0)
        self._workflows.append(wf)
        return wf

    async def _run_record(self, store: Store, run_id: str) -> RunRecord:
        record = await store.get_run(run_id)
        assert record is not None, f"get_run({run_id!r}) returned None for a claimed run"
        return record

    # -- steps ------------------------------------------------------------------------

    @store_test()
    async def test_get_step_missing_is_not_found(self, store: Store) -> None:
        """An unknown step (of a known and of an unknown run) is ``(False, None)``."""
        assert await store.get_step("run-1", "missing") == (False, None)
        await store.set_step("run-1", "present", 1)
        assert await store.get_step("run-1", "missing") == (False, None)
        assert await store.get_step("no-such-run", "present") == (False, None)

    @store_test()
    async def test_step_round_trip(self, store: Store) -> None:
        """A step's result comes back as recorded."""
        await store.set_step("run-1", "fetch", {"status": 200, "body": "ok"})
        await store.set_step("run-1", "count", 3, attempt=2)
        assert await store.get_step("run-1", "fetch") == (True, {"status": 200, "body": "ok"})
        assert await store.get_step("run-1", "count") == (True, 3)

    @store_test()
    async def test_step_falsy_results_are_found(self, store: Store) -> None:
        """A step that returned None, 0, False, "", [] or {} is found, with that value."""
        for i, value in enumerate(_FALSY):
            await store.set_step("run-1", f"step-{i}", value)
        for i, value in enumerate(_FALSY):
            found, stored = await store.get_step("run-1", f"step-{i}")
            assert found is True, f"a step whose result is {value!r} was not found"
            assert stored == value
            assert type(stored) is type(value)

    @store_test()
    async def test_step_unicode_value(self, store: Store) -> None:
        """Unicode (astral plane, combining marks, NUL, line separators) round-trips."""
        await store.set_step("run-1", "text", _UNICODE)
        await store.set_step("run-1", "keys", {_UNICODE: [_UNICODE]})
        assert await store.get_step("run-1", "text") == (True, _UNICODE)
        assert await store.get_step("run-1", "keys") == (True, {_UNICODE: [_UNICODE]})

    @store_test()
    async def test_step_nested_value(self, store: Store) -> None:
        """Nested JSON data round-trips, keeping int, float, bool and null apart."""
        await store.set_step("run-1", "nested", _NESTED)
        found, value = await store.get_step("run-1", "nested")
        assert found is True
        assert value == _NESTED
        assert type(value["big"]) is int
        assert type(value["float"]) is float
        assert value["flags"][0] is True
        assert value["flags"][2] is None

    @store_test()
    async def test_step_large_value(self, store: Store) -> None:
        """A 1 MB result round-trips intact."""
        large = {"blob": "x" * 1_000_000, "items": list(range(10_000)), "tail": "✓"}
        await store.set_step("run-1", "large", large)
        assert await store.get_step("run-1", "large") == (True, large)

    @store_test()
    async def test_step_value_is_a_copy(self, store: Store) -> None:
        """The store keeps the value as it was when recorded, not a live reference."""
        value: dict[str, Any] = {"items": [1, 2]}
        await store.set_step("run-1", "s", value)
        value["items"].append(3)
        found, stored = await store.get_step("run-1", "s")
        assert (found, stored) == (True, {"items": [1, 2]})
        stored["items"].append(4)
        assert await store.get_step("run-1", "s") == (True, {"items": [1, 2]})
        loaded = await store.load_steps("run-1")
        if loaded is not None:
            loaded["s"]["items"].append(5)
            assert await store.get_step("run-1", "s") == (True, {"items": [1, 2]})
            assert dict(await store.load_steps("run-1") or {}) == {"s": {"items": [1, 2]}}

    @store_test()
    async def test_set_step_overwrites_same_step(self, store: Store) -> None:
        """Recording a step id again replaces its result (a re-executed step)."""
        await store.set_step("run-1", "s", "first")
        await store.set_step("run-1", "s", "second", attempt=2)
        assert await store.get_step("run-1", "s") == (True, "second")
        await store.set_step("run-1", "s", None, attempt=3)
        assert await store.get_step("run-1", "s") == (True, None)

    @store_test()
    async def test_steps_isolated_between_runs(self, store: Store) -> None:
        """One step id in different runs holds different values; keys never collide."""
        await store.set_step("run-a", "s", "a")
        await store.set_step("run-b", "s", "b")
        assert await store.get_step("run-a", "s") == (True, "a")
        assert await store.get_step("run-b", "s") == (True, "b")
        # A store joining run and step id with a separator must not confuse these.
        await store.set_step("x", "y:z", "run x")
        await store.set_step("x:y", "z", "run x:y")
        assert await store.get_step("x", "y:z") == (True, "run x")
        assert await store.get_step("x:y", "z") == (True, "run x:y")
        assert await store.get_step("x:y", "y:z") == (False, None)

    @store_test()
    async def test_odd_run_and_step_ids(self, store: Store) -> None:
        """Ids with unicode, quotes, SQL, braces, separators or 500 characters work."""
        for i, odd in enumerate(_ODD_IDS):
            await store.set_step(odd, odd, i)
            await store.set_step("run-1", odd, -i)
            assert await store.set_signal(odd, odd, i) is True
        for i, odd in enumerate(_ODD_IDS):
            assert await store.get_step(odd, odd) == (True, i)
            assert await store.get_step("run-1", odd) == (True, -i)
            assert await store.get_signal(odd, odd) == (True, i)

    # -- load_steps -------------------------------------------------------------------

    @store_test()
    async def test_load_steps_returns_all_steps_of_run(self, store: Store) -> None:
        """``load_steps`` gives every step of the run, falsy ones included, and no other."""
        steps: dict[str, Any] = {f"falsy-{i}": v for i, v in enumerate(_FALSY)}
        steps.update({"fetch": {"a": 1}, "fetch#1": [1, 2], "text": _UNICODE})
        for step_id, value in steps.items():
            await store.set_step("run-1", step_id, value)
        await store.set_step("run-1", "fetch", {"a": 2})  # overwritten: the last wins
        steps["fetch"] = {"a": 2}
        await store.set_step("run-2", "other", "not mine")
        await store.set_signal("run-1", "signal", "not a step")
        loaded = await store.load_steps("run-1")
        if loaded is None:
            assert not self.loads_steps, "load_steps returned None but loads_steps is True"
            return
        assert isinstance(loaded, Mapping)
        assert dict(loaded) == steps

    @store_test()
    async def test_load_steps_unknown_run_is_empty(self, store: Store) -> None:
        """``load_steps`` of a run without steps is an empty mapping."""
        await store.set_step("run-1", "s", 1)
        loaded = await store.load_steps("no-such-run")
        if loaded is None:
            assert not self.loads_steps, "load_steps returned None but loads_steps is True"
            return
        assert isinstance(loaded, Mapping)
        assert dict(loaded) == {}

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
        for i, payload in enumerate(_FALSY):
            assert await store.set_signal("run-1", f"sig-{i}", payload) is True
        for i, payload in enumerate(_FALSY):
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
        assert await store.set_signal("run-1", "nested", _NESTED) is True
        assert await store.set_signal("run-1", "large", large) is True
        assert await store.get_signal("run-1", "nested") == (True, _NESTED)
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

    # -- the seed's run methods and the permissive defaults --------------------------

    @store_test()
    async def test_seed_run_methods_accept_any_run(self, store: Store) -> None:
        """``mark_run_done`` / ``mark_run_failed`` work on runs with steps, and keep them."""
        await store.set_step("run-1", "s", 1)
        await store.set_step("run-2", "s", 2)
        await store.mark_run_done("run-1")
        await store.mark_run_failed("run-2", "RuntimeError: boom")
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_step("run-2", "s") == (True, 2)

    @store_test()
    async def test_store_without_records_grants_claims(self, store: Store) -> None:
        """A store that keeps no run records grants every claim and never fails a call."""
        if self.records_runs:
            pytest.skip(f"{type(self).__name__} records runs; see the claim tests")
        first = await store.claim_run("run-1", "wf", {"x": 1}, owner="a", lease_seconds=_LIVE)
        second = await store.claim_run("run-1", "wf", {"x": 1}, owner="b", lease_seconds=_LIVE)
        assert first.acquired
        assert second.acquired
        assert first.record.status == "running"
        assert await store.renew_lease("run-1", "b", _LIVE) in (True, False)
        await store.release_run("run-1", "b")
        await store.finish_run("run-1", "b", "completed", result=1, has_result=True)
        await store.finish_run("run-2", "b", "failed", error="ValueError: x")
        assert isinstance(await store.get_run("run-1"), RunRecord | None)

    # -- run records: claims --------------------------------------------------------------

    @store_test("records_runs")
    async def test_claim_new_run_creates_record(self, store: Store) -> None:
        """Claiming a new run records its workflow, inputs, running status, owner and lease."""
        inputs = {"order_id": "42", "items": [1, 2], "note": _UNICODE}
        before = time.time()
        claim = await store.claim_run("run-1", "shop.order", inputs, owner="a", lease_seconds=_LIVE)
        after = time.time()
        assert isinstance(claim, RunClaim)
        assert claim.acquired is True
        for record in (claim.record, await self._run_record(store, "run-1")):
            assert record.run_id == "run-1"
            assert record.workflow == "shop.order"
            assert record.status == "running"
            assert record.inputs == inputs
            assert record.owner == "a"
            assert record.lease_expires_at is not None
            assert before + _LIVE - 1 <= record.lease_expires_at <= after + _LIVE + 1
            assert record.has_result is False
            assert record.error is None
            assert isinstance(record.created_at, dt.datetime)
            assert isinstance(record.updated_at, dt.datetime)

    @store_test("records_runs")
    async def test_run_timestamps_are_aware_and_current(self, store: Store) -> None:
        """``created_at``/``updated_at`` are timezone-aware datetimes of about now."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        record = await self._run_record(store, "run-1")
        now = dt.datetime.now(dt.UTC)
        for stamp in (record.created_at, record.updated_at):
            assert isinstance(stamp, dt.datetime)
            assert stamp.utcoffset() is not None, f"{stamp!r} has no timezone"
            assert abs((stamp - now).total_seconds()) < 60

    @store_test("records_runs")
    async def test_claim_refused_while_lease_live(self, store: Store) -> None:
        """Another owner is refused while the lease is live, and gets the current record."""
        await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is False
        assert claim.record.run_id == "run-1"
        assert claim.record.status == "running"
        assert claim.record.owner == "a"
        assert claim.record.lease_expires_at is not None
        assert claim.record.lease_expires_at > time.time()
        assert (await self._run_record(store, "run-1")).owner == "a"

    @store_test("records_runs")
    async def test_claim_granted_after_lease_expiry(self, store: Store) -> None:
        """Once the owner's lease has expired, another owner's claim is granted."""
        lease = self.short_lease_seconds
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        await asyncio.sleep(lease * 2 + 0.05)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is True
        assert claim.record.owner == "b"
        assert claim.record.status == "running"
        assert (await self._run_record(store, "run-1")).owner == "b"
        assert await store.renew_lease("run-1", "a", _LIVE) is False

    @store_test("records_runs")
    async def test_claim_granted_with_takeover_from_current_owner(self, store: Store) -> None:
        """A live lease is taken over when the caller names its owner in ``takeover_from``."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        wrong = await store.claim_run(
            "run-1", "wf", None, owner="b", lease_seconds=_LIVE, takeover_from="someone-else"
        )
        assert wrong.acquired is False
        claim = await store.claim_run(
            "run-1", "wf", None, owner="b", lease_seconds=_LIVE, takeover_from="a"
        )
        assert claim.acquired is True
        assert claim.record.owner == "b"
        assert (await self._run_record(store, "run-1")).owner == "b"
        assert await store.renew_lease("run-1", "a", _LIVE) is False

    @store_test("records_runs")
    async def test_claim_same_owner_reclaims(self, store: Store) -> None:
        """The owner of a live lease may claim its run again."""
        first = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
        again = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
        assert again.acquired is True
        assert again.record.owner == "a"
        assert again.record.status == "running"
        assert again.record.inputs == {"n": 1}
        assert again.record.created_at == first.record.created_at

    @store_test("records_runs")
    async def test_claim_completed_with_result_refused(self, store: Store) -> None:
        """A run completed with a stored result is refused to everyone, with the result."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-1", "a", "completed", result={"total": 7}, has_result=True)
        for owner, takeover in (("a", None), ("b", None), ("b", "a")):
            claim = await store.claim_run(
                "run-1", "wf", None, owner=owner, lease_seconds=_LIVE, takeover_from=takeover
            )
            assert claim.acquired is False
            assert claim.record.status == "completed"
            assert claim.record.has_result is True
            assert claim.record.result == {"total": 7}

    @store_test("records_runs")
    async def test_claim_completed_falsy_result_refused(self, store: Store) -> None:
        """A stored result of None, 0, False or "" still counts as a result."""
        for i, value in enumerate(_FALSY):
            run_id = f"run-{i}"
            await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=_LIVE)
            await store.finish_run(run_id, "a", "completed", result=value, has_result=True)
            claim = await store.claim_run(run_id, "wf", None, owner="b", lease_seconds=_LIVE)
            assert claim.acquired is False, f"a run with result {value!r} was claimed again"
            assert claim.record.has_result is True
            assert claim.record.result == value
            assert type(claim.record.result) is type(value)

    @store_test("records_runs")
    async def test_claim_completed_without_result_granted(self, store: Store) -> None:
        """A run completed without a storable result is granted (its body runs again)."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-1", "a", "completed", result=None, has_result=False)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is True
        assert claim.record.status == "running"
        assert claim.record.owner == "b"

    @store_test("records_runs")
    async def test_claim_failed_run_granted_back_to_running(self, store: Store) -> None:
        """A failed run is granted to any owner and is running again."""
        await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-1", "a", "failed", error="RuntimeError: boom")
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is True
        assert claim.record.status == "running"
        assert claim.record.owner == "b"
        assert claim.record.error is None
        record = await self._run_record(store, "run-1")
        assert record.status == "running"
        assert record.owner == "b"
        assert record.inputs == {"n": 1}
        assert record.error is None

    @store_test("records_runs")
    async def test_concurrent_claim_exactly_one_acquires(self, store: Store) -> None:
        """Many owners claiming one new run at once: exactly one acquires it."""
        owners = [f"owner-{i}" for i in range(self.concurrency)]
        claims = await asyncio.gather(
            *(
                store.claim_run("run-1", "wf", {"n": 1}, owner=o, lease_seconds=_LIVE)
                for o in owners
            )
        )
        self._assert_one_winner(claims, owners)
        winner = next(o for o, c in zip(owners, claims, strict=True) if c.acquired)
        assert (await self._run_record(store, "run-1")).owner == winner

    def _assert_one_winner(self, claims: Sequence[RunClaim], owners: Sequence[str]) -> None:
        acquired = [o for o, c in zip(owners, claims, strict=True) if c.acquired]
        assert len(acquired) == 1, f"{len(acquired)} of {len(owners)} claims acquired the run"
        for claim in claims:
            if not claim.acquired:
                assert claim.record.status == "running"
                assert claim.record.owner == acquired[0]

    # -- run records: leases ----------------------------------------------------------

    @store_test("records_runs")
    async def test_renew_lease_by_owner(self, store: Store) -> None:
        """The owner renews its lease: True, and the lease now ends later."""
        lease = self.short_lease_seconds
        first = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        assert await store.renew_lease("run-1", "a", _LIVE) is True
        record = await self._run_record(store, "run-1")
        assert record.owner == "a"
        assert first.record.lease_expires_at is not None
        assert record.lease_expires_at is not None
        assert record.lease_expires_at > first.record.lease_expires_at
        await asyncio.sleep(lease * 2 + 0.05)  # the first lease would have expired by now
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is False

    @store_test("records_runs")
    async def test_renew_lease_refused_to_other_owner(self, store: Store) -> None:
        """Renewing someone else's lease, or an unknown run's, is False and changes nothing."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        assert await store.renew_lease("run-1", "b", _LIVE) is False
        assert await store.renew_lease("no-such-run", "a", _LIVE) is False
        assert (await self._run_record(store, "run-1")).owner == "a"

    @store_test("records_runs")
    async def test_renew_lease_refused_after_finish(self, store: Store) -> None:
        """Once the run finished, its former owner cannot renew the lease."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-1", "a", "completed", result=1, has_result=True)
        assert await store.renew_lease("run-1", "a", _LIVE) is False
        await store.claim_run("run-2", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-2", "a", "failed", error="E: x")
        assert await store.renew_lease("run-2", "a", _LIVE) is False

    @store_test("records_runs")
    async def test_release_run_lets_another_owner_claim(self, store: Store) -> None:
        """``release_run`` clears the owner, so another owner's claim succeeds at once."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.release_run("run-1", "a")
        record = await self._run_record(store, "run-1")
        assert record.owner is None
        assert record.status == "running"
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is True
        assert claim.record.owner == "b"

    @store_test("records_runs")
    async def test_release_run_by_other_owner_is_ignored(self, store: Store) -> None:
        """Only the owner can release a run; a release by anyone else changes nothing."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.release_run("run-1", "b")
        await store.release_run("no-such-run", "a")
        assert (await self._run_record(store, "run-1")).owner == "a"
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is False

    # -- run records: outcomes --------------------------------------------------------

    @store_test("records_runs")
    async def test_finish_run_completed_stores_result(self, store: Store) -> None:
        """``finish_run(completed)`` stores the result, clears the lease, moves updated_at."""
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
        await asyncio.sleep(0.05)
        await store.finish_run("run-1", "a", "completed", result=_NESTED, has_result=True)
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.result == _NESTED
        assert record.has_result is True
        assert record.error is None
        assert record.owner is None
        assert record.lease_expires_at is None
        assert record.workflow == "wf"
        assert record.inputs == {"n": 1}
        assert record.created_at == claim.record.created_at
        assert record.updated_at is not None
        assert claim.record.updated_at is not None
        assert record.updated_at > claim.record.updated_at

    @store_test("records_runs")
    async def test_finish_run_failed_stores_error(self, store: Store) -> None:
        """``finish_run(failed)`` stores the error, no result, and clears the lease."""
        claim = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await asyncio.sleep(0.05)
        await store.finish_run("run-1", "a", "failed", error="ValueError: bad ✓")
        record = await self._run_record(store, "run-1")
        assert record.status == "failed"
        assert record.error == "ValueError: bad ✓"
        assert record.has_result is False
        assert record.owner is None
        assert record.lease_expires_at is None
        assert record.updated_at is not None
        assert claim.record.updated_at is not None
        assert record.updated_at > claim.record.updated_at

    @store_test("records_runs")
    async def test_finish_run_without_result_keeps_has_result_false(self, store: Store) -> None:
        """A completion without a storable result is recorded with ``has_result`` False."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.finish_run("run-1", "a", "completed", result=None, has_result=False)
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.has_result is False
        assert record.result is None

    @store_test("records_runs")
    async def test_finish_run_by_former_owner_is_ignored(self, store: Store) -> None:
        """An owner whose run was taken over cannot record its outcome; the new owner can.

        The engine relies on this: a process that lost its lease stops, and the run's
        outcome is the new owner's to record.
        """
        lease = self.short_lease_seconds
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        await asyncio.sleep(lease * 2 + 0.05)
        assert (await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)).acquired
        await store.finish_run("run-1", "a", "completed", result="from a", has_result=True)
        await store.finish_run("run-1", "a", "failed", error="E: from a")
        record = await self._run_record(store, "run-1")
        assert record.status == "running"
        assert record.owner == "b"
        assert record.has_result is False
        assert await store.renew_lease("run-1", "b", _LIVE) is True
        await store.finish_run("run-1", "b", "completed", result="from b", has_result=True)
        record = await self._run_record(store, "run-1")
        assert (record.status, record.result, record.owner) == ("completed", "from b", None)

    @store_test("records_runs")
    async def test_get_run_unknown_is_none(self, store: Store) -> None:
        """``get_run`` of a run never claimed is None, even when the run has steps."""
        assert await store.get_run("no-such-run") is None
        await store.set_step("steps-only", "s", 1)
        await store.set_signal("steps-only", "go", 1)
        assert await store.get_run("steps-only") is None

    @store_test("records_runs")
    async def test_mark_run_done_sets_completed(self, store: Store) -> None:
        """The seed's ``mark_run_done`` shows as completed without a result."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.mark_run_done("run-1")
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.has_result is False
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=_LIVE)
        assert claim.acquired is True

    @store_test("records_runs")
    async def test_mark_run_failed_sets_failed(self, store: Store) -> None:
        """The seed's ``mark_run_failed`` shows as failed with the error."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=_LIVE)
        await store.mark_run_failed("run-1", "RuntimeError: boom")
        record = await self._run_record(store, "run-1")
        assert record.status == "failed"
        assert record.error == "RuntimeError: boom"

    # -- run records: listing ---------------------------------------------------------

    async def _claim_in_order(self, store: Store, runs: Sequence[tuple[str, str]]) -> None:
        for run_id, workflow in runs:
            await store.claim_run(run_id, workflow, None, owner="a", lease_seconds=_LIVE)
            await asyncio.sleep(0.01)  # distinct creation times, also for coarse clocks

    @store_test("records_runs")
    async def test_list_runs_filters_by_status_and_workflow(self, store: Store) -> None:
        """``list_runs`` filters by status, by workflow, and by both."""
        runs = [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("b2", "B")]
        await self._claim_in_order(store, runs)
        await store.finish_run("a1", "a", "completed", result=1, has_result=True)
        await store.finish_run("b1", "a", "failed", error="E: x")
        await store.finish_run("a3", "a", "failed", error="E: y")

        async def ids(**filters: Any) -> set[str]:
            listed = await store.list_runs(**filters)
            assert all(isinstance(r, RunRecord) for r in listed)
            return {r.run_id for r in listed}

        assert await ids() == {"a1", "a2", "a3", "b1", "b2"}
        assert await ids(status="completed") == {"a1"}
        assert await ids(status="failed") == {"b1", "a3"}
        assert await ids(status="running") == {"a2", "b2"}
        assert await ids(workflow="A") == {"a1", "a2", "a3"}
        assert await ids(workflow="B", status="running") == {"b2"}
        assert await ids(workflow="C") == set()
        listed = await store.list_runs(status="completed")
        assert listed[0].result == 1
        assert listed[0].workflow == "A"

    @store_test("records_runs")
    async def test_list_runs_newest_first(self, store: Store) -> None:
        """``list_runs`` orders runs newest first."""
        await self._claim_in_order(store, [("r1", "A"), ("r2", "B"), ("r3", "A"), ("r4", "A")])
        assert [r.run_id for r in await store.list_runs()] == ["r4", "r3", "r2", "r1"]
        assert [r.run_id for r in await store.list_runs(workflow="A")] == ["r4", "r3", "r1"]

    @store_test("records_runs")
    async def test_list_runs_respects_limit(self, store: Store) -> None:
        """``list_runs(limit=n)`` returns the n newest matching runs."""
        await self._claim_in_order(store, [(f"r{i}", "A") for i in range(5)])
        assert [r.run_id for r in await store.list_runs(limit=2)] == ["r4", "r3"]
        assert [r.run_id for r in await store.list_runs(workflow="A", limit=1)] == ["r4"]
        assert len(await store.list_runs(limit=100)) == 5

    @store_test()
    async def test_list_runs_unsupported_or_empty(self, store: Store) -> None:
        """Without run records, ``list_runs`` says so (or lists nothing); with them, empty."""
        try:
            listed = await store.list_runs()
        except UnsupportedOperation:
            assert not self.records_runs, "list_runs is unsupported but records_runs is True"
            return
        assert list(listed) == []

    # -- persistence ------------------------------------------------------------------

    async def _write_sample(self, store: Store) -> None:
        await store.set_step("run-1", "fetch", _NESTED)
        await store.set_step("run-1", "falsy", None)
        await store.set_signal("run-1", "approval", 0)
        if self.records_runs:
            await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=_LIVE)
            await store.finish_run("run-1", "a", "completed", result=[1, "x"], has_result=True)
            await store.claim_run("run-2", "wf", {"n": 2}, owner="b", lease_seconds=_LIVE)

    async def _check_sample(self, store: Store) -> None:
        assert await store.get_step("run-1", "fetch") == (True, _NESTED)
        assert await store.get_step("run-1", "falsy") == (True, None)
        assert await store.get_signal("run-1", "approval") == (True, 0)
        assert await store.set_signal("run-1", "approval", 1) is False
        loaded = await store.load_steps("run-1")
        if loaded is not None or self.loads_steps:
            assert loaded is not None
            assert dict(loaded) == {"fetch": _NESTED, "falsy": None}
        if self.records_runs:
            done = await self._run_record(store, "run-1")
            assert (done.status, done.result, done.has_result) == ("completed", [1, "x"], True)
            assert done.inputs == {"n": 1}
            running = await self._run_record(store, "run-2")
            assert (running.status, running.owner) == ("running", "b")
            claim = await store.claim_run("run-2", "wf", None, owner="c", lease_seconds=_LIVE)
            assert claim.acquired is False

    @store_test("persistent")
    async def test_persistent_second_store_sees_writes(self, store: Store) -> None:
        """Writes are visible to another store object on the same data once they return."""
        await self._write_sample(store)
        await self._check_sample(await self.open_store_again())

    @store_test("persistent")
    async def test_persistent_data_survives_close_and_reopen(self, store: Store) -> None:
        """Steps, signals and run records survive closing the store and opening it again."""
        await self._write_sample(store)
        await self.close_store(store)
        await self._check_sample(await self.open_store_again())

    @store_test("persistent")
    async def test_concurrent_set_signal_across_stores(self, store: Store) -> None:
        """Store objects on one database racing to deliver a signal: exactly one True."""
        stores = [store, *[await self.open_store_again() for _ in range(3)]]
        n = self.concurrency
        results = await asyncio.gather(
            *(stores[i % len(stores)].set_signal("run-1", "go", i) for i in range(n))
        )
        winners = [i for i, delivered in enumerate(results) if delivered]
        assert len(winners) == 1, f"set_signal returned True {len(winners)} times"
        for s in stores:
            assert await s.get_signal("run-1", "go") == (True, winners[0])

    @store_test("persistent", "records_runs")
    async def test_concurrent_claim_across_stores(self, store: Store) -> None:
        """Store objects on one database racing to claim a new run: exactly one acquires."""
        stores = [store, *[await self.open_store_again() for _ in range(3)]]
        owners = [f"owner-{i}" for i in range(self.concurrency)]
        claims = await asyncio.gather(
            *(
                stores[i % len(stores)].claim_run("run-1", "wf", None, owner=o, lease_seconds=_LIVE)
                for i, o in enumerate(owners)
            )
        )
        self._assert_one_winner(claims, owners)

    @store_test()
    async def test_concurrent_set_step_all_recorded(self, store: Store) -> None:
        """Many steps of many runs recorded at once are all there when the calls return."""
        n = self.concurrency * 5
        await asyncio.gather(
            *(store.set_step(f"run-{i % 7}", f"step-{i}", {"i": i}, attempt=1) for i in range(n))
        )
        readers = [store, await self.open_store_again()] if self.persistent else [store]
        for reader in readers:
            for i in range(n):
                assert await reader.get_step(f"run-{i % 7}", f"step-{i}") == (True, {"i": i})
            loaded = await reader.load_steps("run-3")
            if loaded is not None:
                assert dict(loaded) == {f"step-{i}": {"i": i} for i in range(n) if i % 7 == 3}

    # -- lifecycle --------------------------------------------------------------------

    @store_test()
    async def test_setup_again_while_open_is_harmless(self, store: Store) -> None:
        """``setup()`` on a store already set up changes nothing (two workflows may share it).

        Every :class:`~durable.Workflow` sets its store up when first used, so a store
        given to two workflows is set up twice; ``close()`` may then come twice too.
        """
        await store.set_step("run-1", "s", 1)
        await store.setup()
        assert await store.get_step("run-1", "s") == (True, 1)
        await store.set_step("run-1", "t", 2)
        assert await store.get_step("run-1", "t") == (True, 2)
        await store.close()
        await store.close()
        await store.setup()
        await store.set_step("run-1", "u", 3)
        assert await store.get_step("run-1", "u") == (True, 3)

    @store_test(set_up=False)
    async def test_concurrent_setup_is_harmless(self, store: Store) -> None:
        """Two ``setup()`` calls at once on one store leave one working store.

        Two workflows sharing a store set it up at the same time when both start at once.
        """
        self._track(store)

        async def set_up_and_write() -> None:
            await store.setup()
            await store.set_step("run-1", "s", 1)
            assert await store.set_signal("run-1", "go", 1) is True

        await asyncio.gather(set_up_and_write(), store.setup(), store.setup())
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_signal("run-1", "go") == (True, 1)
        await store.set_step("run-1", "t", 2)
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_step("run-1", "t") == (True, 2)

    @store_test("persistent", set_up=False)
    async def test_stores_set_up_at_once_on_new_data(self, store: Store) -> None:
        """Several store objects set up at once on new data (processes starting together)."""
        stores = [self._track(store), *[self._track(await self.reopen_store()) for _ in range(3)]]
        await asyncio.gather(*(s.setup() for s in stores))
        for i, s in enumerate(stores):
            await s.set_step("run-1", f"s{i}", i)
        for s in stores:
            for i in range(len(stores)):
                assert await s.get_step("run-1", f"s{i}") == (True, i)

    @store_test()
    async def test_close_then_setup_again(self, store: Store) -> None:
        """After ``close()`` the store can be set up again and used."""
        await store.set_step("run-1", "before", 1)
        await store.close()
        await store.setup()
        await store.set_step("run-1", "after", 2)
        assert await store.get_step("run-1", "after") == (True, 2)
        assert await store.set_signal("run-1", "go", True) is True
        assert await store.get_signal("run-1", "go") == (True, True)
        if self.persistent:
            assert await store.get_step("run-1", "before") == (True, 1)

    # -- end to end, through the engine ---------------------------------------------

    @store_test(set_up=False)
    async def test_engine_completed_run_replays(self, store: Store) -> None:
        """Calling a completed run again returns its result without running any task."""
        wf = self.make_workflow(store)
        calls: list[str] = []
        bodies: list[int] = []

        @wf.task
        async def fetch(n: int) -> int:
            calls.append(f"fetch {n}")
            return n * 10

        @wf.task
        async def total(values: list[int]) -> dict[str, int]:
            calls.append("total")
            return {"sum": sum(values), "count": len(values)}

        @wf.workflow(id="order-{n}")
        async def order(n: int) -> dict[str, int]:
            bodies.append(n)
            return await total([await fetch(n), await fetch(n + 1), await fetch(n + 2)])

        first = await order(1)
        assert first == {"sum": 60, "count": 3}
        assert calls == ["fetch 1", "fetch 2", "fetch 3", "total"]
        assert await order(1) == first
        assert await order.run("order-1", 1) == first
        assert calls == ["fetch 1", "fetch 2", "fetch 3", "total"], "a replayed task ran again"
        if self.records_runs:
            assert bodies == [1], "the body of a completed run ran again"
            record = await wf.get_run("order-1")
            assert record is not None
            assert (record.status, record.result, record.inputs) == ("completed", first, {"n": 1})
            assert record.workflow == order.workflow_id
        assert await order(2) == {"sum": 90, "count": 3}
        assert len(calls) == 8

    @store_test(set_up=False)
    async def test_engine_failed_run_resumes(self, store: Store) -> None:
        """A failed run called again replays its checkpointed steps and runs the rest."""
        wf = self.make_workflow(store)
        calls: list[str] = []
        declined = [True]

        @wf.task
        async def reserve(item: str) -> str:
            calls.append("reserve")
            return f"reservation-{item}"

        @wf.task
        async def charge(item: str) -> int:
            calls.append("charge")
            if declined[0]:
                raise RuntimeError("card declined")
            return 42

        @wf.workflow(id="buy-{item}")
        async def buy(item: str) -> dict[str, Any]:
            reservation = await reserve(item)
            return {"reservation": reservation, "charge": await charge(item)}

        with pytest.raises(RuntimeError, match="card declined"):
            await buy("book")
        assert calls == ["reserve", "charge"]
        if self.records_runs:
            record = await wf.get_run("buy-book")
            assert record is not None
            assert record.status == "failed"
            assert "card declined" in (record.error or "")
        declined[0] = False
        expected = {"reservation": "reservation-book", "charge": 42}
        assert await buy("book") == expected
        assert calls == ["reserve", "charge", "charge"]
        if self.records_runs:
            record = await wf.get_run("buy-book")
            assert record is not None
            assert record.status == "completed"
            assert record.result == expected
            assert record.has_result is True

    @store_test(set_up=False)
    async def test_engine_signal_wakes_waiting_workflow(self, store: Store) -> None:
        """``wf.complete`` wakes a workflow waiting in ``wf.signal`` at once."""
        wf = self.make_workflow(store)
        waiting = asyncio.Event()

        @wf.task
        async def prepare(doc: str) -> str:
            return f"prepared {doc}"

        @wf.workflow(id="approve-{doc}")
        async def approve(doc: str) -> dict[str, Any]:
            prepared = await prepare(doc)
            waiting.set()
            payload = await wf.signal("approval", poll=600.0)  # woken, never polled
            return {"prepared": prepared, "payload": payload}

        run = asyncio.create_task(approve("d1"))
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.sleep(0.1)  # let it reach wf.signal
        assert not run.done()
        assert await wf.complete("approve-d1", "approval", {"approved": True}) is True
        expected = {"prepared": "prepared d1", "payload": {"approved": True}}
        assert await asyncio.wait_for(run, 10) == expected
        assert await wf.complete("approve-d1", "approval", {"approved": False}) is False
        assert await approve("d1") == expected

    @store_test(set_up=False)
    async def test_engine_signal_delivered_before_wait(self, store: Store) -> None:
        """A signal delivered before the workflow waits returns at once, falsy payloads too."""
        wf = self.make_workflow(store)

        @wf.workflow(id="gate-{n}")
        async def gate(n: int) -> list[Any]:
            return [await wf.signal("first", poll=600.0), await wf.signal("second", poll=600.0)]

        assert await wf.complete("gate-1", "first", 0) is True
        assert await wf.complete("gate-1", "second", None) is True
        assert await wf.complete("gate-1", "second", "late") is False
        assert await asyncio.wait_for(gate(1), 10) == [0, None]

    @store_test(set_up=False)
    async def test_engine_signal_from_another_workflow(self, store: Store) -> None:
        """A signal delivered by another workflow (another process) reaches the waiter.

        With ``persistent`` the sender uses another store object on the same data. The
        waiter polls every 0.2 s, or, with ``notifies_signals``, only every 600 s: then the
        store's notification must wake it.
        """
        poll = 600.0 if self.notifies_signals else 0.2
        receiver = self.make_workflow(store)
        sender = self.make_workflow(await self.reopen_store() if self.persistent else store)
        waiting = asyncio.Event()

        @receiver.workflow(id="inbox-{n}")
        async def inbox(n: int) -> Any:
            waiting.set()
            return await receiver.signal("mail", poll=poll)

        run = asyncio.create_task(inbox(1))
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.sleep(0.1)
        assert await sender.complete("inbox-1", "mail", {"from": "sender"}) is True
        assert await asyncio.wait_for(run, 10) == {"from": "sender"}

    @store_test("records_runs", set_up=False)
    async def test_engine_one_run_from_two_workflows_executes_once(self, store: Store) -> None:
        """Two owners starting one run at once: its tasks execute once, both get the result.

        With ``persistent`` the second owner uses another store object on the same data;
        otherwise both workflows share the store.
        """
        other = await self.reopen_store() if self.persistent else store
        calls: list[str] = []

        def define(wf: Workflow) -> Callable[[str], Coroutine[Any, Any, str]]:
            @wf.task
            async def slow(key: str) -> str:
                calls.append(key)
                await asyncio.sleep(0.3)
                return key.upper()

            @wf.workflow(id="job-{key}")
            async def job(key: str) -> str:
                return await slow(key)

            return job

        first, second = define(self.make_workflow(store)), define(self.make_workflow(other))
        results = await asyncio.gather(first("k"), second("k"))
        assert list(results) == ["K", "K"]
        assert calls == ["k"], "two owners executed the same run"

    @store_test("persistent", set_up=False)
    async def test_engine_replays_after_reopen(self, store: Store) -> None:
        """A new workflow on a reopened store replays the run without running its tasks."""
        calls: list[str] = []

        def define(wf: Workflow) -> Callable[[int], Coroutine[Any, Any, list[int]]]:
            @wf.task
            async def square(n: int) -> int:
                calls.append(f"square {n}")
                return n * n

            @wf.workflow(id="squares-{count}")
            async def squares(count: int) -> list[int]:
                return [await square(i, step_id=f"sq-{i}") for i in range(count)]

            return squares

        first_wf = self.make_workflow(store)
        assert await define(first_wf)(3) == [0, 1, 4]
        await first_wf.close()
        assert await define(self.make_workflow(await self.reopen_store()))(3) == [0, 1, 4]
        assert calls == ["square 0", "square 1", "square 2"]
