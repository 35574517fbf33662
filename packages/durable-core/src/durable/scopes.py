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
import asyncio.base_events
import asyncio.tasks
import contextvars
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import RunContext

_TaskFactory = Callable[..., "asyncio.Future[Any]"]


def _component(part: int | str) -> str:
    """One part of a scope's path as text: a branch number, or a step id, quoted with
    its ``%``, ``'`` and ``/`` escaped, so that no two paths read alike."""
    if isinstance(part, int):
        return str(part)
    return "'" + part.replace("%", "%25").replace("'", "%27").replace("/", "%2F") + "'"


class Scope:
    """The automatic step ids of one asyncio task of a run, or of one attempt of a step's
    body (the workflow body's scope is the root: its ids are ``name``, ``name#1`` ...).

    Other scopes' ids start with the reserved ``$`` and their path, ``$2/name``,
    ``$2.0/name``, ``$'charge#1'/name``: no explicit step id can be one of them.
    """

    __slots__ = (
        "_body_scope",
        "_children",
        "_counters",
        "_prefix",
        "body",
        "path",
        "spawn",
        "taken",
    )

    def __init__(self, path: tuple[int | str, ...], taken: list[str] | None = None) -> None:
        self.path = path
        self._prefix: str | None = None if path else ""  # made on first use: most never are
        self._counters: dict[str, int] | None = None  # made on first use too
        self._children = 0
        #: Where a task this task creates now takes its number from: this scope, or
        #: nowhere (None) while the engine works.
        self.spawn: Scope | None = self
        #: Step ids taken in a step body's scope and the tasks it created, which a
        #: failed attempt gives back (None: not in a step body).
        self.taken = taken
        #: The step whose body this task is executing now (None: none). Its scope is
        #: made when the body first asks for an id or creates a task: most never do.
        self.body: str | None = None
        self._body_scope: Scope | None = None

    @property
    def prefix(self) -> str:
        if self._prefix is None:
            self._prefix = "$" + ".".join(map(_component, self.path)) + "/"
        return self._prefix

    def next_step_id(self, name: str) -> str:
        """``name``, ``name#1``, ``name#2`` ... in this scope, in call order."""
        counters = self._counters
        if counters is None:
            counters = self._counters = {}
        count = counters.get(name, 0)
        counters[name] = count + 1
        prefix = self._prefix if self._prefix is not None else self.prefix
        return f"{prefix}{name}" if count == 0 else f"{prefix}{name}#{count}"

    def child(self) -> Scope:
        index = self._children
        self._children += 1
        return Scope((*self.path, index), self.taken)

    def innermost(self) -> Scope:
        """The scope in effect: the body's of the step this task is executing (and of
        the step that body is executing ...), else this one."""
        scope = self
        while scope.body is not None:
            inner = scope._body_scope
            if inner is None:  # the scope of one attempt of the body: ids under the step
                inner = scope._body_scope = Scope((*scope.path, scope.body), [])
            scope = inner
        return scope

    def enter_step_body(self, step_id: str) -> None:
        """Before one attempt of ``step_id``'s body: its calls and tasks are numbered
        under the step, since a replay does not run the body."""
        self.body, self._body_scope = step_id, None

    def leave_step_body(self) -> list[str] | None:
        """After the attempt: this scope again; the step ids the body took, if any."""
        inner, self.body, self._body_scope = self._body_scope, None, None
        return None if inner is None else inner.taken


class Unordered(Scope):
    """The scope of a task started in an order durable cannot see (``as_completed``
    starts its awaitables from a set): its automatic step ids are refused."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        super().__init__(("?",))
        self.why = why

    def child(self) -> Scope:
        return self


class _Spawning:
    """Sets where the current task's new tasks take their numbers from, for a block."""

    __slots__ = ("_saved", "_scope")

    def __init__(self, run: RunContext | None) -> None:
        self._scope = None if run is None else run.scope_here()

    def __enter__(self) -> None:
        if self._scope is not None:
            self._saved, self._scope.spawn = self._scope.spawn, None

    def __exit__(self, *exc: object) -> None:
        if self._scope is not None:
            self._scope.spawn = self._saved


def engine_section(run: RunContext | None) -> _Spawning:
    """``with engine_section(run):`` tasks created inside are the engine's, not the run's."""
    return _Spawning(run)


#: Where asyncio starts awaitables in an order of its own: as_completed takes them from
#: a set, so the n-th task it creates is not the n-th awaitable it was given.
_UNORDERED_CREATORS = frozenset(
    {"as_completed", "as_completed.<locals>.<setcomp>", "_AsCompletedIterator.__init__"}
)
_ASYNCIO_FILES = frozenset({asyncio.tasks.__file__, asyncio.base_events.__file__})


def _started_by_as_completed() -> bool:
    """Whether asyncio.as_completed is creating the task being made (callers: the
    factory, then asyncio's create_task / ensure_future frames, then the creator)."""
    frame: types.FrameType | None = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
    while frame is not None and frame.f_code.co_filename in _ASYNCIO_FILES:
        if frame.f_code.co_qualname in _UNORDERED_CREATORS:
            return True
        frame = frame.f_back
    return False


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
        if _started_by_as_completed():
            child = Unordered("asyncio.as_completed started it")
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
