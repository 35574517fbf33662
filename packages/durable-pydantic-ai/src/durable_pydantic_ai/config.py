"""Retries and backoff of an agent's checkpointed steps, and which errors never retry."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic_ai.exceptions import ModelHTTPError, UnexpectedModelBehavior, UserError

from durable import SerializationError
from durable.backoff import BackoffStrategy, exponential

#: HTTP statuses below 500 that a later attempt can still fix: a timeout and rate limiting.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})

#: Errors a retry cannot fix: a misconfigured agent, a model that broke the protocol, a value
#: that has no JSON form. Subclasses count too.
NON_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    UnexpectedModelBehavior,
    SerializationError,
)


@dataclass(slots=True)
class TaskConfig:
    """Retries and backoff of one kind of step (model requests or tool calls).

    ``None`` keeps the default of that kind: model requests retry 3 times with
    ``exponential(base=2, max=60)``, tool calls 2 times with ``exponential(base=2, max=30)``.
    ``non_retryable`` names more exception classes that fail the step at once, on top of
    :data:`NON_RETRYABLE_ERRORS` and ``ModelHTTPError`` with a 4xx status other than 408
    and 429, which never retry.

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

    def merged_over(self, default: ResolvedTaskConfig) -> ResolvedTaskConfig:
        """This config with its unset fields taken from ``default``."""
        return ResolvedTaskConfig(
            retries=default.retries if self.retries is None else self.retries,
            backoff=default.backoff if self.backoff is None else self.backoff,
            non_retryable=(*default.non_retryable, *self.non_retryable),
        )


@dataclass(frozen=True, slots=True)
class ResolvedTaskConfig:
    """A :class:`TaskConfig` with every field decided: what a step actually runs with."""

    retries: int
    backoff: BackoffStrategy
    non_retryable: tuple[type[BaseException], ...] = ()

    def is_retryable(self, error: BaseException) -> bool:
        """Whether another attempt could succeed where this one raised ``error``."""
        if not isinstance(error, Exception):
            return False  # cancellation, KeyboardInterrupt, SystemExit: never retried
        if isinstance(error, NON_RETRYABLE_ERRORS + self.non_retryable):
            return False
        if isinstance(error, ModelHTTPError):
            status = error.status_code
            return not (400 <= status < 500) or status in RETRYABLE_CLIENT_STATUSES
        return True


DEFAULT_MODEL_CONFIG = ResolvedTaskConfig(retries=3, backoff=exponential(base=2, max=60))
DEFAULT_TOOL_CONFIG = ResolvedTaskConfig(retries=2, backoff=exponential(base=2, max=30))
#: Event-stream handler steps deliver events to your code: a failure there is not transient.
DEFAULT_EVENT_CONFIG = ResolvedTaskConfig(retries=0, backoff=exponential(base=2, max=30))


def resolve(config: TaskConfig | None, default: ResolvedTaskConfig) -> ResolvedTaskConfig:
    return default if config is None else config.merged_over(default)
