"""The state of one executing run, found through a context variable.

Tasks read the active :class:`RunContext` instead of having it passed down, so a
task called outside any workflow simply finds none and runs as a plain call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LeaseLostError, NonDeterminismError, RunCancelledError, StepIdConflictError
from .ids import check_storable_key
from .records import storable_text
from .scopes import Scope, Unordered, engine_section

if TYPE_CHECKING:
    from .store import Store

#: Step ids the engine writes itself (durable sleeps, signal deadlines) start with
#: this; task names and explicit step ids may not, so they can never meet.
RESERVED_PREFIX = "$"


@dataclass
class RunContext:
    """One executing run: its id, its workflow and the store its steps go to."""

    run_id: str
    workflow_id: str
    store: Store
    #: The run's completed steps as loaded when it started (None: the store reads
    #: them one at a time).
    loaded_steps: dict[str, Any] | None = field(default=None, repr=False)
    #: Set when another owner took the run over; the next step stops the run.
    lease_lost: bool = field(default=False, repr=False)
    #: Set when the run was asked to stop (``Workflow.cancel``).
    cancel_requested: bool = field(default=False, repr=False)
    _interrupt: asyncio.Event | None = field(default=None, repr=False)
    #: Failed attempts per step from before a restart (loaded for recovered runs).
    _attempts: dict[str, int] | None = field(default=None, repr=False)
    #: Whether the run was taken over mid-run, so earlier attempts may be on record.
    recovered: bool = field(default=False, repr=False)
    #: The owner id this execution holds the run under, passed with every write to a
    #: store that fences them (``Store.fences_writes``); None: writes are not fenced.
    fence: str | None = field(default=None, repr=False)
    #: Who holds the run here, for how long a renewal lasts, and when (monotonic) the
    #: store last confirmed it: a step about to start after a freeze asks again.
    owner: str | None = field(default=None, repr=False)
    lease_seconds: float | None = field(default=None, repr=False)
    lease_confirmed_at: float = field(default_factory=time.monotonic, repr=False)
    #: The run whose code awaited this one (a workflow called inside a workflow).
    parent: RunContext | None = field(default=None, repr=False)
    #: Recorded by a version before 0.4, whose engine step ids had no reserved prefix.
    legacy_ids: bool = field(default=False, repr=False)
    #: The workflow body's scope of automatic step ids (branches have their own).
    root: Scope = field(default_factory=lambda: Scope(()), repr=False)
    #: Step ids taken in this execution, with the task (or wait) that took each.
    _taken: dict[str, str] = field(default_factory=dict[str, str], repr=False)
    #: The scope of each asyncio task of the run (see :mod:`durable.scopes`).
    _scopes: dict[asyncio.Task[Any], Scope] = field(
        default_factory=dict[asyncio.Task[Any], Scope], repr=False
    )
    #: The scope of a task being created right now (an eager task starts inside).
    _nascent: Scope | None = field(default=None, repr=False)
    _run_wide: Scope | None = field(default=None, repr=False)
    _progress_noted: bool = field(default=False, repr=False)

    def next_step_id(self, name: str, scope: Scope | None = None) -> str:
        """Step ids in call order: ``name``, ``name#1`` ... within ``scope``, by default
        the current asyncio task's (see :mod:`durable.scopes`); the id is taken for
        ``name``. An integration whose units run one after another across tasks (an
        agent's loop) numbers them in a scope of its own (:meth:`new_scope`)."""
        scope = scope or self.scope_here()
        if scope is None or isinstance(scope, Unordered):
            raise self._unordered(name, scope)
        step_id = scope.next_step_id(name)
        # take_step_id, inlined: this is every automatic step's path.
        if step_id in self._taken:
            self.take_step_id(step_id, name, explicit=False)  # raises, naming both
        self._taken[step_id] = name
        if scope.taken is not None:
            scope.taken.append(step_id)
        return step_id

    def _unordered(self, name: str, scope: Scope | None) -> NonDeterminismError:
        if scope is None:
            return NonDeterminismError(
                f"run {self.run_id!r}: {name!r} was called without a step_id from an "
                "asyncio task that durable did not see created (a callback, a task made "
                "with asyncio.Task() directly, or one made outside the run), so its step "
                "id would depend on timing; give it step_id=..., or create the task with "
                "asyncio.create_task, a TaskGroup or asyncio.gather inside the workflow"
            )
        assert isinstance(scope, Unordered)
        return NonDeterminismError(
            f"run {self.run_id!r}: {name!r} was called without a step_id in a task that "
            f"{scope.why}, in an order of its own, so its step id would depend on "
            "timing; give it step_id=..., or create the tasks first (asyncio.create_task, "
            "in program order) and pass those"
        )

    # -- scopes -----------------------------------------------------------------------

    def new_scope(self) -> Scope:
        """Counters of their own for ids whose names are already unique in the run."""
        return Scope(())

    def run_wide_scope(self) -> Scope:
        """One set of counters for the whole run, whatever task asks: the numbering of
        versions before 0.4, for integrations that order their units themselves."""
        if self._run_wide is None:
            self._run_wide = Scope(())
        return self._run_wide

    def scope_here(self, task: asyncio.Task[Any] | None = None) -> Scope | None:
        """The scope of ``task``, by default the current asyncio task (None: a task
        durable did not number)."""
        if task is None:
            task = asyncio.current_task()
        scope = self._scopes.get(task) if task is not None else None
        if scope is None and task is not None:
            if self._nascent is not None:  # an eager task's first step, inside create_task
                scope, self._nascent = self._nascent, None
                self._scopes[task] = scope
            elif not self._scopes:  # a context made by hand: its first task is the body
                scope = self._scopes[task] = self.root
        if scope is not None and scope.body is not None:  # inside a step's body
            return scope.innermost()
        return scope

    def spawn_source_here(self) -> Scope | None:
        """Where a task created now by the current task takes its number from."""
        scope = self.scope_here()
        return None if scope is None else scope.spawn

    def adopt(self, task: asyncio.Task[Any], scope: Scope) -> None:
        """``task`` (created inside the run) runs with ``scope``'s step ids until done."""
        if self._scopes.setdefault(task, scope) is scope:
            task.add_done_callback(self._forget)

    def enter_body(self, task: asyncio.Task[Any]) -> None:
        """``task`` executes the workflow body: the root scope, until :meth:`leave_body`
        (the task outlives the run: the caller's, which may run many)."""
        self._scopes[task] = self.root

    def leave_body(self, task: asyncio.Task[Any]) -> None:
        self._scopes.pop(task, None)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._scopes.pop(task, None)

    def creating(self, scope: Scope) -> _Creating:
        """``with run.creating(scope):`` a task that starts running inside (an eager
        task's first step) finds ``scope`` as its own."""
        return _Creating(self, scope)

    def take_step_id(self, step_id: str, owner: str, *, explicit: bool) -> None:
        """Take ``step_id`` for ``owner`` in this execution; a second use is an error."""
        if not isinstance(step_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise StepIdConflictError(
                f"run {self.run_id!r}: {owner!r} was given step_id={step_id!r}; a step id is a str"
            )
        if explicit:
            check_storable_key(step_id, "step id", f" of {owner!r} in run {self.run_id!r}")
        if explicit and step_id.startswith(RESERVED_PREFIX):
            raise StepIdConflictError(
                f"run {self.run_id!r}: {owner!r} was given step_id={step_id!r}, but step ids "
                f"starting with {RESERVED_PREFIX!r} are reserved for durable's own steps "
                "(sleeps, signal deadlines)"
            )
        first = self._taken.get(step_id)
        if first is not None:
            raise StepIdConflictError(
                f"run {self.run_id!r}: step id {step_id!r} is used twice in one run, by "
                f"{first!r} and by {owner!r}; each step needs its own id (give step_id= "
                "values that differ, and none of the form name#N, which the automatic "
                "ids of a task named name take)"
            )
        self._taken[step_id] = owner
        scope = self.scope_here()
        if scope is not None and scope.taken is not None:
            scope.taken.append(step_id)

    # -- step bodies ------------------------------------------------------------------

    def leave_step_body(self, outer: Scope, *, failed: bool) -> None:
        """After one attempt of a step's body (``outer.enter_step_body``): a failed
        attempt gives back the step ids it took (the next attempt takes them again)."""
        taken = outer.leave_step_body()
        if failed and taken:
            for step_id in taken:
                self._taken.pop(step_id, None)

    async def completed_step(self, step_id: str) -> tuple[bool, Any]:
        """``(found, value)`` of a step that completed in an earlier execution."""
        if self.loaded_steps is None:
            with engine_section(self):
                return await self.store.get_step(self.run_id, step_id)
        if step_id in self.loaded_steps:
            return True, self.loaded_steps[step_id]
        return False, None

    async def record_step(self, step_id: str, value: Any, attempt: int) -> None:
        """Checkpoint a step; a cancellation the store reports stops the run next.

        A fenced write refused because another owner holds the run now raises
        :class:`LeaseLostError`: this execution runs no further step.
        """
        # Called from the engine's own sections (a task's step, a wait), where a store's
        # own tasks (a WAL checkpoint) take no branch number.
        store = self.store
        try:
            if self.fence is None:
                go_on = await store.checkpoint_step(self.run_id, step_id, value, attempt)
            else:
                go_on = await store.checkpoint_step(
                    self.run_id, step_id, value, attempt, owner=self.fence
                )
        except LeaseLostError:
            self.lose_lease()
            raise
        if self.loaded_steps is not None:
            self.loaded_steps[step_id] = value
        if not go_on:
            self.request_cancel()

    async def record_attempt(self, step_id: str, attempt: int, error: str) -> None:
        """Note a failed attempt of ``step_id`` (0: the failure was final), fenced."""
        error = storable_text(error)
        try:
            if self.fence is None:
                await self.store.record_attempt(self.run_id, step_id, attempt, error)
            else:
                await self.store.record_attempt(
                    self.run_id, step_id, attempt, error, owner=self.fence
                )
        except LeaseLostError:
            self.lose_lease()
            raise

    def lease_needs_confirming(self) -> bool:
        """Whether the lease was last confirmed more than half its length ago (the loop
        froze: SIGSTOP, a VM pause, a long GC, a blocking call)."""
        lease = self.lease_seconds
        return (
            lease is not None
            and self.owner is not None
            and time.monotonic() - self.lease_confirmed_at > lease / 2
        )

    async def confirm_lease_if_stale(self) -> None:
        """Before a step body starts: if :meth:`lease_needs_confirming`, renew the lease
        now, and stop here if another owner took the run meanwhile. The heartbeat
        renews every third of the lease, so a healthy run never asks."""
        if self.lease_seconds is None or self.owner is None or not self.lease_needs_confirming():
            return
        with engine_section(self):
            still_ours = await self.store.renew_lease(self.run_id, self.owner, self.lease_seconds)
        if not still_ours:
            self.lose_lease()
            raise LeaseLostError(
                f"run {self.run_id!r} was taken over by another owner while this process "
                "was not running (its lease ran out); no further step runs here"
            )
        self.lease_confirmed_at = time.monotonic()

    async def note_progress(self) -> None:
        """A resumed run that reached a wait (a sleep, a signal) is no poison run: its
        take-overs came while it waited (a deploy, a restart). Say so once per execution,
        (``Store.mark_progress``), which clears the store's count of take-overs without
        progress, so waiting through restarts never dead-letters."""
        if not self.recovered or self._progress_noted or self.owner is None:
            return
        self._progress_noted = True
        with engine_section(self):
            await self.store.mark_progress(self.run_id, self.owner)

    async def attempts_before(self, step_id: str) -> int:
        """Failed attempts of ``step_id`` recorded before this process took the run."""
        if not self.recovered:
            return 0
        if self._attempts is None:
            with engine_section(self):
                self._attempts = dict(await self.store.load_attempts(self.run_id))
        return self._attempts.get(step_id, 0)

    def request_cancel(self) -> None:
        """Stop the run at its next step boundary, and wake it if it is waiting."""
        self.cancel_requested = True
        if self._interrupt is not None:
            self._interrupt.set()

    def lose_lease(self) -> None:
        """Another owner may hold the run now: stop at the next step, wake any wait."""
        self.lease_lost = True
        if self._interrupt is not None:
            self._interrupt.set()

    def raise_if_cancelled(self) -> None:
        """Stop here if the run was cancelled or its lease lost (at a step boundary)."""
        if self.lease_lost:
            raise LeaseLostError(f"run {self.run_id!r} lost its lease; another owner has it")
        if self.cancel_requested:
            raise RunCancelledError(f"run {self.run_id!r} was cancelled")

    async def pause_until(self, deadline: float) -> None:
        """Sleep until the epoch time ``deadline``; a cancellation cuts it short."""
        self.raise_if_cancelled()
        if self._interrupt is None:
            self._interrupt = asyncio.Event()
        remaining = deadline - time.time()
        if remaining > 0:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._interrupt.wait()
        self.raise_if_cancelled()

    def interrupted(self) -> asyncio.Event:
        """An event set when the run is asked to stop (for waits to include)."""
        if self._interrupt is None:
            self._interrupt = asyncio.Event()
            if self.cancel_requested or self.lease_lost:
                self._interrupt.set()
        return self._interrupt


active_run: ContextVar[RunContext | None] = ContextVar("durable_active_run", default=None)


def current_run() -> RunContext | None:
    """The run executing in this task, or None outside a workflow."""
    return active_run.get()


class _Creating:
    __slots__ = ("_run", "_saved", "_scope")

    def __init__(self, run: RunContext, scope: Scope) -> None:
        self._run, self._scope = run, scope

    def __enter__(self) -> None:
        self._saved, self._run._nascent = self._run._nascent, self._scope  # pyright: ignore[reportPrivateUsage]

    def __exit__(self, *exc: object) -> None:
        self._run._nascent = self._saved  # pyright: ignore[reportPrivateUsage]
