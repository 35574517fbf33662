"""The harness of the store contract: flags, the test decorator, the store lifecycle.

The checks themselves live in one module per area (``_steps``, ``_signals`` ...);
:class:`~durable.testing.StoreContract` combines them. See :mod:`durable.testing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from ..store import RunClaim, RunRecord, Store
from ..workflow import Workflow

Capability = Literal[
    "records_runs", "loads_steps", "persistent", "notifies_signals", "manages_runs"
]
"""The name of a capability flag of :class:`~durable.testing.StoreContract`."""

_C = TypeVar("_C", bound="ContractHarness")

#: A long lease: the tests that need a live lease use it.
LIVE = 30.0

#: Values a careless store confuses with "missing".
FALSY: list[Any] = [None, 0, 0.0, False, "", [], {}]

UNICODE = "héllo wörld ✓ 日本語 עברית 🎉 e\u0301 \u2028 \\ \" ' \x00 \t\n"

NESTED: dict[str, Any] = {
    "order": {"id": 42, "lines": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B", "qty": 1}]},
    "flags": [True, False, None],
    "big": 2**62,
    "neg": -7,
    "float": 1.25,
    "empty": {"list": [], "dict": {}, "str": ""},
    "deep": [[[[{"k": [1, [2, [3, [4]]]]}]]]],
    UNICODE: UNICODE,
}

#: Ids that a store building keys by concatenation, escaping or hash tags gets wrong.
ODD_IDS = [
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
    their own to a :class:`~durable.testing.StoreContract` subclass like this too::

        @store_test("persistent")
        async def test_survives_vacuum(self, store: Store) -> None: ...

    The test is skipped unless every capability flag in ``requires`` is true. Its body
    runs on a fresh event loop (see ``StoreContract.run_store_test``) with a store from
    ``make_store()``: set up by the harness, or, with ``set_up=False``, not set up (for
    a :class:`~durable.Workflow` made with ``self.make_workflow(store)`` to set up, or
    for ``StoreContract.set_up_store``).
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


class ContractHarness:
    """What every group of checks shares: the capability flags, the knobs, the
    store's lifecycle and the helpers of test bodies. Not collected by pytest."""

    #: The store keeps run records (claims, leases, results, listing).
    records_runs: ClassVar[bool] = True
    #: The store manages runs: cancellation, reopening, dead letters (recovery counts),
    #: deleting old runs, and steps and signals listed with their times.
    manages_runs: ClassVar[bool] = True
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

    def _runs_managed(self) -> bool:
        """Whether the ``manages_runs`` checks apply: they need ``records_runs`` too."""
        return self.records_runs and self.manages_runs

    def _assert_one_winner(self, claims: Sequence[RunClaim], owners: Sequence[str]) -> None:
        acquired = [o for o, c in zip(owners, claims, strict=True) if c.acquired]
        assert len(acquired) == 1, f"{len(acquired)} of {len(owners)} claims acquired the run"
        for claim in claims:
            if not claim.acquired:
                assert claim.record.status == "running"
                assert claim.record.owner == acquired[0]

    async def _run_record(self, store: Store, run_id: str) -> RunRecord:
        record = await store.get_run(run_id)
        assert record is not None, f"get_run({run_id!r}) returned None for a claimed run"
        return record
