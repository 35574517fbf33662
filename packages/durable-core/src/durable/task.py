"""``@wf.task``: an async function whose result is checkpointed, with retries."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .backoff import BackoffStrategy
from .context import RESERVED_PREFIX, RunContext, active_run
from .errors import DurableError, SerializationError, StepIdConflictError
from .lossy import lossy_note
from .serialization import Unserializable, encoder, rebuilder, return_annotation, to_json
from .settings import callable_setting, non_negative_int
from .steps import RetryPolicy, StepRunner

log = logging.getLogger("durable")

P = ParamSpec("P")
R = TypeVar("R")

_UNRESOLVED: Any = object()


class Task(StepRunner, Generic[P, R]):
    """A durable task. Await it like the function it wraps.

    Inside a workflow its result is checkpointed under a step id (``step_id=`` when
    given, else the task name, then ``name#1`` ...); a step already checkpointed for
    the run is replayed from the store instead of executed. Outside a workflow it is
    a plain call: no store, no retries. Its steps run through the step engine
    (:class:`durable.steps.StepRunner`).
    """

    kind = "task"

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        name: str,
        retries: int,
        backoff: BackoffStrategy,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        if name.startswith(RESERVED_PREFIX):
            raise StepIdConflictError(
                f"a task may not be named {name!r}: step ids starting with "
                f"{RESERVED_PREFIX!r} are reserved for durable's own steps"
            )
        self.fn = fn
        self.retry_on = retry_on
        self.no_retry_on = no_retry_on
        self._return_type: Any = _UNRESOLVED
        self._encoder: Callable[[Any], Any] = to_json
        self._decoder: Callable[[Any], Any] | None = None  # made on the first replay
        super().__init__(
            name,
            RetryPolicy(
                retries=non_negative_int(f"task {name!r}: retries", retries),
                backoff=callable_setting(f"task {name!r}: backoff", backoff),
                # Not a bound method: a task and its policy would make a reference cycle.
                retryable=functools.partial(_retryable, retry_on, no_retry_on),
            ),
        )
        functools.update_wrapper(self, fn)

    @property
    def retries(self) -> int:
        return self.policy.retries

    @property
    def backoff(self) -> BackoffStrategy:
        return self.policy.backoff

    # The step_id keyword cannot be added to a ParamSpec signature, so the call is
    # typed twice: the wrapped signature exactly, or any arguments with a step id.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...

    @overload
    def __call__(
        self, *args: Any, step_id: str | None, **kwargs: Any
    ) -> Coroutine[Any, Any, R]: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, R]:
        step_id: str | None = kwargs.pop("step_id", None)
        ctx = active_run.get()
        if ctx is None:  # a plain call, unless it is awaited inside a run after all
            return self._call_later(args, kwargs, step_id)
        # The step id is taken now, where the call is made, not where it is first
        # awaited: calls made in program order get ids in program order, also when
        # asyncio.gather or a TaskGroup awaits them in an order that timing decides.
        try:
            if step_id is None:  # _take_step_id, inlined: every step's path
                sid = ctx.next_step_id(self.name)
            else:
                ctx.take_step_id(step_id, self.name, explicit=True)
                sid = step_id
        except DurableError as exc:
            return _raising(exc)  # raised where it is awaited, like any other failure
        return self.execute(ctx, sid, self.fn, args, kwargs)  # the step's one coroutine

    async def _call_later(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], step_id: str | None
    ) -> R:
        ctx = active_run.get()
        if ctx is None:
            return await self.fn(*args, **kwargs)
        return await self._call(ctx, self._take_step_id(ctx, step_id), args, kwargs)

    def _take_step_id(self, ctx: RunContext, step_id: str | None) -> str:
        if step_id is None:
            return ctx.next_step_id(self.name)
        ctx.take_step_id(step_id, self.name, explicit=True)
        return step_id

    def _call(
        self, ctx: RunContext, sid: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, R]:
        # The step engine's coroutine itself: no coroutine of the task's own in between.
        return self.execute(ctx, sid, self.fn, args, kwargs)

    def _annotation(self) -> Any:
        """The return annotation, resolved on first use (forward references allowed)."""
        if self._return_type is _UNRESOLVED:
            self._return_type = return_annotation(self.fn)
            self._encoder = encoder(self._return_type)
        return self._return_type

    def encode(self, result: R, ctx: RunContext, sid: str) -> Any:
        if self._return_type is _UNRESOLVED:
            self._annotation()
        if log.isEnabledFor(logging.DEBUG) and (note := lossy_note(result, self._return_type)):
            log.debug("task %s (step %s, run %s) %s", self.name, sid, ctx.run_id, note)
        try:
            return self._encoder(result)
        except Unserializable as exc:
            raise SerializationError(
                f"task {self.name!r} (step {sid!r}) in run {ctx.run_id!r} returned "
                f"{exc.type_name}{' at ' + exc.path if exc.path else ''}, which cannot be "
                "stored as JSON; return JSON data, a Pydantic model, a dataclass, a "
                "datetime, a UUID or a Decimal"
            ) from None

    def rebuild(self, value: Any, ctx: RunContext, sid: str) -> R:
        if self._return_type is _UNRESOLVED:
            self._annotation()
        try:
            decode = self._decoder
            if decode is None:
                decode = self._decoder = rebuilder(self._return_type)
            result: R = decode(value)
        except Exception as exc:
            # The message names the type of error only: its text may quote the value.
            raise SerializationError(
                f"task {self.name!r} (step {sid!r}) in run {ctx.run_id!r}: the stored "
                f"result cannot be rebuilt as {self._return_type!r} ({type(exc).__name__})"
            ) from exc
        return result

    def __repr__(self) -> str:
        return f"<durable task {self.name!r} retries={self.retries}>"


def _retryable(
    retry_on: tuple[type[BaseException], ...],
    no_retry_on: tuple[type[BaseException], ...],
    exc: Exception,
) -> bool:
    return isinstance(exc, retry_on) and not isinstance(exc, no_retry_on)


async def _raising(exc: BaseException) -> Any:
    raise exc
