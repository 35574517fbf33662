"""The store protocol: the only way the engine talks to a database.

The seed's seven abstract methods are a complete minimal store: a subclass that
implements only them keeps working, with the seed's semantics (steps replay, runs are
not leased, a completed run's body runs again with every step replayed).

The other methods are capabilities with safe defaults. A store that records runs
implements :meth:`Store.claim_run`, :meth:`Store.finish_run` and friends; the
conformance suite in :mod:`durable.testing` checks each one it claims.

Values crossing this protocol are plain JSON data (see :mod:`durable.serialization`):
a store encodes them with ``json.dumps`` and returns them decoded with ``json.loads``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .errors import UnsupportedOperation
from .faults import fault_point
from .records import (
    RUN_STATUSES,
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    claim_allowed,
    counts_as_recovery,
    same_identity,
)


class Store(ABC):
    """Implement this to keep checkpoints anywhere (Postgres, DynamoDB, files ...)."""

    #: Declared capability: the run's owner's writes are fenced. ``checkpoint_step``
    #: and ``record_attempt`` given ``owner=`` write only while ``owner`` holds the
    #: run (status ``running``, that owner on record), else they write nothing and
    #: raise :class:`~durable.errors.LeaseLostError`; ``finish_run`` returns whether it
    #: recorded the outcome. The engine passes ``owner=`` only to a store declaring it:
    #: without it, an owner paused past its lease (SIGSTOP, a VM pause, a long GC) can
    #: overwrite the new owner's checkpoints, and the Workflow says so once at start.
    fences_writes: ClassVar[bool] = False
    #: Declared capability: the store keeps run records (``claim_run`` with leases,
    #: ``finish_run``, ``get_run``, ``list_runs``, ``scan_runs``, cancel and reopen).
    #: Without it (the seed's seven methods only) a run is not leased, so two
    #: processes may execute it at once; the Workflow says so once at start.
    records_runs: ClassVar[bool] = False
    #: Declared capability: :meth:`claim_orphans` takes expired runs over in the store
    #: itself, so that workers recovering at once take different runs. Without it,
    #: recovery scans the running runs and claims them one by one; a run is still
    #: taken by one worker only, but the others find that out one claim at a time.
    claims_orphans: ClassVar[bool] = False
    #: Declared capability: :meth:`wait_for_change` returns as soon as the run changes
    #: (a signal delivered, a cancellation requested), so a waiting run learns of its
    #: cancellation at once. Without it, a sleeping or waiting run notices a
    #: cancellation at its next lease renewal (every third of the lease).
    notifies_changes: ClassVar[bool] = False

    # -- the seed's minimal protocol ------------------------------------------------

    @abstractmethod
    async def setup(self) -> None:
        """Prepare the store (connect, create tables) before first use.

        Must be idempotent and safe to call concurrently: every ``Workflow`` sharing
        the store calls it, and it is called again after :meth:`close`.
        """

    @abstractmethod
    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        """Return ``(found, value)``; ``found`` is False when the step has not completed."""

    @abstractmethod
    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        """Durably record a completed step's result before returning."""

    @abstractmethod
    async def mark_run_done(self, run_id: str) -> None:
        """Mark the run completed."""

    @abstractmethod
    async def mark_run_failed(self, run_id: str, error: str) -> None:
        """Mark the run failed with an error message."""

    @abstractmethod
    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        """Return ``(found, payload)`` of a delivered signal."""

    @abstractmethod
    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        """Store a signal's payload; True the first time, False when one was already there."""

    # -- capabilities with defaults -------------------------------------------------

    async def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections; calling it twice is harmless. :meth:`setup` may follow."""

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        """Record a step like :meth:`set_step`, and say whether the run should go on.

        Returns False when cancellation of the run was requested
        (:meth:`request_cancel`): the engine then stops the run at this step boundary.
        A store answers in the same round trip as the write; the default writes with
        :meth:`set_step` and always answers True. ``owner``: see :attr:`fences_writes`
        (checked in the same round trip as the write).
        """
        await self.set_step(run_id, step_id, result, attempt)
        return True

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        """Note that attempt number ``attempt`` of a step failed with ``error``.

        Kept so that a run recovered during a retry's backoff goes on counting
        attempts instead of starting over; ``attempt=0`` clears the count (the failure
        was final, a resumed run starts afresh). The default keeps nothing. ``owner``:
        see :attr:`fences_writes`.
        """
        return None

    async def mark_progress(self, run_id: str, owner: str) -> None:
        """Set the run's ``recoveries_without_progress`` back to 0 while ``owner`` holds
        it (otherwise change nothing): the engine calls it when a resumed run reaches a
        wait (a sleep, a signal), which proves the take-overs came while it waited, not
        from a step that kills its process. The default keeps no such count."""
        return None

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        """Failed attempts per step of a run, as recorded by :meth:`record_attempt`."""
        return {}

    async def load_steps(self, run_id: str) -> Mapping[str, Any] | None:
        """All completed steps of a run in one call, or None when not supported.

        When None, the engine asks :meth:`get_step` for each step instead.
        """
        return None

    async def claim_run(
        self,
        run_id: str,
        workflow: str,
        inputs: Any,
        *,
        owner: str,
        lease_seconds: float,
        takeover_from: str | None = None,
        input_digest: str | None = None,
    ) -> RunClaim:
        """Atomically take ownership of a run, creating its record if it is new.

        A run on record belongs to one workflow and one set of inputs: the claim is
        refused, changing nothing, when the record's ``workflow`` differs or both it and
        the caller have an ``input_digest`` and they differ (:func:`same_identity`); the
        engine then raises the conflict. A new record keeps ``input_digest``; a record
        without one (made by a version before 0.4) keeps none, which tells the engine
        that the run's engine step ids may be in the old form.

        The claim is granted when the run is new, failed, completed without a stored
        result, owned by ``owner`` already, owned by ``takeover_from`` (an owner the
        caller knows is dead), or when the current owner's lease has expired. It is
        refused, with the current record, when the run completed with a result, was
        cancelled or dead-lettered, or another owner's lease is live
        (:func:`claim_allowed`). A granted claim sets status ``running``, and adds one
        to ``recoveries`` when it takes the run from another owner that left it running
        (:func:`counts_as_recovery`), and to ``recoveries_without_progress``, which
        :meth:`checkpoint_step` sets back to 0 (the run made progress; dead-lettering
        counts only take-overs in a row without it). A claim that made the run's
        record may say so
        (``RunClaim.created``): the engine then skips :meth:`load_steps` for it.

        The default, for minimal stores, grants every claim and records nothing.
        """
        record = RunRecord(run_id, workflow, "running", inputs=inputs, input_digest=input_digest)
        return RunClaim(True, record)

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; False when ``owner`` no longer holds the run."""
        return True

    async def release_run(self, run_id: str, owner: str) -> None:
        """Give up ownership without finishing (the run was cancelled or interrupted)."""
        return None

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> bool:
        """Record a run's outcome and release its lease; return whether it was recorded.

        Applies only while the run is ``running`` and held by ``owner``: a run taken
        over by another owner, or ended meanwhile, is left alone (False). ``owner=""``
        (the seed's ``mark_run_*``) always applies. The engine reads the answer of a
        store that declares :attr:`fences_writes` only: a stale owner's outcome is not
        the run's, and its caller gets :class:`~durable.errors.LeaseLostError`.
        """
        if status == "completed":
            await self.mark_run_done(run_id)
        else:
            await self.mark_run_failed(run_id, error or status)
        return True

    async def wait_for_signal(self, run_id: str, name: str, max_wait: float) -> None:
        """Return when signal ``name`` of ``run_id`` may have been delivered, or after
        ``max_wait`` seconds, whichever comes first.

        The engine checks :meth:`get_signal` after every return, so waking early is
        harmless, and cancels the wait when the run ends, so it must stop promptly when
        cancelled. The default sleeps the whole ``max_wait`` (polling); a store with
        change notification (pub/sub, LISTEN/NOTIFY) returns as soon as the signal is set.
        """
        await asyncio.sleep(max_wait)

    async def wait_for_change(self, run_id: str, max_wait: float) -> None:
        """Return when the run may have changed (a signal delivered, a cancellation
        requested, from any process), or after ``max_wait`` seconds.

        Like :meth:`wait_for_signal`, waking early is harmless: the engine reads the
        run after every return, and cancels the wait when it ends. Declared by
        :attr:`notifies_changes`; the default sleeps the whole ``max_wait``.
        """
        await asyncio.sleep(max_wait)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when unknown or when the store keeps no records."""
        return None

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        """The run's steps with their attempts and times, oldest first."""
        steps = await self.load_steps(run_id)
        if steps is None:
            raise UnsupportedOperation(f"{type(self).__name__} does not list steps")
        return [StepRecord(step_id, value) for step_id, value in steps.items()]

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        """The run's delivered signals, oldest first."""
        raise UnsupportedOperation(f"{type(self).__name__} does not list signals")

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask a run to stop; returns its record afterwards, or None if it is unknown.

        A run that is not executing anywhere (failed, or its owner released it) becomes
        ``cancelled`` at once. A running one gets ``cancel_requested``, which
        :meth:`checkpoint_step` reports to its owner. Finished runs are left alone.
        """
        raise UnsupportedOperation(f"{type(self).__name__} cannot cancel runs")

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        """Make a failed, cancelled or dead run resumable again.

        It becomes ``running`` with no owner, cancellation and recovery count cleared,
        so the next claim (a call, ``Workflow.resume`` or a worker's recovery) takes it.
        Returns the record afterwards, or None if the run is unknown.
        """
        raise UnsupportedOperation(f"{type(self).__name__} cannot reopen runs")

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        """Delete runs (with their steps and signals) in ``statuses`` last changed
        before the epoch time ``finished_before``; return how many."""
        raise UnsupportedOperation(f"{type(self).__name__} cannot delete runs")

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        """Runs, newest first, filtered by status and workflow name."""
        raise UnsupportedOperation(f"{type(self).__name__} does not list runs")

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        """One page of the runs in ``status``, oldest first (by creation, then run id).

        ``cursor`` is None for the first page, else the cursor the previous page
        returned; the answer is the page and the next page's cursor (None after the
        last page). The cursor is the store's own text: a page after it never repeats
        or skips a run that stayed in ``status`` meanwhile. Recovery reads every page,
        so an old orphan is found however many runs are live. The default cannot page.
        """
        raise UnsupportedOperation(f"{type(self).__name__} cannot scan runs page by page")

    async def claim_orphans(
        self, workflows: Sequence[str], *, owner: str, lease_seconds: float, limit: int = 100
    ) -> Sequence[RunRecord]:
        """Take over up to ``limit`` running runs of ``workflows`` whose lease has run
        out, oldest first, each as :meth:`claim_run` would take it (a recovery counted
        when another owner left it running), and return their records as claimed.

        Workers calling it at the same time get different runs (a run is claimed by
        one of them). Declared by :attr:`claims_orphans`; the default cannot.
        """
        raise UnsupportedOperation(f"{type(self).__name__} cannot claim orphaned runs")

    @classmethod
    def from_url(cls, url: str) -> Store:
        """Build the store from a ``db=`` URL; plugins registered by class use this."""
        raise UnsupportedOperation(f"{cls.__name__} cannot be built from a URL ({url!r})")


async def scan_all(store: Store, status: RunStatus, *, page: int = 500) -> list[RunRecord]:
    """Every run of ``store`` in ``status``, oldest first, read page by page with
    :meth:`Store.scan_runs` (which raises UnsupportedOperation where it cannot page)."""
    found: list[RunRecord] = []
    cursor: str | None = None
    while True:
        records, cursor = await store.scan_runs(status, cursor=cursor, limit=page)
        found.extend(records)
        if cursor is None:
            return found


def after_commit() -> None:
    """A store calls this right after each commit, before it answers the engine.

    The hook of crash tests: with ``DURABLE_FAULTS=after-commit`` set when durable was
    imported, the process kills itself here (SIGKILL), between a commit and the
    engine learning of it. Otherwise it does nothing (one falsy check).
    """
    fault_point("after-commit")


__all__ = [
    "RUN_STATUSES",
    "FinalStatus",
    "RunClaim",
    "RunRecord",
    "RunStatus",
    "SignalRecord",
    "StepRecord",
    "Store",
    "after_commit",
    "claim_allowed",
    "counts_as_recovery",
    "same_identity",
    "scan_all",
]


def __getattr__(name: str) -> Any:
    # The seed exported its stores from this module; keep those imports working.
    if name == "InMemoryStore":
        from .memory import InMemoryStore

        return InMemoryStore
    if name == "SQLiteStore":
        import durable

        return durable.SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
