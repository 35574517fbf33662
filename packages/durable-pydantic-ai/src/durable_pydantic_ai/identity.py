"""What a ``DurableAgent.run()`` call is: the inputs that change its answer, as digests.

A run id stands for one call. Besides the prompt and the message history (stored as
JSON), the answer depends on ``deps`` and on the run options: ``output_type``,
``model_settings``, ``model``, ``instructions``, ``deferred_tool_results``, run
capabilities ... Those are often not JSON (a type, a function, a client), so each one
enters the run's inputs as a digest of a *stable description*: the same value gives
the same digest in every process, and nothing of it (an API key in ``deps``) is stored.

A description never uses ``id()`` or a ``repr`` that may carry an address: types and
functions count by their qualified name, data (dataclasses, Pydantic models,
mappings, sequences) by their contents, a pydantic-ai ``Model`` by its class, system
and model name, and any other object (a client, a lock) by its type only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_ai.models import Model
from pydantic_core import PydanticSerializationError, to_jsonable_python

#: ``Agent.run`` arguments that do not change the answer: observers, cancellation and
#: run-time policy (a failed run may be resumed with other limits or more retries).
#: Every other option given, known or added in a later pydantic-ai, counts.
NOT_INPUTS = frozenset(
    {"cancellation_token", "infer_name", "metadata", "usage_limits", "usage", "retries"}
)

#: Arguments that count by whether they are given, not by their value: they change which
#: steps a run has (a handler makes model requests streamed, a timeout records the start
#: time), so a run rebuilt or resumed without them would not find its steps.
GIVEN_OR_NOT = frozenset({"event_stream_handler", "timeout"})

_MAX_DEPTH = 32


def run_options(deps: Any, options: Mapping[str, Any]) -> dict[str, str]:
    """``{option: digest}`` of the options given (not None) that change the answer,
    ``deps`` included: the part of a run's inputs that is not its prompt and history."""
    given: dict[str, Any] = {"deps": deps, **options}
    return {
        name: digest(True if name in GIVEN_OR_NOT else value)
        for name, value in sorted(given.items())
        if value is not None and name not in NOT_INPUTS
    }


def digest(value: Any) -> str:
    """A short hex digest of ``value``'s stable description."""
    text = json.dumps(describe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def describe(value: Any) -> Any:
    """``value`` as JSON data that is the same for equal values in any process."""
    return _describe(value, 0, set())


def _describe(value: Any, depth: int, seen: set[int]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if depth > _MAX_DEPTH:
        return {"$deep": _qualname(type(value))}
    if isinstance(value, enum.Enum):
        return {"$enum": _qualname(type(value)), "value": _describe(value.value, depth + 1, seen)}
    if isinstance(value, type):
        return _describe_type(value)
    if typing.get_origin(value) is not None:  # list[int], Foo | None, Annotated[...] ...
        return {
            "$generic": _describe(typing.get_origin(value), depth + 1, seen),
            "args": [_describe(arg, depth + 1, seen) for arg in typing.get_args(value)],
        }
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        described: dict[str, Any] = {"$function": _qualname(value)}
        bound = getattr(value, "__self__", None)
        if bound is not None and not isinstance(bound, types.ModuleType):
            described["self"] = _qualname(bound if isinstance(bound, type) else type(bound))
        return described
    if isinstance(value, bytes | bytearray):
        return {"$bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, Model):  # a model counts by what it is, not by its client
        model = typing.cast("Model[Any]", value)  # type: ignore[redundant-cast]
        return {"$model": _qualname(type(model)), "system": model.system, "name": model.model_name}
    if id(value) in seen:  # a cycle: the path to here already describes it
        return {"$cycle": _qualname(type(value))}
    seen.add(id(value))
    try:
        return _describe_container(value, depth + 1, seen)
    finally:
        seen.discard(id(value))


def _describe_type(cls: type[Any]) -> Any:
    described: dict[str, Any] = {"$type": _qualname(cls)}
    if "<locals>" in cls.__qualname__:
        # Made by a function (pydantic-ai's StructuredDict(schema, name=...) ...): one
        # qualified name for many types, told apart by their name and JSON schema.
        described["name"] = cls.__name__
        with contextlib.suppress(Exception):  # not a type pydantic knows: its name must do
            described["schema"] = TypeAdapter(cls).json_schema()
    return described


def _describe_container(value: Any, depth: int, seen: set[int]) -> Any:
    kind = _qualname(type(value))
    if isinstance(value, functools.partial):
        partial = typing.cast("functools.partial[Any]", value)  # type: ignore[redundant-cast]
        return {
            "$partial": _describe(partial.func, depth, seen),
            "args": [_describe(arg, depth, seen) for arg in partial.args],
            "keywords": _describe(partial.keywords, depth, seen),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _describe(getattr(value, f.name), depth, seen)
            for f in dataclasses.fields(value)
        }
        return {"$object": kind, "fields": fields}
    if isinstance(value, BaseModel):
        names = type(value).model_fields
        return {
            "$object": kind,
            "fields": {n: _describe(getattr(value, n), depth, seen) for n in names},
        }
    if isinstance(value, Mapping):
        mapping = typing.cast("Mapping[Any, Any]", value)  # type: ignore[redundant-cast]
        items = [
            [_describe(key, depth, seen), _describe(item, depth, seen)]
            for key, item in mapping.items()
        ]
        items.sort(key=lambda pair: json.dumps(pair[0], sort_keys=True))
        return {"$mapping": items}
    if isinstance(value, list | tuple):
        sequence = typing.cast("list[Any] | tuple[Any, ...]", value)  # type: ignore[redundant-cast]
        return [_describe(item, depth, seen) for item in sequence]
    if isinstance(value, set | frozenset):
        members = [_describe(item, depth, seen) for item in typing.cast("set[Any]", value)]
        return {"$set": sorted(members, key=lambda item: json.dumps(item, sort_keys=True))}
    try:  # datetimes, UUIDs, Decimals, paths ...: their JSON form
        return {"$value": kind, "json": to_jsonable_python(value)}
    except (PydanticSerializationError, TypeError, ValueError):
        pass
    # Any other object (a client, a lock, a callable object): its type, not its state.
    return {"$unstorable": kind}


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:  # typing's special forms (Union, Literal ...) name themselves
        return f"{module}.{obj!r}" if " at 0x" not in repr(obj) else module
    return f"{module}.{name}"
