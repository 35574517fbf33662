"""Backoff strategies: how long to wait before each retry of a failed task.

A strategy is any callable that maps the retry index (0 for the first retry) to a
number of seconds, so a plain ``lambda i: 0.5`` works too. Each built-in strategy
takes ``jitter``: a fraction by which every wait is randomly stretched or shrunk
(``jitter=0.1``: within ±10 %), so that many runs failing together do not retry in
lockstep.

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

BackoffStrategy = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class exponential:  # noqa: N801 - lower case to read like the function the seed exported
    """Wait ``base ** (retry + 1)`` seconds, capped at ``max``: 2, 4, 8, 16, 32 ..."""

    base: float = 2
    max: float = 60
    jitter: float = 0

    def __call__(self, retry: int) -> float:
        return _jittered(min(self.base ** (retry + 1), self.max), self.jitter)


@dataclass(frozen=True, slots=True)
class linear:  # noqa: N801
    """Wait ``start``, then ``step`` seconds longer each retry: 2, 5, 8 ..."""

    start: float = 1
    step: float = 1
    jitter: float = 0

    def __call__(self, retry: int) -> float:
        return _jittered(self.start + self.step * retry, self.jitter)


@dataclass(frozen=True, slots=True)
class constant:  # noqa: N801
    """Wait the same number of seconds before every retry."""

    seconds: float
    jitter: float = 0

    def __call__(self, retry: int) -> float:
        return _jittered(self.seconds, self.jitter)


def _jittered(seconds: float, jitter: float) -> float:
    if not jitter:
        return seconds
    return max(0.0, seconds * random.uniform(1 - jitter, 1 + jitter))


__all__ = ["BackoffStrategy", "constant", "exponential", "linear"]
