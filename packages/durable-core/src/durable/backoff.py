"""Backoff strategies: how long to wait before each retry of a failed task.

A strategy is any callable that maps the retry index (0 for the first retry) to a
number of seconds, so a plain ``lambda i: 0.5`` works too. Each built-in strategy
takes ``jitter``: a fraction by which every wait is randomly stretched or shrunk
(``jitter=0.1``: within ±10 %), so that many runs failing together do not retry in
lockstep.

Bad parameters are refused when the strategy is made (:class:`~durable.settings.SettingError`):
every delay and ``base`` must be a finite number of 0 or more (``max`` may be ``inf``:
no cap) and ``jitter`` a fraction between 0 and 1.

>>> [exponential(base=2, max=60)(i) for i in range(5)]
[2, 4, 8, 16, 32]
>>> [linear(start=2, step=3)(i) for i in range(3)]
[2, 5, 8]
>>> constant(5)(7)
5
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .settings import fraction, non_negative_number, non_negative_seconds

BackoffStrategy = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class exponential:  # noqa: N801 - lower case to read like the function the seed exported
    """Wait ``base ** (retry + 1)`` seconds, capped at ``max``: 2, 4, 8, 16, 32 ..."""

    base: float = 2
    max: float = 60
    jitter: float = 0

    def __post_init__(self) -> None:
        non_negative_number("exponential(base=...)", self.base)
        non_negative_seconds("exponential(max=...)", self.max, allow_inf=True)
        fraction("exponential(jitter=...)", self.jitter)

    def __call__(self, retry: int) -> float:
        try:
            wait = self.base ** (retry + 1)
        except OverflowError:  # a float base after many retries: past any cap
            wait = self.max
        return _jittered(min(wait, self.max), self.jitter)


@dataclass(frozen=True, slots=True)
class linear:  # noqa: N801
    """Wait ``start``, then ``step`` seconds longer each retry: 2, 5, 8 ..."""

    start: float = 1
    step: float = 1
    jitter: float = 0

    def __post_init__(self) -> None:
        non_negative_seconds("linear(start=...)", self.start)
        non_negative_seconds("linear(step=...)", self.step)
        fraction("linear(jitter=...)", self.jitter)

    def __call__(self, retry: int) -> float:
        return _jittered(self.start + self.step * retry, self.jitter)


@dataclass(frozen=True, slots=True)
class constant:  # noqa: N801
    """Wait the same number of seconds before every retry."""

    seconds: float
    jitter: float = 0

    def __post_init__(self) -> None:
        non_negative_seconds("constant(seconds=...)", self.seconds)
        fraction("constant(jitter=...)", self.jitter)

    def __call__(self, retry: int) -> float:
        return _jittered(self.seconds, self.jitter)


def _jittered(seconds: float, jitter: float) -> float:
    if not jitter:
        return seconds
    return max(0.0, seconds * random.uniform(1 - jitter, 1 + jitter))


__all__ = ["BackoffStrategy", "constant", "exponential", "linear"]
