"""``@wf.task``: an async function whose result is checkpointed, with retries."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .backoff import BackoffStrategy
from .context import RESERVED_PREFIX, RunContext, active_run
from .errors import (
    DurableError,
    LeaseLostError,
    RetriesExhaustedError,
    SerializationError,
    StepIdConflictError,
)
from .faults import fault_point
from .lossy import lossy_note
from .serialization import Unserializable, encoder, rebuilder, return_annotation, to_json
from .settings import callable_setting, non_negative_int
from .turns import line_to_wait_in

log = logging.getLogger("durable")

P = ParamSpec("P")
R = TypeVar("R")

_UNRESOLVED: Any = object()


class Task(Generic[P, R]):
    """A durable task. Await it like the function it wraps.

    Inside a workflow its result is checkpointed under a step id (``step_id=`` when
    given, else the task name, then ``name#1`` ...); a step already checkpointed for
    the run is replayed from the store instead of executed. Outside a workflow it is
    a plain call: no store, no retries.
    """

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
        self.name = name
        self.retries = non_negative_int(f"task {name!r}: retries", retries)
        self.backoff = callable_setting(f"task {name!r}: backoff", backoff)
        self.retry_on = retry_on
        self.no_retry_on = no_retry_on
        self._return_type: Any = _UNRESOLVED
        self._encoder: Callable[[Any], Any] = to_json
        self._decoder: Callable[[Any], Any] | None = None  # made on the first replay
        functools.update_wrapper(self, fn)

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
        return self._call(ctx, sid, args, kwargs)

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

    async def _call(
        self, ctx: RunContext, sid: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        # Every step passes here, and every suspension of its body passes through each
        # coroutine between the workflow and the body: so this is one coroutine, and the
        # context's checks that need no await are made here without making one.
        if ctx.lease_lost:
            raise LeaseLostError(
                f"run {ctx.run_id!r} was taken over by another owner; "
                f"task {self.name!r} was not started here"
            )
        loop = asyncio.get_running_loop()
        loaded = ctx.loaded_steps
        if loaded is None:
            found, value = await ctx.completed_step(sid)  # reads the store as the engine
        else:
            found = sid in loaded
            value = loaded[sid] if found else None
        if (line := line_to_wait_in(loop)) is not None:
            await line.wait()  # a step that never waits must not keep the loop
        if found:
            log.debug("replayed %s (step %s, run %s)", self.name, sid, ctx.run_id)
            return self._rebuild(value, ctx, sid)
        ctx.raise_if_cancelled()
        if ctx.lease_needs_confirming():
            await ctx.confirm_lease_if_stale()  # a frozen owner must not run another body
        # Tasks the engine and the store create from here on are not the run's branches
        # (an inlined engine_section); the body gets a scope of its own.
        scope = ctx.scope_here(asyncio.current_task(loop))
        spawn = None
        if scope is not None:
            spawn, scope.spawn = scope.spawn, None
        try:
            attempt = (await ctx.attempts_before(sid) if ctx.recovered else 0) + 1
            if attempt > self.retries + 1:
                await ctx.record_attempt(sid, 0, "retries exhausted")
                raise RetriesExhaustedError(
                    f"task {self.name!r} (step {sid!r}) in run {ctx.run_id!r} used all its "
                    f"{self.retries + 1} attempts before the process restarted"
                )
            while True:
                if scope is not None:
                    scope.enter_step_body(sid)
                try:
                    result = await self.fn(*args, **kwargs)
                except BaseException as exc:
                    if scope is not None:
                        ctx.leave_step_body(scope, failed=True)
                    if not isinstance(exc, Exception) or not await self._retry_after(
                        ctx, sid, attempt, exc
                    ):
                        raise
                    attempt += 1
                    continue
                if scope is not None:
                    ctx.leave_step_body(scope, failed=False)
                value = self._encode(result, ctx, sid)
                fault_point("before-checkpoint", sid)
                await ctx.record_step(sid, value, attempt)
                fault_point("after-checkpoint", sid)
                log.debug("completed %s (step %s, run %s)", self.name, sid, ctx.run_id)
                return result
        finally:
            if scope is not None:
                scope.spawn = spawn

    async def _retry_after(self, ctx: RunContext, sid: str, attempt: int, exc: Exception) -> bool:
        """After attempt ``attempt`` failed with ``exc``: False if that failure is final,
        else True once the backoff has passed (the attempt is on record meanwhile)."""
        if attempt > self.retries or not self._retryable(exc):
            if attempt > 1:  # the failure is final: a resumed run starts afresh
                await ctx.record_attempt(sid, 0, repr(exc))
            return False
        delay = self.backoff(attempt - 1)
        log.warning(
            "task %s (step %s, run %s) failed on attempt %d/%d: %r; retrying in %.3gs",
            self.name, sid, ctx.run_id, attempt, self.retries + 1, exc, delay,
        )  # fmt: skip
        # Kept in the store, so a restart during the backoff does not reset it.
        await ctx.record_attempt(sid, attempt, repr(exc))
        await ctx.pause_until(time.time() + delay)  # a cancellation cuts it short
        return True

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, DurableError):  # the engine's own verdicts are final
            return False
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.no_retry_on)

    def _annotation(self) -> Any:
        """The return annotation, resolved on first use (forward references allowed)."""
        if self._return_type is _UNRESOLVED:
            self._return_type = return_annotation(self.fn)
            self._encoder = encoder(self._return_type)
        return self._return_type

    def _encode(self, result: R, ctx: RunContext, sid: str) -> Any:
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

    def _rebuild(self, value: Any, ctx: RunContext, sid: str) -> R:
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


async def _raising(exc: BaseException) -> Any:
    raise exc
