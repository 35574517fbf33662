"""The step engine: one checkpointed unit of work inside a run.

Every step of a run goes through here: ``@wf.task`` calls, and the units of integrations
(an agent's model requests and tool calls). :func:`run_step` is the public entry point::

    from durable.steps import RetryPolicy, run_step

    policy = RetryPolicy(retries=3, backoff=exponential(base=2, max=30), timeout=10)
    payload = await run_step(run, "fetch:orders", fetch_orders_as_json, policy)

A step already checkpointed for the run is returned as stored, without running its body.
Else the body runs, up to ``policy.retries + 1`` times: each failed attempt is on record in
the store before its backoff, so a process restarted during the backoff goes on counting (no
fresh budget), the backoff is cut short by ``wf.cancel`` (the run ends cancelled) or a lost
lease, and the ``before-checkpoint`` / ``after-checkpoint`` fault points
(:mod:`durable.faults`) surround the checkpoint. Durable's own errors, cancellation,
``KeyboardInterrupt`` and ``SystemExit`` are never retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .backoff import BackoffStrategy
from .context import RunContext
from .errors import DurableError, LeaseLostError, RetriesExhaustedError
from .faults import fault_point
from .settings import SettingError, callable_setting, non_negative_int
from .turns import line_to_wait_in

log = logging.getLogger("durable")
_DEBUG = logging.DEBUG


def _no_wait(retry: int) -> float:
    return 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step retries: how often, how long it waits, which errors, and a time limit.

    - ``retries``: attempts after the first (0: one attempt only).
    - ``backoff``: seconds to wait before retry ``n`` (0 for the first), see
      :mod:`durable.backoff`.
    - ``retryable``: whether an attempt that raised this exception may be retried (None:
      every ``Exception``). Durable's own errors are never retried, whatever it says.
    - ``retry_after``: a hint from the error itself (a rate limit's ``Retry-After``): the
      seconds to wait before the next attempt instead of the backoff's, or None to use the
      backoff. It is capped by ``max_backoff``, else by the backoff's ``max`` when it has
      one (:class:`~durable.backoff.exponential`), else used as is.
    - ``timeout``: seconds one attempt may take; an attempt that takes longer is cancelled
      and fails with :class:`TimeoutError` (retried like any other error). None: no limit.
    """

    retries: int = 0
    backoff: BackoffStrategy = _no_wait
    retryable: Callable[[Exception], bool] | None = None
    retry_after: Callable[[Exception], float | None] | None = None
    timeout: float | None = None
    max_backoff: float | None = None

    def __post_init__(self) -> None:
        non_negative_int("RetryPolicy(retries=...)", self.retries)
        callable_setting("RetryPolicy(backoff=...)", self.backoff)
        for field_name in ("timeout", "max_backoff"):
            value: object = getattr(self, field_name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise SettingError(
                    f"RetryPolicy({field_name}=...) must be a finite number of seconds "
                    f"above 0, or None; got {value!r}"
                )

    def may_retry(self, exc: Exception) -> bool:
        """Whether an attempt that raised ``exc`` may be retried (retries left aside)."""
        if isinstance(exc, DurableError):  # the engine's own verdicts are final
            return False
        return self.retryable is None or self.retryable(exc)

    def delay(self, retry: int, exc: Exception) -> float:
        """Seconds to wait before retry ``retry`` (0 for the first) after ``exc``."""
        hint = None if self.retry_after is None else self.retry_after(exc)
        if hint is None:
            return self.backoff(retry)
        cap = self.max_backoff
        if cap is None:
            cap = getattr(self.backoff, "max", None)
        hint = max(0.0, float(hint))
        if isinstance(cap, int | float) and not isinstance(cap, bool):
            return min(hint, float(cap))
        return hint


class StepRunner:
    """Runs steps under one name and one :class:`RetryPolicy`.

    :meth:`execute` is the one coroutine of a step. Subclasses may override
    :meth:`encode` (the body's result to the JSON value stored) and :meth:`rebuild`
    (the stored value back to a result); by default both pass the value through, so a
    body returns JSON data.
    """

    #: What the step is called in messages: "task 'fetch'", "step 'agent.model_request'".
    kind = "step"

    def __init__(self, name: str, policy: RetryPolicy) -> None:
        self.name = name
        self.policy = policy

    def encode(self, result: Any, ctx: RunContext, sid: str) -> Any:
        return result

    def rebuild(self, value: Any, ctx: RunContext, sid: str) -> Any:
        return value

    def _note_replayed(self, ctx: RunContext, sid: str) -> None:
        # Constant formats: the README's logging table lists each (tests/cli checks it).
        if self.kind == "step" and self.name == sid:
            log.debug("replayed step %s (run %s)", sid, ctx.run_id)
        else:
            log.debug("replayed %s (step %s, run %s)", self.name, sid, ctx.run_id)

    def _note_completed(self, ctx: RunContext, sid: str) -> None:
        if self.kind == "step" and self.name == sid:
            log.debug("completed step %s (run %s)", sid, ctx.run_id)
        else:
            log.debug("completed %s (step %s, run %s)", self.name, sid, ctx.run_id)

    def _what(self, sid: str) -> str:
        if self.kind == "step" and self.name == sid:
            return f"step {sid!r}"
        return f"{self.kind} {self.name!r} (step {sid!r})"

    async def execute(
        self,
        ctx: RunContext,
        sid: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """The stored result of step ``sid`` of ``ctx``'s run, or ``fn(*args, **kwargs)``'s,
        checkpointed before it is returned."""
        # Every step passes here, and every suspension of its body passes through each
        # coroutine between the workflow and the body: so this is one coroutine, and the
        # context's checks that need no await are made here without making one.
        if ctx.lease_lost:
            raise LeaseLostError(
                f"run {ctx.run_id!r} was taken over by another owner; "
                f"{self.kind} {self.name!r} was not started here"
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
            if log.isEnabledFor(_DEBUG):
                self._note_replayed(ctx, sid)
            return self.rebuild(value, ctx, sid)
        ctx.raise_if_cancelled()
        if ctx.lease_needs_confirming():
            await ctx.confirm_lease_if_stale()  # a frozen owner must not run another body
        if kwargs is None:
            kwargs = {}
        policy = self.policy
        timeout = policy.timeout
        # Tasks the engine and the store create from here on are not the run's branches
        # (an inlined engine_section); the body gets a scope of its own.
        scope = ctx.scope_here(asyncio.current_task(loop))
        spawn = None
        if scope is not None:
            spawn, scope.spawn = scope.spawn, None
        try:
            attempt = (await ctx.attempts_before(sid) if ctx.recovered else 0) + 1
            if attempt > policy.retries + 1:
                await ctx.record_attempt(sid, 0, "retries exhausted")
                raise RetriesExhaustedError(
                    f"{self._what(sid)} in run {ctx.run_id!r} used all its "
                    f"{policy.retries + 1} attempts before the process restarted"
                )
            while True:
                if scope is not None:
                    scope.enter_step_body(sid)
                try:
                    if timeout is None:
                        result = await fn(*args, **kwargs)
                    else:
                        async with asyncio.timeout(timeout):
                            result = await fn(*args, **kwargs)
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
                value = self.encode(result, ctx, sid)
                fault_point("before-checkpoint", sid)
                await ctx.record_step(sid, value, attempt)
                fault_point("after-checkpoint", sid)
                if log.isEnabledFor(_DEBUG):
                    self._note_completed(ctx, sid)
                return result
        finally:
            if scope is not None:
                scope.spawn = spawn

    async def _retry_after(self, ctx: RunContext, sid: str, attempt: int, exc: Exception) -> bool:
        """After attempt ``attempt`` failed with ``exc``: False if that failure is final,
        else True once the backoff has passed (the attempt is on record meanwhile)."""
        policy = self.policy
        if attempt > policy.retries or not policy.may_retry(exc):
            if attempt > 1:  # the failure is final: a resumed run starts afresh
                await ctx.record_attempt(sid, 0, repr(exc))
            return False
        delay = policy.delay(attempt - 1, exc)
        tries = policy.retries + 1
        if self.kind == "step" and self.name == sid:
            log.warning(
                "step %s (run %s) failed on attempt %d/%d: %r; retrying in %.3gs",
                sid, ctx.run_id, attempt, tries, exc, delay,
            )  # fmt: skip
        else:
            log.warning(
                "%s %s (step %s, run %s) failed on attempt %d/%d: %r; retrying in %.3gs",
                self.kind, self.name, sid, ctx.run_id, attempt, tries, exc, delay,
            )  # fmt: skip
        # Kept in the store, so a restart during the backoff does not reset it.
        await ctx.record_attempt(sid, attempt, repr(exc))
        await ctx.pause_until(time.time() + delay)  # a cancellation cuts it short
        return True

    def __repr__(self) -> str:
        return f"<durable {self.kind} {self.name!r} retries={self.policy.retries}>"


def run_step(
    run: RunContext,
    step_id: str,
    body: Callable[[], Awaitable[Any]],
    policy: RetryPolicy | None = None,
    *,
    name: str | None = None,
) -> Coroutine[Any, Any, Any]:
    """Run ``body`` as step ``step_id`` of ``run`` (see the module docs); await the result.

    ``body`` takes no arguments and returns JSON data, which is stored as the step's
    result and returned as stored on replay. ``step_id`` is the caller's to choose: take
    it with ``run.next_step_id(name)`` (call order) or ``run.take_step_id(...)``; it must
    be unique in the run. ``policy`` defaults to a single attempt with no time limit;
    ``name`` names the step in logs and errors (default: the step id).
    """
    return StepRunner(step_id if name is None else name, policy or _ONCE).execute(
        run, step_id, body
    )


_ONCE = RetryPolicy()

__all__ = ["RetryPolicy", "StepRunner", "run_step"]
