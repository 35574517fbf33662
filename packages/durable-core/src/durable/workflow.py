"""The :class:`Workflow`: the one object an application creates.

wf = Workflow("orders")                      # SQLite file durable.db
wf = Workflow("orders", db="redis://localhost:6379/0")

@wf.task(retries=5)
async def charge(order_id: str) -> Receipt: ...

@wf.workflow(id="order-{order_id}")
async def process(order_id: str) -> Receipt:
    return await charge(order_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from . import fanout, settings, waits
from .backoff import BackoffStrategy, exponential
from .context import RunContext, active_run
from .errors import NotInWorkflowError, SerializationError, SyncFunctionError
from .flows import WorkflowFunction
from .ids import check_storable_key
from .operations import RunManager
from .owners import new_owner_id
from .plugins import DEFAULT_DB, resolve_store
from .records import FINAL_STATUSES, RunRecord, RunStatus
from .runner import RunExecutor
from .scopes import engine_section
from .serialization import Unserializable, to_json
from .settings import callable_setting, non_negative_int, positive_seconds
from .store import Store
from .task import Task
from .urls import masked_store_repr

#: Seconds between two looks at a run that another live process is executing.
WAIT_POLL = 0.2

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
A = TypeVar("A")


def _engine_call(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """A method that works on the store: called from a workflow's body, the tasks the
    store creates meanwhile (a connection, a WAL checkpoint) are not the run's branches."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with engine_section(active_run.get()):
            return await method(*args, **kwargs)

    return call


class Workflow:
    """Tasks, workflows and signals that share one store.

    Args:
        name: The application's name; part of default run ids and workflow ids.
        db: A :class:`Store`, a URL (``memory://``, ``sqlite:///jobs.db``,
            ``redis://host/0`` ...) or a file path for SQLite. Default ``durable.db``.
        default_retries: Retries of a failing task (after its first attempt): an int
            of 0 or more.
        default_backoff: Wait before each retry: a callable of the retry index.
        lease_seconds: How long a process holds a run without renewing it (it renews
            every third of it): 0.1 s to a year. Another process
            calling the same run id waits at most this long after the holder dies (at
            once when the holder was a dead process on this host).
        max_recoveries: How many times in a row a run may be taken over after its
            process died mid-run with no new checkpoint in between before it is
            dead-lettered (status ``dead``) instead: an int of 0 or more. A run that
            checkpoints between deaths is making progress and is never dead-lettered.

    A setting out of its range raises :class:`~durable.settings.SettingError` (a
    ``ValueError``) here, before any store is made.
    """

    def __init__(
        self,
        name: str,
        db: str | os.PathLike[str] | Store = DEFAULT_DB,
        default_retries: int = 3,
        default_backoff: BackoffStrategy = exponential(),  # noqa: B008 - immutable
        *,
        lease_seconds: float = 30.0,
        max_recoveries: int = 5,
    ) -> None:
        default_retries = non_negative_int("Workflow(default_retries=...)", default_retries)
        default_backoff = callable_setting("Workflow(default_backoff=...)", default_backoff)
        lease_seconds = settings.lease_seconds("Workflow(lease_seconds=...)", lease_seconds)
        max_recoveries = non_negative_int("Workflow(max_recoveries=...)", max_recoveries)
        self.name = name
        self.default_retries = default_retries
        self.default_backoff = default_backoff
        # Only to mask it in repr(): a store's own repr may show the URL it was given.
        self._db_text = db if isinstance(db, str) else None
        self._store = resolve_store(db)
        self._executor = RunExecutor(
            self._store,
            new_owner_id(),
            lease_seconds=lease_seconds,
            wait_poll=WAIT_POLL,
            max_recoveries=max_recoveries,
        )
        self._runs = RunManager(self._executor)
        self._signal_waiters: dict[tuple[str, str], asyncio.Event] = {}

    @property
    def store(self) -> Store:
        return self._store

    # -- decorators -----------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]]) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: BackoffStrategy | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> Callable[[Callable[P, Awaitable[R]]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: BackoffStrategy | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> Task[P, R] | Callable[[Callable[P, Awaitable[R]]], Task[P, R]]:
        """Make an async function a durable task (bare ``@wf.task`` or with options).

        Failures are retried up to ``retries`` times with ``backoff`` waits, when they
        are instances of ``retry_on`` and not of ``no_retry_on``. Cancellation,
        ``KeyboardInterrupt``, ``SystemExit`` and durable's own errors never are.
        ``retries`` is an int of 0 or more, ``backoff`` a callable: other values are
        refused here.
        """
        if retries is not None:
            non_negative_int("@wf.task(retries=...)", retries)
        if backoff is not None:
            callable_setting("@wf.task(backoff=...)", backoff)

        def decorate(func: Callable[P, Awaitable[R]]) -> Task[P, R]:
            _require_async(func, "@wf.task")
            return Task(
                func,
                name=name or func.__name__,
                retries=self.default_retries if retries is None else retries,
                backoff=self.default_backoff if backoff is None else backoff,
                retry_on=retry_on,
                no_retry_on=no_retry_on,
            )

        return decorate if fn is None else decorate(fn)

    @overload
    def workflow(self, fn: Callable[P, Awaitable[R]]) -> WorkflowFunction[P, R]: ...

    @overload
    def workflow(
        self, fn: None = None, *, id: str | None = None, name: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]: ...

    def workflow(
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        *,
        id: str | None = None,  # noqa: A002 - the seed's keyword
        name: str | None = None,
    ) -> WorkflowFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]:
        """Make an async function a durable workflow whose run id is ``id`` filled in.

        Without ``id`` the run id joins the app name, the function name and every
        argument: ``"app-process-42"``. ``.run(run_id, ...)`` gives one explicitly.
        """

        def decorate(func: Callable[P, Awaitable[R]]) -> WorkflowFunction[P, R]:
            _require_async(func, "@wf.workflow")
            flow = WorkflowFunction(
                self.name, self._executor, func, id_template=id, name=name or func.__name__
            )
            self._runs.register(flow)
            return flow

        return decorate if fn is None else decorate(fn)

    # -- concurrency ------------------------------------------------------------------

    async def gather(self, *calls: Awaitable[T]) -> list[T]:
        """Await ``calls`` at once; their results in argument order.

        Inside a workflow each call's steps are fixed by its position, not by timing, so
        a resumed run replays every result into the call that made it. When one call
        fails, the others are cancelled (their finished steps stay checkpointed) and its
        exception is raised. Outside a workflow it is a plain concurrent await.
        """
        return await fanout.gather_all(calls)

    async def map(
        self,
        task: Callable[[A], Awaitable[T]],
        items: Iterable[A],
        *,
        max_concurrency: int | None = None,
    ) -> list[T]:
        """``task(item)`` for every item, at most ``max_concurrency`` at once; results in
        item order. Each call's step id is taken in item order before any of them runs,
        so a resumed run replays each result into its item's call whatever finished
        first. Fails like :meth:`gather`."""
        return await fanout.map_all(task, items, max_concurrency)

    # -- durable waits ----------------------------------------------------------------

    async def signal(
        self,
        name: str,
        *,
        poll: float = 2.0,
        timeout: float | None = None,  # noqa: ASYNC109 - a durable deadline, not a scope
    ) -> Any:
        """Wait durably, inside a workflow, for the signal ``name`` of the current run.

        Returns the payload given to :meth:`complete`. A payload already delivered
        (also before a restart) returns at once. Delivery from this process wakes
        the run immediately; from another process, as soon as the store notices
        (stores with change notification), else within ``poll`` seconds.

        With ``timeout`` (seconds), raises :class:`SignalTimeoutError` when no
        delivery came in time. The deadline is checkpointed, so a resumed run waits
        only for what is left, and the timeout is final: a later delivery is refused.
        ``poll`` must be a finite number above 0 and ``timeout`` a finite number or
        None (0 or less: only a payload already delivered is taken); ``nan`` and
        ``inf`` are refused (wait forever with ``timeout=None``).
        """
        ctx = _current(f"wf.signal({name!r})")
        check_storable_key(name, "signal name")
        poll = positive_seconds(f"wf.signal({name!r}, poll=...)", poll)
        deadline = await waits.signal_deadline(ctx, name, timeout)
        key = (ctx.run_id, name)
        event = self._signal_waiters.setdefault(key, asyncio.Event())
        try:
            return await waits.wait_for_signal(ctx, name, event, poll, deadline)
        finally:
            if self._signal_waiters.get(key) is event:
                del self._signal_waiters[key]

    async def sleep(self, seconds: float) -> None:
        """Sleep durably inside a workflow: after a restart, only the rest is slept.

        ``seconds`` is a finite number; 0 or less is already due (like
        :func:`asyncio.sleep`, so a computed delay that came out negative just goes
        on). ``nan`` and ``inf`` are refused."""
        await waits.sleep_for(_current("wf.sleep()"), seconds)

    async def sleep_until(self, when: dt.datetime) -> None:
        """Sleep durably until ``when`` (a timezone-aware datetime; naive means local)."""
        await waits.sleep_until(_current("wf.sleep_until()"), when.timestamp())

    @_engine_call
    async def complete(self, run_id: str, name: str, payload: Any = None) -> bool:
        """Deliver signal ``name`` to ``run_id``: True the first time, False after that.

        The payload is stored as given (``None``, ``0``, ``False`` and ``""`` too);
        the first delivery wins and later ones change nothing.
        """
        check_storable_key(run_id, "run id")
        check_storable_key(name, "signal name")
        try:
            data = to_json(payload)
        except Unserializable as exc:
            raise SerializationError(
                f"the payload of signal {name!r} for run {run_id!r} is {exc}"
            ) from None
        store = await self._executor.ready_store()
        delivered = await store.set_signal(run_id, name, data)
        if delivered and (event := self._signal_waiters.get((run_id, name))) is not None:
            event.set()
        return delivered

    # -- runs -----------------------------------------------------------------------

    @_engine_call
    async def get_run(self, run_id: str) -> RunRecord | None:
        """A run's record with its steps and signals (None when unknown)."""
        return await self._runs.get_run(run_id)

    @_engine_call
    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | WorkflowFunction[..., Any] | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        """Runs, newest first; filter by status and workflow (a function or its id)."""
        if isinstance(workflow, WorkflowFunction):
            workflow = workflow.workflow_id
        return await self._runs.list_runs(status, workflow, limit)

    @_engine_call
    async def cancel(self, run_id: str) -> RunRecord | None:
        """Cancel a run: it stops at its next step boundary with status ``cancelled``.

        A run not executing anywhere is cancelled at once; a finished one is left
        alone. Returns the record afterwards (None for an unknown run).
        """
        return await self._runs.cancel(run_id)

    @_engine_call
    async def resume(self, run_id: str) -> Any:
        """Run a failed, cancelled, dead or interrupted run again, from its checkpoints,
        with the arguments its record stored; returns its result."""
        return await self._runs.resume(run_id)

    @_engine_call
    async def delete_runs(
        self,
        *,
        older_than: dt.timedelta | dt.datetime,
        status: RunStatus | Sequence[RunStatus] = FINAL_STATUSES,
    ) -> int:
        """Delete finished runs (with steps and signals) last changed before
        ``older_than`` (an age or a time); returns how many. Retention, not undo."""
        statuses = (status,) if isinstance(status, str) else tuple(status)
        return await self._runs.delete_runs(older_than, statuses)

    @_engine_call
    async def recover(self) -> list[str]:
        """Resume every run of this Workflow's workflows whose owner is gone (a dead
        process, or a lease that expired), from its stored inputs; wait for them to
        end and return the ids of those resumed (a run dead-lettered instead, for too many
        take-overs without progress, is not among them). Their outcomes are in their
        records."""
        return await self._runs.recover()

    def worker(self, *, poll: float = 5.0) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with wf.worker():`` recovers orphaned runs at start and every
        ``poll`` seconds (a finite number above 0) while the block runs; runs still
        executing at exit are interrupted (their leases released) for another worker
        to take over."""
        return self._runs.worker(poll)

    @_engine_call
    async def close(self) -> None:
        """Close the store's connections. The workflow can be used again afterwards."""
        await self._executor.close_store()

    @_engine_call
    async def __aenter__(self) -> Workflow:
        await self._executor.ready_store()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, db={masked_store_repr(self._store, self._db_text)})"


def _current(what: str) -> RunContext:
    ctx = active_run.get()
    if ctx is None:
        raise NotInWorkflowError(f"{what} must be awaited inside a running workflow")
    return ctx


def _require_async(fn: Callable[..., Any], decorator: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        what = getattr(fn, "__qualname__", repr(fn))
        raise SyncFunctionError(
            f"{decorator} needs an async function, but {what!r} is not one; "
            f"declare it with 'async def'"
        )
