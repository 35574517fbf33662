"""Seeing and steering runs: inspect, cancel, resume, prune, recover, and the worker.

A :class:`RunManager` belongs to one ``Workflow`` and knows its registered workflow
functions, so it can restart a run from the inputs its record stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DurableError, RunFailedError, UnsupportedOperation
from .owners import owner_is_dead
from .records import RunRecord, RunStatus, lease_is_live, storable_text
from .runner import RunExecutor
from .settings import SettingError, SettingTypeError, non_negative_int, positive_seconds
from .store import Store, scan_all
from .urls import UrlMaskingFilter, masked_store_repr

if TYPE_CHECKING:
    from .flows import WorkflowFunction

log = logging.getLogger("durable")
# Every record of durable's own logger: a URL in a message (an error's) shows no password.
log.addFilter(UrlMaskingFilter())

#: Running runs per page of a recovery pass's scan (Store.scan_runs).
SCAN_PAGE = 500
#: How many running runs a recovery pass looks at on a store that cannot page.
RECOVERY_BATCH = 1000


class RunManager:
    def __init__(self, executor: RunExecutor) -> None:
        self._executor = executor
        self.workflows: dict[str, WorkflowFunction[..., Any]] = {}
        self._recovered: dict[str, asyncio.Task[Any]] = {}
        self._warned_unpaged = False

    def register(self, flow: WorkflowFunction[..., Any]) -> None:
        if flow.workflow_id in self.workflows:
            raise DurableError(
                f"two workflows are named {flow.workflow_id!r}; give one of them "
                "@wf.workflow(name=...)"
            )
        self.workflows[flow.workflow_id] = flow

    # -- inspection -------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await run_with_history(await self._executor.ready_store(), run_id)

    async def list_runs(
        self, status: RunStatus | None, workflow: str | None, limit: int
    ) -> Sequence[RunRecord]:
        limit = non_negative_int("list_runs(limit=...)", limit)
        store = await self._executor.ready_store()
        return await store.list_runs(status=status, workflow=workflow, limit=limit)

    # -- control ----------------------------------------------------------------------

    async def cancel(self, run_id: str) -> RunRecord | None:
        record = await cancel_run(await self._executor.ready_store(), run_id)
        if record is not None and record.cancel_requested:
            self._executor.cancel_here(run_id)
        return record

    async def resume(self, run_id: str) -> Any:
        store = await self._executor.ready_store()
        record = await store.get_run(run_id)
        if record is None:
            where = masked_store_repr(store)
            raise DurableError(f"no run {run_id!r} in {where}")
        flow = self._flow_of(record)
        call = flow.call_from_record(record)  # refused before anything changes
        if record.status in ("failed", "cancelled", "dead"):
            await store.reopen_run(run_id)
        return await flow.run_call(call)

    async def delete_runs(
        self, older_than: dt.timedelta | dt.datetime, statuses: Sequence[RunStatus]
    ) -> int:
        cutoff = retention_cutoff(older_than)
        store = await self._executor.ready_store()
        return await store.delete_runs(finished_before=cutoff, statuses=statuses)

    # -- recovery ---------------------------------------------------------------------

    async def orphans(self) -> list[RunRecord]:
        """Runs of registered workflows left running by an owner that is gone, oldest
        first, found among every running run (page by page), however many are live."""
        store = await self._executor.ready_store()
        now = time.time()
        return [
            record
            for record in await self._running(store)
            if record.workflow in self.workflows
            and record.run_id not in self._recovered
            and (not lease_is_live(record, now) or owner_is_dead(record.owner))
        ]

    async def _running(self, store: Store) -> list[RunRecord]:
        try:
            return await scan_all(store, "running", page=SCAN_PAGE)
        except UnsupportedOperation:
            if not self._warned_unpaged:
                self._warned_unpaged = True
                log.warning(
                    "%s cannot scan runs page by page (Store.scan_runs): recovery looks "
                    "at its newest %d running runs only, and an older orphan waits",
                    type(store).__name__, RECOVERY_BATCH,
                )  # fmt: skip
            return list(await store.list_runs(status="running", limit=RECOVERY_BATCH))

    def start_recovery(self, record: RunRecord) -> asyncio.Task[Any]:
        flow = self._flow_of(record)
        call = flow.call_from_record(record, what="wf.recover()")  # refused here, not later
        log.info("recovering run %s of %s", record.run_id, record.workflow)
        task = asyncio.ensure_future(flow.run_call(call))
        self._recovered[record.run_id] = task
        task.add_done_callback(lambda _: self._recovered.pop(record.run_id, None))
        task.add_done_callback(_log_outcome)
        return task

    async def recover(self) -> list[str]:
        """Resume every orphaned run and wait for them; return the ids of those resumed.
        A run that recovery dead-lettered instead (a take-over too many, see
        ``max_recoveries``) was not resumed, and is not among them."""
        started = await self._recover_orphans()
        await asyncio.gather(*started.values(), return_exceptions=True)
        store = await self._executor.ready_store()
        return [
            run_id
            for run_id, task in started.items()
            if not await _dead_lettered(store, run_id, task)
        ]

    async def _recover_orphans(self) -> dict[str, asyncio.Task[Any]]:
        started: dict[str, asyncio.Task[Any]] = {}
        for record in await self._claimed_orphans():
            await self._recover(record, started)
        # What the store did not claim: every orphan of a store that cannot, and on any
        # store a run whose owner died on this host while its lease was still live.
        for record in await self.orphans():
            await self._recover(record, started)
        return started

    async def _claimed_orphans(self) -> list[RunRecord]:
        """Expired runs the store took over for this process (Store.claim_orphans), so
        that workers recovering at once take different runs instead of racing."""
        store = await self._executor.ready_store()
        if not type(store).claims_orphans or not self.workflows:
            return []
        claimed: list[RunRecord] = []
        executor = self._executor
        while True:
            page = await store.claim_orphans(
                list(self.workflows),
                owner=executor.owner,
                lease_seconds=executor.lease_seconds,
                limit=SCAN_PAGE,
            )
            claimed.extend(page)
            if len(page) < SCAN_PAGE:
                return claimed

    async def _recover(self, record: RunRecord, started: dict[str, asyncio.Task[Any]]) -> None:
        if record.run_id in started or record.run_id in self._recovered:
            return
        try:
            started[record.run_id] = self.start_recovery(record)
        except DurableError as exc:
            # Without stored inputs it can never be restarted from the store: fail it
            # (with the reason) so that it stops being an orphan.
            log.error("run %s cannot be recovered: %s", record.run_id, exc)
            store = await self._executor.ready_store()
            await store.finish_run(record.run_id, "", "failed", error=storable_text(str(exc)))

    def worker(self, poll: float) -> contextlib.AbstractAsyncContextManager[None]:
        """Recover at start and every ``poll`` seconds, until the block exits; a bad
        ``poll`` is refused here, where ``wf.worker(poll=...)`` is called."""
        return self._worker(positive_seconds("wf.worker(poll=...)", poll))

    @contextlib.asynccontextmanager
    async def _worker(self, poll: float) -> AsyncGenerator[None]:

        async def keep_recovering() -> None:
            while True:
                try:
                    await self._recover_orphans()
                except Exception:
                    log.exception("recovery pass failed; trying again in %ss", poll)
                await asyncio.sleep(poll)

        loop_task = asyncio.ensure_future(keep_recovering())
        try:
            yield
        finally:
            loop_task.cancel()
            recovered = [loop_task, *self._recovered.values()]
            for task in recovered[1:]:
                task.cancel()  # each releases its lease, so another worker can take it
            await asyncio.gather(*recovered, return_exceptions=True)

    def _flow_of(self, record: RunRecord) -> WorkflowFunction[..., Any]:
        flow = self.workflows.get(record.workflow)
        if flow is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise DurableError(
                f"run {record.run_id!r} belongs to workflow {record.workflow!r}, which is "
                f"not defined on this Workflow (defined: {known})"
            )
        return flow


def retention_cutoff(older_than: dt.timedelta | dt.datetime) -> float:
    """The epoch time before which finished runs go: ``older_than`` is an age of 0 or
    more (a timedelta) or a time (a datetime; naive means local)."""
    if isinstance(older_than, dt.timedelta):
        age = older_than.total_seconds()
        if age < 0:
            raise SettingError(
                "delete_runs(older_than=...) must be an age of 0 or more "
                f"(timedelta(0) <= value) or a datetime, got {older_than!r}"
            )
        return time.time() - age
    if isinstance(older_than, dt.datetime):  # pyright: ignore[reportUnnecessaryIsInstance]
        return older_than.timestamp()
    raise SettingTypeError(
        f"delete_runs(older_than=...) must be a timedelta or a datetime, got {older_than!r}"
    )


async def run_with_history(store: Store, run_id: str) -> RunRecord | None:
    """A run's record with its steps and signals (those the store can list)."""
    record = await store.get_run(run_id)
    if record is None:
        return None
    steps = await listing_or_empty(store.list_steps(run_id))
    signals = await listing_or_empty(store.list_signals(run_id))
    return dataclasses.replace(record, steps=tuple(steps), signals=tuple(signals))


async def cancel_run(store: Store, run_id: str) -> RunRecord | None:
    """``Store.request_cancel``, treating a dead local owner as not executing."""
    record = await store.request_cancel(run_id)
    if record is not None and record.cancel_requested and owner_is_dead(record.owner):
        assert record.owner is not None
        await store.release_run(run_id, record.owner)
        record = await store.request_cancel(run_id)
    return record


async def listing_or_empty(listing: Any) -> Sequence[Any]:
    """The listing, or nothing when the store cannot list that."""
    try:
        result: Sequence[Any] = await listing
    except UnsupportedOperation:
        return ()
    return result


async def _dead_lettered(store: Store, run_id: str, task: asyncio.Task[Any]) -> bool:
    """Whether a recovery ended the run as ``dead`` rather than resuming it: refused
    with RunFailedError, and dead on record."""
    if task.cancelled() or not isinstance(task.exception(), RunFailedError):
        return False
    record = await store.get_run(run_id)
    return record is not None and record.status == "dead"


def _log_outcome(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        log.warning("a recovered run ended with %s: %s", type(exc).__name__, exc)
