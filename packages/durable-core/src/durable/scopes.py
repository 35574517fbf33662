"""Step scopes: automatic step ids fixed by program order, never by timing.

A run's automatic step ids are ``name``, ``name#1`` ... in the order its code asks for
them. Branches that run at once (``asyncio.gather``, ``TaskGroup``, ``create_task``)
would ask in an order that depends on timing, so each asyncio task a run creates gets
a scope of its own, numbered by the order in which its creator made it: the steps of
the third task the workflow body created are ``2/name``, ``2/name#1`` ...; a task that
branch creates in turn is ``2.0/...``. The numbers come from a task factory installed
on the loop while runs execute.

Scopes are kept per asyncio task, not in context variables: libraries copy context
variables between tasks (pydantic-ai applies a hook's context changes to its caller),
and a task's place in the program order must not travel with them.

Two kinds of task creation take no number. Tasks created while the engine itself
works (a store's connection, a signal wait's helpers) are not the run's, and a replay
would not create them. Tasks created inside a step's body are numbered under that
step (``charge#1.0/...``): on replay the body does not run, and the rest of the run
must not notice.

Where the engine cannot tell the order (a step asked for from an asyncio task no
scope was made for: a callback, a task built with ``asyncio.Task(...)`` directly, or
one made under another task factory that drops our context), it raises
:class:`NonDeterminismError` on the first run rather than risk replaying a step into
the wrong call.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import RunContext

_TaskFactory = Callable[..., "asyncio.Future[Any]"]


class StepBody:
    """Where tasks created inside an executing step's body are numbered: under the step
    (step ids are unique in a run, so the step's id alone names the place)."""

    __slots__ = ("_children", "step_id")

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        self._children = 0

    def child(self) -> Scope:
        index = self._children
        self._children += 1
        return Scope((self.step_id, index))


class Scope:
    """The automatic step ids of one asyncio task of a run (the workflow body's is the root)."""

    __slots__ = ("_children", "_counters", "path", "prefix", "spawn")

    def __init__(self, path: tuple[int | str, ...]) -> None:
        self.path = path
        self.prefix = ".".join(map(str, path)) + "/" if path else ""
        self._counters: dict[str, int] = {}
        self._children = 0
        #: Where a task this task creates now takes its number from: this scope, a
        #: step body, or nowhere (None) while the engine works.
        self.spawn: Scope | StepBody | None = self

    def next_step_id(self, name: str) -> str:
        """``name``, ``name#1``, ``name#2`` ... in this scope, in call order."""
        count = self._counters.get(name, 0)
        self._counters[name] = count + 1
        return f"{self.prefix}{name}" if count == 0 else f"{self.prefix}{name}#{count}"

    def child(self) -> Scope:
        index = self._children
        self._children += 1
        return Scope((*self.path, index))


class _Spawning:
    """Sets where the current task's new tasks take their numbers from, for a block."""

    __slots__ = ("_saved", "_scope", "_source")

    def __init__(self, run: RunContext | None, source: Scope | StepBody | None) -> None:
        self._scope = None if run is None else run.scope_here()
        self._source = source

    def __enter__(self) -> None:
        if self._scope is not None:
            self._saved, self._scope.spawn = self._scope.spawn, self._source

    def __exit__(self, *exc: object) -> None:
        if self._scope is not None:
            self._scope.spawn = self._saved


def engine_section(run: RunContext | None) -> _Spawning:
    """``with engine_section(run):`` tasks created inside are the engine's, not the run's."""
    return _Spawning(run, None)


def in_step_body(run: RunContext, step_id: str) -> _Spawning:
    """``with in_step_body(run, step_id):`` tasks created inside are numbered under it."""
    return _Spawning(run, StepBody(step_id))


class ScopingTaskFactory:
    """A loop's task factory that gives tasks created in a run's code their scope.

    It wraps the factory that was installed before (if any), so an application's own
    factory (``asyncio.eager_task_factory`` ...) keeps working.
    """

    durable_scoping = True

    def __init__(
        self, inner: _TaskFactory | None, active_run: contextvars.ContextVar[RunContext | None]
    ) -> None:
        self.inner = inner
        self._active_run = active_run

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        given: contextvars.Context | None = kwargs.get("context")
        run = self._active_run.get() if given is None else given.get(self._active_run)
        source = None if run is None else run.spawn_source_here()
        if run is None or source is None:
            return self._create(loop, coro, kwargs)
        child = source.child()
        with run.creating(child):  # an eager task's first step runs inside _create
            task = self._create(loop, coro, kwargs)
        if isinstance(task, asyncio.Task):
            run.adopt(task, child)
        return task

    def _create(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        kwargs: dict[str, Any],
    ) -> asyncio.Future[Any]:
        if self.inner is None:
            return asyncio.Task(coro, loop=loop, **kwargs)
        return self.inner(loop, coro, **kwargs)


def install_task_factory(
    loop: asyncio.AbstractEventLoop, active_run: contextvars.ContextVar[RunContext | None]
) -> None:
    """Make tasks created on ``loop`` inside runs get scopes (once per loop)."""
    current = loop.get_task_factory()
    if not getattr(current, "durable_scoping", False):
        loop.set_task_factory(ScopingTaskFactory(current, active_run))
