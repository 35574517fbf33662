"""Which run a call is: the workflow it belongs to and the inputs it was called with.

A run id on record belongs to one workflow, called with one set of inputs. A call
that names the run id from another workflow, or with other inputs, is refused before
anything runs or is written, so it can never be handed another call's result.

Two calls have the same inputs when their arguments, bound to the function's
parameters with defaults filled in, have the same JSON form (``to_json``): ``f(1)``,
``f(a=1)`` and ``f(1, b=2)`` (when ``b`` defaults to 2) are one call; ``f(1)`` and
``f("1")`` are not. The parts of an argument that have no JSON form (a client in a
config object) count by their type only; the rest of it counts as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InputsConflictError, RunConflictError, SerializationError
from .records import RunRecord
from .serialization import Unserializable, canonical_json, to_json


def call_inputs(bound: inspect.BoundArguments) -> tuple[Any, str]:
    """A call's inputs for its run record, and their digest, in one pass.

    ``bound`` gets its defaults applied. The inputs are the arguments as JSON data
    (None when a given argument has none), defaults included where they have a JSON
    form, so a resume goes on with the values the run started with even after a deploy
    changed them; a default with no JSON form (a client) is left to the resuming code.
    """
    given = set(bound.arguments)
    bound.apply_defaults()
    inputs: dict[str, Any] | None = {}
    digested: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        try:
            data = to_json(value)
        except Unserializable:
            digested[name] = _digestible(value)
            if name in given:
                inputs = None
            continue
        digested[name] = data
        if inputs is not None:
            inputs[name] = data
    try:
        text = canonical_json(digested)
    except ValueError as exc:  # an int too long for JSON text, say
        raise SerializationError(
            f"the arguments of this call cannot be written as JSON ({exc}); nothing was run"
        ) from None
    return inputs, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _digestible(value: Any) -> Any:
    """``value`` as JSON data, where the parts with no JSON form (a client, a lock)
    stand in by their type: a config object holding a client and an order id still
    tells two order ids apart."""
    try:
        return to_json(value)
    except Unserializable:
        pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _digestible(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$durable.object": _type_name(value), "fields": fields}
    if isinstance(value, Mapping):
        mapping: Mapping[Any, Any] = typing.cast("Mapping[Any, Any]", value)  # type: ignore[redundant-cast]
        pairs = sorted(
            canonical_json([_digestible(key), _digestible(item)]) for key, item in mapping.items()
        )
        return {"$durable.mapping": _type_name(mapping), "items": pairs}
    if isinstance(value, list | tuple | set | frozenset):
        items: Iterable[Any] = typing.cast("Iterable[Any]", value)
        parts = [_digestible(item) for item in items]
        if isinstance(value, set | frozenset):
            parts.sort(key=canonical_json)
        return {"$durable.sequence": _type_name(items), "items": parts}
    # Any other object (a client, a lock): its attributes are state, not an input.
    return {"$durable.unstorable": _type_name(value)}


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


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
