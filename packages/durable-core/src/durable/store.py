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
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import UnsupportedOperation

RunStatus = Literal["running", "completed", "failed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("running", "completed", "failed")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a store knows about one run."""

    run_id: str
    workflow: str
    status: RunStatus
    inputs: Any = None
    result: Any = None
    #: False when the workflow returned a value that could not be stored: a later
    #: call runs the body again with every step replayed.
    has_result: bool = False
    error: str | None = None
    owner: str | None = None
    #: Epoch seconds until which ``owner`` holds the run.
    lease_expires_at: float | None = None
    #: Timezone-aware (UTC) times of the record's creation and last change.
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RunClaim:
    """The outcome of :meth:`Store.claim_run`.

    ``acquired`` means the caller now owns the run and may execute it. Otherwise
    ``record`` says why not: the run completed, or another owner's lease is live.
    """

    acquired: bool
    record: RunRecord


def claim_allowed(
    record: RunRecord | None, *, owner: str, now: float, takeover_from: str | None = None
) -> bool:
    """The rule of :meth:`Store.claim_run`, for stores that decide it in Python."""
    if record is None or record.status == "failed":
        return True
    if record.status == "completed":
        return not record.has_result
    return (
        record.owner is None
        or record.owner == owner
        or record.owner == takeover_from
        or record.lease_expires_at is None
        or record.lease_expires_at <= now
    )


class Store(ABC):
    """Implement this to keep checkpoints anywhere (Postgres, DynamoDB, files ...)."""

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
    ) -> RunClaim:
        """Atomically take ownership of a run, creating its record if it is new.

        The claim is granted when the run is new, failed, completed without a stored
        result, owned by ``owner`` already, owned by ``takeover_from`` (an owner the
        caller knows is dead), or when the current owner's lease has expired. It is
        refused, with the current record, when the run completed with a result or
        another owner's lease is live. A granted claim sets status ``running``.

        The default, for minimal stores, grants every claim and records nothing.
        """
        return RunClaim(True, RunRecord(run_id, workflow, "running", inputs=inputs))

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
        status: Literal["completed", "failed"],
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        """Record a run's outcome and release its lease.

        Ignored when another owner holds the run (it was taken over, and the new owner
        records the outcome); ``owner=""`` (the seed's ``mark_run_*``) always applies.
        """
        if status == "completed":
            await self.mark_run_done(run_id)
        else:
            await self.mark_run_failed(run_id, error or "")

    async def wait_for_signal(self, run_id: str, name: str, max_wait: float) -> None:
        """Return when signal ``name`` of ``run_id`` may have been delivered, or after
        ``max_wait`` seconds, whichever comes first.

        The engine checks :meth:`get_signal` after every return, so waking early is
        harmless, and cancels the wait when the run ends, so it must stop promptly when
        cancelled. The default sleeps the whole ``max_wait`` (polling); a store with
        change notification (pub/sub, LISTEN/NOTIFY) returns as soon as the signal is set.
        """
        await asyncio.sleep(max_wait)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when unknown or when the store keeps no records."""
        return None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        """Runs, newest first, filtered by status and workflow name."""
        raise UnsupportedOperation(f"{type(self).__name__} does not list runs")

    @classmethod
    def from_url(cls, url: str) -> Store:
        """Build the store from a ``db=`` URL; plugins registered by class use this."""
        raise UnsupportedOperation(f"{cls.__name__} cannot be built from a URL ({url!r})")


__all__ = ["RUN_STATUSES", "RunClaim", "RunRecord", "RunStatus", "Store", "claim_allowed"]


def __getattr__(name: str) -> Any:
    # The seed exported its stores from this module; keep those imports working.
    if name == "InMemoryStore":
        from .memory import InMemoryStore

        return InMemoryStore
    if name == "SQLiteStore":
        import durable

        return durable.SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
