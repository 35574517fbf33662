"""The store conformance suite: check that a :class:`~durable.Store` keeps the contract.

Every store in this repository runs it, and so can the author of a third-party store.
Subclass :class:`StoreContract` in a pytest test module and say how to build a fresh,
empty store::

    # tests/test_conformance.py
    from durable import Store
    from durable.testing import StoreContract
    from durable_postgres import PostgresStore


    class TestPostgresStore(StoreContract):
        persistent = True

        async def make_store(self) -> Store:
            return PostgresStore(f"postgresql://localhost/test_{self.tmp_path.name}")

Then run ``pytest``. Every contract test is a plain synchronous method that runs its
async body on a fresh event loop, so the suite needs pytest only: no pytest-asyncio,
anyio or other plugin (and it also works alongside them).

For each test the suite calls :meth:`StoreContract.make_store`, then ``setup()`` on
the store, runs the test, and calls ``close()`` on every store it set up, also when
the test failed. The end-to-end tests hand the store to a :class:`~durable.Workflow`
instead, which sets it up and closes it itself.

Beyond the docstrings of :class:`~durable.Store`, the suite checks what the engine
relies on: ``setup()`` may be called again on a store that is set up, also twice at
once (every :class:`~durable.Workflow` sets up its store, and two may share one), and
``close()`` may be called twice; a cancelled ``wait_for_signal`` stops at once.

``make_store()`` must return a store on *empty* data each test. ``self.tmp_path`` is
a fresh directory per test (pytest's ``tmp_path``), handy for file databases; a
server-backed store can use its name as a unique prefix or database name, or flush
the database in ``make_store``. A subclass is an ordinary pytest class: it may add
its own fixtures, tests and marks, and may override a contract test (for example to
skip it with a reason).

Capability flags (class attributes; override the ones your store differs in):

``records_runs = True``
    The store keeps run records: ``claim_run`` with leases, ``renew_lease``,
    ``release_run``, ``finish_run``, ``get_run`` and ``list_runs`` are implemented.
    Set it to False for a minimal store that implements only the seven abstract
    methods of :class:`~durable.Store` (the seed's protocol); the run-record tests are
    then skipped and the suite checks that the permissive defaults work instead.
``loads_steps = True``
    ``load_steps`` returns all completed steps of a run in one call. When False the
    store may return None from it (the engine then asks ``get_step`` per step); a
    mapping it does return is still checked.
``persistent = False``
    Data outlives a store object: another store built on the same backing data (see
    :meth:`StoreContract.reopen_store`) sees it, while the first is still open and
    after it was closed. Enables the persistence tests and the tests that race two
    store objects, as two processes would. True for SQLite and Redis, False for
    :class:`~durable.InMemoryStore`.
``notifies_signals = False``
    ``wait_for_signal`` returns as soon as the signal it waits for is delivered (pub/sub,
    LISTEN/NOTIFY ...), also when delivered through another store object on the same
    data, rather than only after its timeout. Enables the wake-up tests, and makes the
    end-to-end signal test wait without polling.
``manages_runs = True``
    The store implements run management on top of its run records (so it is checked
    only when ``records_runs`` is True too): ``request_cancel`` (with
    ``checkpoint_step`` answering False while a cancellation is pending),
    ``reopen_run``, ``delete_runs``, the statuses ``cancelled`` and ``dead`` (refused
    by ``claim_run``), the ``recoveries`` count of takeovers, and ``list_steps`` /
    ``list_signals`` oldest first with attempts and timezone-aware times. Set it to
    False for a store with run records that predates these methods; ``Workflow.cancel``,
    ``resume`` of a cancelled or dead run, ``delete_runs`` and dead-lettering then do
    not work with it. ``checkpoint_step`` storing a step like ``set_step`` is checked
    on every store, and ``list_steps`` / ``list_signals`` may then be unsupported
    (``UnsupportedOperation``) but must list correctly when they answer.

Tuning knobs: ``short_lease_seconds`` (0.05; the lease used by the lease-expiry tests,
raise it for stores whose clock has a coarser resolution), ``concurrency`` (20; tasks
racing in the concurrency tests) and ``timeout_seconds`` (30; the longest a test body
may run before it fails as hung).

Extra tests of your own can use the same harness: decorate ``async def test_x(self,
store)`` with :func:`store_test` (optionally naming the capabilities it needs, or
``set_up=False`` to get the store before ``setup()``), and use
``self.open_store_again()``, ``self.set_up_store(store)``, ``self.close_store(store)``
and ``self.make_workflow(store)`` in its body; everything they open is closed after
the test. ``self.run_store_test(body)`` runs such a body from a plain method.

The checks, by group (one module each, all inherited by :class:`StoreContract`):
steps (round trip, falsy/unicode/nested/1 MB values, overwrite, isolation,
``load_steps``, ``checkpoint_step``, ``list_steps``), signals (first write wins, falsy
payloads, isolation, concurrent delivery, ``wait_for_signal``, ``list_signals``), run
ownership (claims, leases, recoveries), run records (``finish_run`` with every final
status, ``get_run``, ``list_runs``, records as copies, the seed's ``mark_run_done`` and
``mark_run_failed``), run management (``request_cancel``, ``reopen_run``,
``delete_runs``), persistence, set-up and close, and end-to-end runs through the engine
(replay, resuming a failed run, signals waking a workflow, durable sleeps surviving an
interruption, signal timeouts, ``Workflow.cancel`` stopping a run at a step boundary
from this or another workflow, then ``resume``, and ``list_runs`` / ``get_run``).

A contract test your store fails for a known reason can be marked in your subclass
without touching the others (pytest marks on the inherited function would apply to
every store)::

    class TestMyStore(StoreContract):
        @pytest.mark.xfail(strict=True, reason="list_steps ignores attempts (issue 12)")
        def test_list_steps_oldest_first_with_attempts_and_times(self) -> None:
            super().test_list_steps_oldest_first_with_attempts_and_times()
"""

from __future__ import annotations

import pytest

# The contract's asserts live in this package, not in a test module: have pytest
# rewrite them so that a failure shows the values compared.
pytest.register_assert_rewrite(
    *(
        f"{__name__}.{module}"
        for module in (
            "contract",
            "_harness",
            "_steps",
            "_signals",
            "_claims",
            "_runs",
            "_control",
            "_persistence",
            "_engine",
            "_engine_ops",
            "_fencing",
            "_scans",
            "_progress",
            "_attempts",
            "_identity",
        )
    )
)

from .contract import Capability, StoreContract, store_test  # noqa: E402

__all__ = ["Capability", "StoreContract", "store_test"]
