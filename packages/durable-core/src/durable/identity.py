"""Which run a call is: the workflow it belongs to and the inputs it was called with.

A run id on record belongs to one workflow, called with one set of inputs. A call
that names the run id from another workflow, or with other inputs, is refused before
anything runs or is written, so it can never be handed another call's result.

Two calls have the same inputs when their arguments, bound to the function's
parameters with defaults filled in, have the same JSON form (``to_json``): ``f(1)``,
``f(a=1)`` and ``f(1, b=2)`` (when ``b`` defaults to 2) are one call; ``f(1)`` and
``f("1")`` are not. An argument with no JSON form counts by its type only.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from .errors import InputsConflictError, RunConflictError
from .records import RunRecord
from .serialization import Unserializable, canonical_json, to_json


def input_digest(bound: inspect.BoundArguments) -> str:
    """A digest of a call's arguments with defaults filled in (``bound`` is not changed)."""
    full = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    full.apply_defaults()
    text = canonical_json({name: _digestible(value) for name, value in full.arguments.items()})
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _digestible(value: Any) -> Any:
    try:
        return to_json(value)
    except Unserializable:
        # No stable form to compare (a client, a lock ...): its type stands for it.
        kind: type[object] = type(value)  # pyright: ignore[reportUnknownVariableType]
        return {"$durable.unstorable": f"{kind.__module__}.{kind.__qualname__}"}


def check_identity(
    record: RunRecord, workflow: str, digest: str | None, inputs: Any, *, what: str
) -> None:
    """Raise when the run on record is another workflow's, or was called with other inputs.

    ``what`` names the caller in the message (``"this call"``, ``"wf.resume()"`` ...).
    """
    if record.workflow != workflow:
        raise RunConflictError(
            f"run {record.run_id!r} belongs to workflow {record.workflow!r}, but {what} is "
            f"for workflow {workflow!r}; nothing was run. Run ids are shared by every "
            "workflow on a store: give the workflows id templates that differ (a prefix)"
        )
    if digest is None or record.input_digest in (None, digest):
        return
    raise InputsConflictError(
        f"run {record.run_id!r} of workflow {workflow!r} was started with other inputs "
        f"than {what} gives ({_differences(record.inputs, inputs)}); nothing was run. "
        "A run id stands for one call: use a new run id for new inputs, or "
        f"wf.resume({record.run_id!r}) to go on with the recorded ones"
    )


def _differences(recorded: Any, given: Any) -> str:
    """Which parameters differ, as far as the stored inputs tell."""
    if not isinstance(recorded, dict) or not isinstance(given, dict):
        return "the recorded inputs could not be stored as JSON, so not which parameters"
    old: dict[str, Any] = recorded  # pyright: ignore[reportUnknownVariableType]
    new: dict[str, Any] = given  # pyright: ignore[reportUnknownVariableType]
    names = [
        name
        for name in {**old, **new}
        if name not in old
        or name not in new
        or canonical_json(old[name]) != canonical_json(new[name])
    ]
    if not names:
        return "the same arguments, but a default value of the function changed"
    return "parameters that differ: " + ", ".join(names)
