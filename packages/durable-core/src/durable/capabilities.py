"""What a store declares it can do, as the engine reads it.

``Store.records_runs`` and ``Store.fences_writes`` are declared by each store class; the
engine checks the declaration against the methods it will call (a subclass written
before fencing may override a write without ``owner=``) and says once per store class,
with a :class:`~durable.errors.StoreGuaranteeWarning`, what the store cannot promise.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

from .errors import StoreGuaranteeWarning
from .store import Store

_warned: set[type[Store]] = set()


@functools.cache
def _fencing_of(kind: type[Store]) -> bool:
    """A store class fences when it says so and its write methods take ``owner=``: a
    subclass written before 0.4 may override ``checkpoint_step`` without it."""
    return kind.fences_writes and all(
        _takes_owner(getattr(kind, name)) for name in ("checkpoint_step", "record_attempt")
    )


def _takes_owner(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: trust the declaration
        return True
    return any(p.name == "owner" or p.kind is p.VAR_KEYWORD for p in parameters)


def fences_writes(store: Store) -> bool:
    """Whether the engine passes ``owner=`` to ``store``'s writes (see Store.fences_writes)."""
    return _fencing_of(type(store))


def warn_about_missing_guarantees(store: Store) -> None:
    """Say once per store class what a store that declares less cannot promise."""
    kind = type(store)
    if kind in _warned or (kind.records_runs and _fencing_of(kind)):
        return
    _warned.add(kind)
    if kind.fences_writes and kind.records_runs:
        lacks = (
            "declares fences_writes, but overrides checkpoint_step or record_attempt "
            "without the owner= keyword, so its writes are not fenced: an owner paused "
            "past its lease can overwrite the checkpoints of the process that took its run "
            "over; add `*, owner: str | None = None` and pass it on"
        )
    elif not kind.records_runs:
        lacks = (
            "keeps no run records: runs are not leased, so two processes may execute one "
            "run at once; a completed run's body runs again (its steps replayed); get_run, "
            "list_runs, cancel, resume and recover are not available"
        )
    else:
        lacks = (
            "does not fence writes (fences_writes): an owner paused past its lease can "
            "overwrite the checkpoints of the process that took its run over"
        )
    warnings.warn(f"{kind.__qualname__} {lacks}", StoreGuaranteeWarning, stacklevel=2)
