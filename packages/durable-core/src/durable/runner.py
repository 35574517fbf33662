"""Executing one run: claim it, replay and execute its steps, record its outcome."""

from __future__ import annotations

import asyncio
import logging
from asyncio import AbstractEventLoop as EventLoop
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .calls import AwaitGraph, Call, InFlight, refuse_self_call
from .capabilities import fences_writes, warn_about_missing_guarantees
from .context import RunContext, active_run
from .errors import (
    DurableError,
    LeaseLostError,
    RunCancelledError,
    RunFailedError,
    SerializationError,
    StoreError,
)
from .faults import fault_point
from .heartbeat import Heartbeat
from .identity import check_identity
from .ids import MAX_KEY_BYTES, check_storable_key
from .owners import forks, new_owner_id, owner_is_dead
from .records import storable_text
from .scopes import engine_section, install_task_factory
from .serialization import Unserializable, from_json, return_annotation
from .store import FinalStatus, RunClaim, RunRecord, Store

if TYPE_CHECKING:
    from .flows import WorkflowFunction

log = logging.getLogger("durable")

#: Refused claims in a row that the rules allow before the store is taken for broken
#: (one is a race with another claim; the next answer shows it).
_STALE_CLAIM_ANSWERS = 5


class RunExecutor:
    """Runs workflows of one :class:`~durable.Workflow` against its store."""

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        lease_seconds: float,
        wait_poll: float,
        max_recoveries: int,
    ) -> None:
        self.store = store
        self._owner, self._owner_forks = owner, forks()
        self.lease_seconds = lease_seconds
        self.wait_poll = wait_poll
        self.max_recoveries = max_recoveries
        self._inflight: dict[str, InFlight] = {}
        self._awaits = AwaitGraph()
        self._contexts: dict[str, RunContext] = {}
        self._setup: asyncio.Task[None] | None = None
        self._ready = False

    @property
    def owner(self) -> str:
        """The owner id runs are claimed and fenced under: this process's own. A process
        forked from the one that made the Workflow gets an id of its own (its pid, a
        new token), or parent and child would hold each other's runs as one owner."""
        if forks() != self._owner_forks:
            self._owner, self._owner_forks = new_owner_id(), forks()
        return self._owner

    async def ready_store(self) -> Store:
        """The store, set up once (again on a new event loop if the first setup failed)."""
        if not self._ready:
            loop = asyncio.get_running_loop()
            setup = self._setup
            if setup is None or setup.get_loop() is not loop or _failed(setup):
                setup = self._setup = loop.create_task(self.store.setup())
            await asyncio.shield(setup)
            self._ready = True
            warn_about_missing_guarantees(self.store)
        return self.store

    async def close_store(self) -> None:
        if self._ready or self._setup is not None:
            self._ready, self._setup = False, None
            await self.store.close()

    async def run(self, flow: WorkflowFunction[..., Any], call: Call) -> Any:
        """Execute or replay ``call.run_id``; a second call for a run in flight here waits
        for it. Another workflow's run, or other inputs, is a conflict: nothing runs."""
        caller = active_run.get()
        if caller is None:  # the common case, kept one coroutine deep: nothing to refuse
            return await self._run_unawaited(flow, call)
        refuse_self_call(self.store, call.run_id, flow)
        # The engine's and the store's tasks are not the calling run's branches.
        with engine_section(caller):
            if caller.store is not self.store:
                return await self._run_unawaited(flow, call)
            # A run awaited from another run's code: refused if it waits on that run.
            with self._awaits.awaiting(caller.run_id, call.run_id, flow.workflow_id):
                return await self._run_unawaited(flow, call)

    async def _run_unawaited(self, flow: WorkflowFunction[..., Any], call: Call) -> Any:
        run_id = call.run_id
        if (
            not isinstance(run_id, str)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not run_id.isascii()
            or len(run_id) > MAX_KEY_BYTES
            or "\x00" in run_id
        ):
            check_storable_key(run_id, "run id")
        if not self._ready:
            await self.ready_store()
        while (pending := self._inflight.get(run_id)) is not None:
            check_identity(
                pending.record(), flow.workflow_id, call.digest, call.inputs, what=call.what
            )
            try:
                return await asyncio.shield(pending.outcome)
            except asyncio.CancelledError:
                if not pending.outcome.cancelled():
                    raise  # this caller was cancelled, not the run it waited on
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[run_id] = InFlight(outcome, flow.workflow_id, call)
        try:
            # Claim and execute here, not in a coroutine of their own: every suspension
            # of every step passes through each coroutine between the caller and the step.
            try:
                claim = await self._claim(flow, call)
            except BaseException:
                # The claim may have committed before a cancellation, or before the
                # store's reply was lost: never leave the run leased to nobody working.
                await asyncio.shield(self._release_quietly(run_id))
                raise
            if not claim.acquired:  # completed before: its recorded result is the answer
                result = flow.rebuild_result(claim.record.result, run_id)
            else:
                try:
                    result = await self._execute_owned(flow, claim, call, outcome.get_loop())
                except BaseException:
                    # Whatever went wrong (a store error included), never leave the run
                    # holding its lease: another caller would wait it out. A finished
                    # run has no lease.
                    await asyncio.shield(self._release_quietly(run_id))
                    raise
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:
            outcome.set_exception(exc)
            outcome.exception()  # seen: nobody may be waiting on this run's shared outcome
            raise
        else:
            outcome.set_result(result)
            return result
        finally:
            del self._inflight[run_id]

    async def _execute_owned(
        self, flow: WorkflowFunction[..., Any], claim: RunClaim, call: Call, loop: EventLoop
    ) -> Any:
        record, store = claim.record, self.store
        run_id = record.run_id
        if record.cancel_requested or record.recoveries_without_progress > self.max_recoveries:
            await self._refuse_if_stopped(record)
        steps: Mapping[str, Any] | None = {} if claim.created else await store.load_steps(run_id)
        ctx = RunContext(
            run_id,
            flow.workflow_id,
            store,
            None if steps is None else dict(steps),
            parent=active_run.get(),
            legacy_ids=record.input_digest is None,
            fence=self.owner if fences_writes(store) else None,
            owner=self.owner if store.records_runs else None,
            lease_seconds=self.lease_seconds,
        )
        # Failed attempts may be on record when the run was executing before (a new
        # record was created and claimed at the same moment).
        ctx.recovered = not claim.created and (
            record.created_at != record.updated_at or record.recoveries > 0 or bool(steps)
        )
        heartbeat = Heartbeat(self, ctx, loop)
        self._contexts[run_id] = ctx
        install_task_factory(loop, active_run)
        body_task = asyncio.current_task(loop)
        if body_task is not None:
            ctx.enter_body(body_task)
        token = active_run.set(ctx)
        try:
            result = await flow.fn(*call.args, **call.kwargs)
        except Exception as exc:
            # The run's own state decides, not the exception's type: a nested run's
            # cancellation or lost lease is a failure of this one.
            if ctx.lease_lost:
                raise  # the new owner records the outcome
            if ctx.cancel_requested and isinstance(exc, RunCancelledError):
                await self._finish(run_id, "cancelled", error="cancelled")
                log.info("workflow %s (run %s) cancelled", flow.workflow_id, run_id)
                raise
            error = f"{type(exc).__name__}: {exc}"
            await self._finish(run_id, "failed", error=error)
            log.error("workflow %s (run %s) failed: %s", flow.workflow_id, run_id, error)
            raise
        finally:
            if body_task is not None:
                ctx.leave_body(body_task)
            active_run.reset(token)
            heartbeat.stop()
            del self._contexts[run_id]
        if ctx.lease_lost:
            raise LeaseLostError(
                f"run {run_id!r} was taken over by another owner before it finished here; "
                "its outcome is theirs to record"
            )
        fault_point("before-finish", run_id)
        await self._record_result(flow, run_id, result)
        fault_point("after-finish", run_id)
        log.info("workflow %s (run %s) completed", flow.workflow_id, run_id)
        return result

    def cancel_here(self, run_id: str) -> bool:
        """Ask a run executing in this process to stop at its next step boundary."""
        ctx = self._contexts.get(run_id)
        if ctx is not None:
            ctx.request_cancel()
        return ctx is not None

    async def _refuse_if_stopped(self, record: RunRecord) -> None:
        """A run claimed while it was asked to stop, or crashing too often, ends here."""
        run_id = record.run_id
        if record.cancel_requested:
            await self.store.finish_run(run_id, self.owner, "cancelled", error="cancelled")
            raise RunCancelledError(f"run {run_id!r} was cancelled")
        if record.recoveries_without_progress > self.max_recoveries:
            error = (
                f"dead-lettered: its process ended mid-run "
                f"{record.recoveries_without_progress} times in "
                f"a row without a new checkpoint (more than max_recoveries="
                f"{self.max_recoveries})"
            )
            await self.store.finish_run(run_id, self.owner, "dead", error=error)
            log.error("run %s %s", run_id, error)
            raise RunFailedError(f"run {run_id!r} was {error}; wf.resume() runs it again")

    async def _release_quietly(self, run_id: str) -> None:
        try:
            await self.store.release_run(run_id, self.owner)
        except Exception:
            log.warning("run %s: could not release its lease", run_id, exc_info=True)

    async def _claim(self, flow: WorkflowFunction[..., Any], call: Call) -> RunClaim:
        """Own the run, or return the refused claim of a run that completed with a result."""
        run_id = call.run_id
        takeover: str | None = None
        waiting_logged = False
        stale_answers = 0
        while True:
            claim = await self.store.claim_run(
                run_id,
                flow.workflow_id,
                call.inputs,
                owner=self.owner,
                lease_seconds=self.lease_seconds,
                takeover_from=takeover,
                input_digest=call.digest,
            )
            record = claim.record
            try:
                check_identity(record, flow.workflow_id, call.digest, call.inputs, what=call.what)
            except DurableError:
                if claim.acquired:  # a store that does not check identity granted it
                    await self._release_quietly(run_id)
                raise
            if claim.acquired or (record.status == "completed" and record.has_result):
                return claim
            if record.status in ("failed", "completed"):
                # The rules grant this claim (records.claim_allowed), yet it was refused:
                # the store reported the run as it was before a concurrent claim took
                # it. Its "result" is no answer; ask again, and see that claim's state.
                stale_answers += 1
                if stale_answers > _STALE_CLAIM_ANSWERS:
                    raise StoreError(
                        f"run {run_id!r}: the store {type(self.store).__name__} refused "
                        f"{stale_answers} claims in a row that its rules allow (the run is "
                        f"{record.status}); a store must grant them"
                    )
                continue
            _raise_if_ended(record)
            if owner_is_dead(record.owner):
                log.warning("run %s: its owner %s is gone; taking it over", run_id, record.owner)
                takeover = record.owner
                continue
            if not waiting_logged:
                log.info("run %s is executing in %s; waiting for it", run_id, record.owner)
                waiting_logged = True
            await asyncio.sleep(self.wait_poll)
            current = await self.store.get_run(run_id)
            if current is not None and current.status == "failed":
                raise RunFailedError(
                    f"run {run_id!r} of workflow {flow.workflow_id!r}, which this call "
                    f"waited on, failed in {record.owner}: {current.error}"
                )

    async def _record_result(
        self, flow: WorkflowFunction[..., Any], run_id: str, result: Any
    ) -> None:
        try:
            value, stored = flow.encode_result(result), True
        except Unserializable as exc:
            log.warning(
                "workflow %s (run %s) returned %s, which cannot be stored as JSON; the run "
                "is completed, and a later call runs its body again with every step replayed",
                flow.workflow_id, run_id, exc.type_name,
            )  # fmt: skip
            value, stored = None, False
        await self._finish(run_id, "completed", result=value, has_result=stored)

    async def _finish(
        self,
        run_id: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        """Record the outcome as the run's owner; a fenced store that refuses it (another
        owner took the run over meanwhile) makes this caller's answer LeaseLostError."""
        store = self.store
        if error is not None:
            error = storable_text(error)
        recorded = await store.finish_run(
            run_id, self.owner, status, result=result, has_result=has_result, error=error
        )
        if fences_writes(store) and not recorded:
            raise LeaseLostError(
                f"run {run_id!r} was taken over by another owner before its outcome "
                f"({status}) was recorded here; its outcome is theirs to record"
            )


def _raise_if_ended(record: RunRecord) -> None:
    if record.status == "cancelled":
        raise RunCancelledError(
            f"run {record.run_id!r} was cancelled; wf.resume({record.run_id!r}) runs it again"
        )
    if record.status == "dead":
        raise RunFailedError(
            f"run {record.run_id!r} was {record.error}; wf.resume({record.run_id!r}) runs it again"
        )


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


def rebuild(value: Any, fn: Callable[..., Awaitable[Any]], what: str) -> Any:
    """Rebuild a stored value into ``fn``'s return annotation."""
    annotation = return_annotation(fn)
    try:
        return from_json(value, annotation)
    except Exception as exc:
        # The message names the type of error only: its text may quote the value.
        raise SerializationError(
            f"{what}: the stored value cannot be rebuilt as {annotation!r} ({type(exc).__name__})"
        ) from exc
