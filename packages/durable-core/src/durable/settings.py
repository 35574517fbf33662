"""Checks of numeric settings, so that a bad one is refused where it is given.

A lease of ``nan`` seconds once made the heartbeat (every ``lease_seconds / 3``) spin
at full CPU; a retry count of ``-1`` or a backoff of ``nan`` fails much later, far from
the line that set it. Every check here raises :class:`SettingError` (a ``ValueError``)
whose message names the setting, the value given and what is allowed; a value of the
wrong type raises :class:`SettingTypeError`, which is a ``TypeError`` too. ``bool`` is
never taken for a number.

>>> positive_seconds("lease_seconds", 30)
30.0
>>> non_negative_int("retries", -1)
Traceback (most recent call last):
  ...
durable.settings.SettingError: retries must be an int of 0 or more, got -1
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, TypeVar

from .errors import DurableError

T = TypeVar("T")


class SettingError(DurableError, ValueError):
    """A setting was given a value outside its allowed range."""


class SettingTypeError(SettingError, TypeError):
    """A setting was given a value of the wrong type (``bool`` is not a number here)."""


def _number(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingTypeError(f"{name} must be {allowed}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingTypeError(f"{name} must be {allowed}, got {value!r}") from None


def positive_seconds(name: str, value: Any) -> float:
    """``value`` as float when it is a finite number of seconds above 0, else an error."""
    allowed = "a finite number of seconds above 0 (0 < value < inf)"
    seconds = _number(name, value, allowed)
    if not (0 < seconds < math.inf):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return seconds


#: The shortest and longest lease a Workflow takes. Below 0.1 s the heartbeat (every
#: third of the lease) is a busy loop of store writes and any pause loses the run; above
#: a year a run whose owner vanished elsewhere is as good as never taken over.
SHORTEST_LEASE = 0.1
LONGEST_LEASE = 365 * 24 * 3600.0


def lease_seconds(name: str, value: Any) -> float:
    """``value`` as float when it is a lease of SHORTEST_LEASE to LONGEST_LEASE seconds."""
    allowed = f"a number of seconds from {SHORTEST_LEASE:g} to {LONGEST_LEASE:g}"
    seconds = _number(name, value, allowed)
    if not (SHORTEST_LEASE <= seconds <= LONGEST_LEASE):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return seconds


def non_negative_seconds(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """``value`` as float when it is 0 or more (and finite, unless ``allow_inf``)."""
    allowed = (
        "a number of seconds of 0 or more (inf allowed), not nan"
        if allow_inf
        else "a finite number of seconds of 0 or more (0 <= value < inf)"
    )
    seconds = _number(name, value, allowed)
    top_ok = seconds <= math.inf if allow_inf else seconds < math.inf
    if not (seconds >= 0 and top_ok):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return seconds


def non_negative_number(name: str, value: Any) -> float:
    """``value`` as float when it is a finite number of 0 or more (a factor, a base)."""
    allowed = "a finite number of 0 or more (0 <= value < inf)"
    number = _number(name, value, allowed)
    if not (0 <= number < math.inf):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return number


def finite_seconds(name: str, value: Any) -> float:
    """``value`` as float when it is a finite number (below 0 means: already due)."""
    allowed = "a finite number of seconds (-inf < value < inf; 0 or less: already due)"
    seconds = _number(name, value, allowed)
    if not math.isfinite(seconds):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return seconds


def fraction(name: str, value: Any) -> float:
    """``value`` as float when it is between 0 and 1, both included."""
    allowed = "a fraction between 0 and 1 (0 <= value <= 1)"
    number = _number(name, value, allowed)
    if not (0 <= number <= 1):
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return number


def non_negative_int(name: str, value: Any) -> int:
    """``value`` when it is an int of 0 or more (not a bool, not a float)."""
    return _int(name, value, 0)


def positive_int(name: str, value: Any) -> int:
    """``value`` when it is an int of 1 or more (not a bool, not a float)."""
    return _int(name, value, 1)


def _int(name: str, value: Any, minimum: int) -> int:
    allowed = f"an int of {minimum} or more"
    if isinstance(value, bool):
        raise SettingTypeError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = operator.index(value)  # int, or an integer type like numpy's
    except TypeError:
        raise SettingTypeError(f"{name} must be {allowed}, got {value!r}") from None
    if number < minimum:
        raise SettingError(f"{name} must be {allowed}, got {value!r}")
    return number


def callable_setting(name: str, value: T) -> T:
    """``value`` when it can be called (a backoff strategy, a factory ...)."""
    if not callable(value):
        raise SettingTypeError(f"{name} must be callable, got {value!r}")
    return value


__all__ = [
    "SettingError",
    "SettingTypeError",
    "callable_setting",
    "finite_seconds",
    "fraction",
    "non_negative_int",
    "non_negative_number",
    "non_negative_seconds",
    "positive_int",
    "positive_seconds",
]
