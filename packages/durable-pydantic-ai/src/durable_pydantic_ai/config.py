"""Retries and backoff of an agent's checkpointed steps, and which errors never retry."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import exceptions as _exceptions
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    UnexpectedModelBehavior,
    UserError,
)

from durable import SerializationError
from durable.backoff import BackoffStrategy, exponential
from durable.steps import RetryPolicy

#: HTTP statuses below 500 that a later attempt can still fix: a timeout and rate limiting.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


def _pydantic_ai_errors(*names: str) -> tuple[type[BaseException], ...]:
    """pydantic-ai's error classes of these names that this version has (its error
    categories, ``ModelQuotaExceededError`` ..., are newer than 2.36)."""
    found: list[type[BaseException]] = []
    for name in names:
        error: object = getattr(_exceptions, name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


#: Errors a retry cannot fix, whatever their HTTP status: a misconfigured agent, a model that
#: broke the protocol (``ContentFilterError`` is one), a value that has no JSON form, an
#: exhausted quota or billing (``ModelQuotaExceededError``, even as a 429), and a request the
#: provider rejected as such (``ModelRequestRejectedError``: invalid request, authentication,
#: model not found, context window exceeded). Subclasses count too.
NON_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    UnexpectedModelBehavior,
    SerializationError,
    *_pydantic_ai_errors("ModelQuotaExceededError", "ModelRequestRejectedError"),
)


@dataclass(slots=True)
class TaskConfig:
    """Retries and backoff of one kind of step (model requests or tool calls).

    ``None`` keeps the default of that kind: model requests retry 3 times with
    ``exponential(base=2, max=60)``, tool calls 2 times with ``exponential(base=2, max=30)``.
    ``non_retryable`` names more exception classes that fail the step at once, on top of
    :data:`NON_RETRYABLE_ERRORS` and ``ModelHTTPError`` with a 4xx status other than 408
    and 429, which never retry. ``timeout`` limits each attempt to that many seconds (an
    attempt that takes longer fails with ``TimeoutError``, and is retried); None: no limit.
    A model error that says how long to wait (``ModelAPIError.retry_after``, from a
    ``Retry-After`` header) sets the next wait, capped by the backoff's ``max``.

        DurableAgent(
            agent,
            wf,
            model_task_config=TaskConfig(retries=5, backoff=exponential(base=2, max=120)),
            tool_task_config=TaskConfig(retries=1, non_retryable=(PermissionError,)),
        )
    """

    retries: int | None = None
    backoff: BackoffStrategy | None = None
    non_retryable: tuple[type[BaseException], ...] = field(default=(), kw_only=True)
    timeout: float | None = field(default=None, kw_only=True)

    def merged_over(self, default: ResolvedTaskConfig) -> ResolvedTaskConfig:
        """This config with its unset fields taken from ``default``."""
        return ResolvedTaskConfig(
            retries=default.retries if self.retries is None else self.retries,
            backoff=default.backoff if self.backoff is None else self.backoff,
            non_retryable=(*default.non_retryable, *self.non_retryable),
            timeout=default.timeout if self.timeout is None else self.timeout,
        )


@dataclass(frozen=True, slots=True)
class ResolvedTaskConfig:
    """A :class:`TaskConfig` with every field decided: what a step actually runs with."""

    retries: int
    backoff: BackoffStrategy
    non_retryable: tuple[type[BaseException], ...] = ()
    timeout: float | None = None
    #: What core's step engine runs the step with (:func:`durable.steps.run_step`).
    policy: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policy = RetryPolicy(
            retries=self.retries,
            backoff=self.backoff,
            # Not a bound method: the config and its policy would make a reference cycle.
            retryable=functools.partial(_is_retryable, self.non_retryable),
            retry_after=_retry_after,
            timeout=self.timeout,
        )
        object.__setattr__(self, "policy", policy)

    def is_retryable(self, error: BaseException) -> bool:
        """Whether another attempt could succeed where this one raised ``error``."""
        return _is_retryable(self.non_retryable, error)


def _is_retryable(non_retryable: tuple[type[BaseException], ...], error: BaseException) -> bool:
    if not isinstance(error, Exception):
        return False  # cancellation, KeyboardInterrupt, SystemExit: never retried
    if isinstance(error, NON_RETRYABLE_ERRORS + non_retryable):
        return False
    if isinstance(error, ModelHTTPError):
        status = error.status_code
        return not (400 <= status < 500) or status in RETRYABLE_CLIENT_STATUSES
    return True


def _retry_after(error: BaseException) -> float | None:
    """The wait a model error asks for (its ``Retry-After``), if it says."""
    if isinstance(error, ModelAPIError):
        wait: Any = getattr(error, "retry_after", None)
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            return float(wait)
    return None


DEFAULT_MODEL_CONFIG = ResolvedTaskConfig(retries=3, backoff=exponential(base=2, max=60))
DEFAULT_TOOL_CONFIG = ResolvedTaskConfig(retries=2, backoff=exponential(base=2, max=30))
#: Event-stream handler steps deliver events to your code: a failure there is not transient.
DEFAULT_EVENT_CONFIG = ResolvedTaskConfig(retries=0, backoff=exponential(base=2, max=30))


def resolve(config: TaskConfig | None, default: ResolvedTaskConfig) -> ResolvedTaskConfig:
    return default if config is None else config.merged_over(default)
