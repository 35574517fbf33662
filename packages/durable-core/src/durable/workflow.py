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
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .backoff import BackoffStrategy, exponential
from .context import active_run
from .errors import NotInWorkflowError, SerializationError, SyncFunctionError
from .ids import RunIdTemplate, default_run_id
from .plugins import DEFAULT_DB, resolve_store
from .runner import RunExecutor, new_owner_id, rebuild
from .serialization import Unserializable, to_json
from .store import RunRecord, Store
from .task import Task

P = ParamSpec("P")
R = TypeVar("R")


class Workflow:
    """Tasks, workflows and signals that share one store.

    Args:
        name: The application's name; part of default run ids and workflow ids.
        db: A :class:`Store`, a URL (``memory://``, ``sqlite:///jobs.db``,
            ``redis://host/0`` ...) or a file path for SQLite. Default ``durable.db``.
        default_retries: Retries of a failing task (after its first attempt).
        default_backoff: Wait before each retry.
        lease_seconds: How long a process holds a run without renewing it. Another
            process calling the same run id waits at most this long after the
            holder dies (at once when the holder was a dead process on this host).
    """

    def __init__(
        self,
        name: str,
        db: str | os.PathLike[str] | Store = DEFAULT_DB,
        default_retries: int = 3,
        default_backoff: BackoffStrategy = exponential(),  # noqa: B008 - immutable
        *,
        lease_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self.default_retries = default_retries
        self.default_backoff = default_backoff
        self._store = resolve_store(db)
        self._executor = RunExecutor(self._store, new_owner_id(), lease_seconds, wait_poll=0.2)
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
    ) -> Callable[[Callable[P, Awaitable[R]]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: BackoffStrategy | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, Awaitable[R]]], Task[P, R]]:
        """Make an async function a durable task (bare ``@wf.task`` or with options)."""

        def decorate(func: Callable[P, Awaitable[R]]) -> Task[P, R]:
            _require_async(func, "@wf.task")
            return Task(
                func,
                name=name or func.__name__,
                retries=self.default_retries if retries is None else retries,
                backoff=self.default_backoff if backoff is None else backoff,
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
            return WorkflowFunction(
                self.name, self._executor, func, id_template=id, name=name or func.__name__
            )

        return decorate if fn is None else decorate(fn)

    # -- signals --------------------------------------------------------------------

    async def signal(self, name: str, *, poll: float = 2.0) -> Any:
        """Wait durably, inside a workflow, for the signal ``name`` of the current run.

        Returns the payload given to :meth:`complete`. A payload already delivered
        (also before a restart) returns at once. Delivery from this process wakes
        the run immediately; from another process, as soon as the store notices
        (stores with change notification), else within ``poll`` seconds.
        """
        ctx = active_run.get()
        if ctx is None:
            raise NotInWorkflowError(
                f"wf.signal({name!r}) must be awaited inside a running workflow"
            )
        store = ctx.store
        key = (ctx.run_id, name)
        # Listen before looking: complete() stores the payload before it sets the event,
        # so clearing the event and then reading the store can miss nothing.
        event = self._signal_waiters.setdefault(key, asyncio.Event())
        try:
            while True:
                event.clear()
                found, payload = await store.get_signal(ctx.run_id, name)
                if found:
                    return payload
                await _first_of(event.wait(), store.wait_for_signal(ctx.run_id, name, poll))
        finally:
            if self._signal_waiters.get(key) is event:
                del self._signal_waiters[key]

    async def complete(self, run_id: str, name: str, payload: Any = None) -> bool:
        """Deliver signal ``name`` to ``run_id``: True the first time, False after that.

        The payload is stored as given (``None``, ``0``, ``False`` and ``""`` too);
        the first delivery wins and later ones change nothing.
        """
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

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The stored record of a run (None when unknown or the store keeps none)."""
        return await (await self._executor.ready_store()).get_run(run_id)

    async def close(self) -> None:
        """Close the store's connections. The workflow can be used again afterwards."""
        await self._executor.close_store()

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
        return f"Workflow({self.name!r}, db={self._store!r})"


class WorkflowFunction(Generic[P, R]):
    """A durable workflow. Await it like the function it wraps.

    Calling it starts (or resumes, or replays) the run whose id the template gives;
    ``.run(run_id, ...)`` names the run explicitly.
    """

    def __init__(
        self,
        app: str,
        executor: RunExecutor,
        fn: Callable[P, Awaitable[R]],
        *,
        id_template: str | None,
        name: str,
    ) -> None:
        self.fn = fn
        self.name = name
        self.workflow_id = f"{app}.{name}"
        self._app = app
        self._executor = executor
        self._signature = inspect.signature(fn)
        self._template = (
            RunIdTemplate(id_template, fn, self.workflow_id) if id_template is not None else None
        )
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.run(self.run_id_for(*args, **kwargs), *args, **kwargs)

    async def run(self, run_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Start, resume or replay the run ``run_id`` with these arguments."""
        result: R = await self._executor.run(self, run_id, args, kwargs)
        return result

    def run_id_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The run id a call with these arguments uses."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if self._template is None:
            return default_run_id(self._app, self.name, bound)
        return self._template.format(bound)

    def inputs_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The call's arguments as JSON data for the run record (None if not storable)."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return None
        try:
            return to_json(dict(bound.arguments))
        except Unserializable:
            return None

    def rebuild_result(self, value: Any, run_id: str) -> R:
        result: R = rebuild(value, self.fn, f"workflow {self.workflow_id!r} (run {run_id!r})")
        return result

    def __repr__(self) -> str:
        return f"<durable workflow {self.workflow_id!r}>"


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until one of ``waits`` returns (or raises), then cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


def _require_async(fn: Callable[..., Any], decorator: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        what = getattr(fn, "__qualname__", repr(fn))
        raise SyncFunctionError(
            f"{decorator} needs an async function, but {what!r} is not one; "
            f"declare it with 'async def'"
        )
