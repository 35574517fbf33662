"""Backoff strategies map the retry number (0 for the first retry) to seconds."""

import pytest

from durable.backoff import BackoffStrategy, constant, exponential, linear


def test_exponential_documented_values() -> None:
    strategy = exponential(base=2, max=60)
    assert [strategy(i) for i in range(5)] == [2, 4, 8, 16, 32]


def test_exponential_caps_at_max() -> None:
    strategy = exponential(base=2, max=60)
    assert [strategy(i) for i in range(5, 9)] == [60, 60, 60, 60]
    assert exponential(base=3, max=10)(1) == 9
    assert exponential(base=3, max=10)(2) == 10


def test_exponential_defaults_are_the_documented_ones() -> None:
    assert [exponential()(i) for i in range(6)] == [2, 4, 8, 16, 32, 60]


def test_linear_documented_values() -> None:
    strategy = linear(start=2, step=3)
    assert [strategy(i) for i in range(3)] == [2, 5, 8]


def test_constant_waits_the_same_every_time() -> None:
    strategy = constant(5)
    assert [strategy(i) for i in range(4)] == [5, 5, 5, 5]


@pytest.mark.parametrize("strategy", [exponential(), linear(), constant(0)])
def test_strategies_are_backoff_strategies(strategy: BackoffStrategy) -> None:
    assert callable(strategy)
    assert strategy(0) >= 0


def test_strategies_are_comparable_values() -> None:
    assert exponential(base=2, max=60) == exponential()
    assert constant(5) == constant(5)
    assert linear(1, 2) != linear(2, 1)
