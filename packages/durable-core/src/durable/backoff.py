"""Backoff strategies: how long to wait before each retry of a failed task.

A strategy is any callable that maps the retry index (0 for the first retry) to a
number of seconds, so a plain ``lambda i: 0.5`` works too.

>>> [exponential(base=2, max=60)(i) for i in range(5)]
[2, 4, 8, 16, 32]
>>> [linear(start=2, step=3)(i) for i in range(3)]
[2, 5, 8]
>>> constant(5)(7)
5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BackoffStrategy = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class exponential:  # noqa: N801 - lower case to read like the function the seed exported
    """Wait ``base ** (retry + 1)`` seconds, capped at ``max``: 2, 4, 8, 16, 32 ..."""

    base: float = 2
    max: float = 60

    def __call__(self, retry: int) -> float:
        return min(self.base ** (retry + 1), self.max)


@dataclass(frozen=True, slots=True)
class linear:  # noqa: N801
    """Wait ``start``, then ``step`` seconds longer each retry: 2, 5, 8 ..."""

    start: float = 1
    step: float = 1

    def __call__(self, retry: int) -> float:
        return self.start + self.step * retry


@dataclass(frozen=True, slots=True)
class constant:  # noqa: N801
    """Wait the same number of seconds before every retry."""

    seconds: float

    def __call__(self, retry: int) -> float:
        return self.seconds


__all__ = ["BackoffStrategy", "constant", "exponential", "linear"]
