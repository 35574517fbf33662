"""Which returned values will replay as another type, said once in a log line.

On replay a task's result is rebuilt from JSON into its return annotation, so a value
comes back as its own type only where the annotation says which type that is: a
tuple returned from ``-> Any`` replays as a list, a UUID as a str, an int-keyed dict
under a bare ``dict`` with str keys. The first run and a resume then see different
types, which is the kind of bug that shows only after a crash. :func:`lossy_note`
names it up front; the engine logs it at DEBUG on a task's first run.

It looks at the value and at the first level inside it (items, dict keys and values,
dataclass fields), and at only a bounded number of items: a hint, cheap enough for
every task, not a proof.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import typing
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from .rebuild import field_hints
from .unions import is_union, plan, unwrap

_ITEMS_LOOKED_AT = 100
_REBUILT = (dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID, Decimal)
_REBUILT_CONTAINERS = (list, tuple, set, frozenset)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_JSON_TYPES = _SCALARS | {list, dict}  # under Any, these come back as they are


def lossy_note(value: Any, annotation: Any) -> str | None:
    """A short note when replay will not give back ``value``'s type, else None.

    For example: "returned a tuple, which replays as a list: its annotation (Any)
    does not say otherwise". It assumes the value is stored with
    :func:`durable.serialization.encoder` for that annotation.
    """
    if annotation is None:  # as from_json takes it: no annotation
        annotation = Any
    try:
        if _type(value) in _SCALARS and (annotation is Any or annotation is _type(value)):
            return None  # the common case, quickly: a str, an int ... comes back as itself
        note = _top_note(value, annotation)
        return note if note is not None else next(_child_notes(value, annotation), None)
    except Exception:  # a hint for a log line must never fail the task it describes
        return None


def _top_note(value: Any, annotation: Any) -> str | None:
    if value is None:
        return None
    member = _member(value, annotation)
    if member is _NO_MEMBER:
        return (
            f"returned {_a(value)}, which is none of the members of its annotation "
            f"({_describe(annotation)}): it replays as the first member that accepts "
            "its JSON data, or as that data"
        )
    replayed = _replayed(value, member)
    if replayed is None or replayed is type(value):
        return None
    return f"returned {_a(value)}, which replays as {_a(replayed)}: {_why('its', annotation)}"


def _member(value: Any, annotation: Any) -> Any:
    """``annotation``, or the member of that union that ``value`` is (or _NO_MEMBER)."""
    annotation = unwrap(annotation)
    if not is_union(annotation):
        return annotation
    union = plan(typing.get_args(annotation))
    index = union.member_of(value)
    return _NO_MEMBER if index is None else unwrap(union.options[index])


_NO_MEMBER: Any = object()


def _replayed(value: Any, annotation: Any) -> type[Any] | None:
    """The type ``value`` comes back as under ``annotation`` (None: not known)."""
    if annotation is Any and _type(value) in _JSON_TYPES:  # most items: quick
        return _type(value)
    if is_union(annotation):
        member = _member(value, annotation)
        return None if member is _NO_MEMBER else _replayed(value, member)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return dict
    if origin in (tuple, set, frozenset):
        return typing.cast("type[Any]", origin)
    if isinstance(origin, type) and issubclass(origin, list | set | frozenset):
        return list
    cls = typing.cast("type[Any]", annotation) if isinstance(annotation, type) else None
    if cls is not None and _rebuilds(cls):
        return cls
    return _plain_type(value)  # decoded as the plain JSON data


def _rebuilds(cls: type[Any]) -> bool:
    """Whether a bare class annotation rebuilds its own type (else data passes through)."""
    return (
        cls in _REBUILT
        or cls in _REBUILT_CONTAINERS
        or issubclass(cls, enum.Enum)
        or callable(getattr(cls, "model_validate", None))
        or dataclasses.is_dataclass(cls)
    )


def _plain_type(value: Any) -> type[Any] | None:
    """The type of ``to_json(value)``, without building it (None: it has no JSON form)."""
    if isinstance(value, enum.Enum):
        return _plain_type(value.value)
    for plain in (bool, int, float, str):
        if isinstance(value, plain):
            return plain
    if isinstance(value, dt.date | dt.time | uuid.UUID | Decimal):
        return str
    if isinstance(value, dt.timedelta):
        return float
    if isinstance(value, Mapping) or hasattr(_type(value), "model_validate"):
        return dict
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dict
    if isinstance(value, list | tuple | set | frozenset):
        return list
    return None


def _child_notes(value: Any, annotation: Any) -> Iterator[str]:
    """Notes on the first level inside ``value``: keys and items, or dataclass fields."""
    if _type(value) in _SCALARS:
        return
    member = _member(value, annotation)
    origin = typing.get_origin(member)
    args = typing.get_args(member) if origin is not None else ()
    if isinstance(value, Mapping):
        mapping = typing.cast("Mapping[Any, Any]", value)  # type: ignore[redundant-cast]
        key_type, item_type = args if len(args) == 2 else (Any, Any)
        yield from _key_notes(mapping, key_type, annotation)
        yield from _item_notes(value, mapping.values(), itertools.repeat(item_type), annotation)
    elif isinstance(value, list | tuple | set | frozenset):
        items = typing.cast("tuple[Any, ...]", value)
        yield from _item_notes(value, items, _item_types(args), annotation)
    elif dataclasses.is_dataclass(value) and type(value) is member:
        yield from _field_notes(value)


def _item_types(args: tuple[Any, ...]) -> Iterator[Any]:
    """The annotation of each item of a sequence annotated with ``args``, in order."""
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        return itertools.repeat(args[0])
    if args:  # tuple[int, str]: one annotation per position
        return itertools.chain(args, itertools.repeat(Any))
    return itertools.repeat(Any)


def _item_notes(
    container: Any, items: Any, annotations: Iterator[Any], annotation: Any
) -> Iterator[str]:
    seen: set[tuple[type[Any], int]] = set()
    pairs = zip(items, annotations, strict=False)
    for item, item_type in itertools.islice(pairs, _ITEMS_LOOKED_AT):
        kind = _type(item)
        if (item_type is Any and kind in _JSON_TYPES) or (kind, id(item_type)) in seen:
            continue  # plain data under Any, or a type already looked at
        seen.add((kind, id(item_type)))
        replayed = None if item is None else _replayed(item, unwrap(item_type))
        if replayed is not None and replayed is not type(item):
            why = _why("its", annotation, open_=_is_open(item_type))
            yield (
                f"returned {_a(container)} holding {_a(item)}, which replays as "
                f"{_a(replayed)}: {why}"
            )


def _key_notes(mapping: Mapping[Any, Any], key_type: Any, annotation: Any) -> Iterator[str]:
    key_type = unwrap(key_type)
    replayed: type[Any] = str
    if key_type is int or key_type is uuid.UUID or _is_enum(key_type):
        replayed = key_type
    for kind in {_type(k) for k in itertools.islice(mapping, _ITEMS_LOOKED_AT)}:
        if kind is not replayed:
            why = _why("its", annotation, open_=_is_open(key_type))
            yield (
                f"returned {_a(mapping)} with {kind.__qualname__} keys, which replay as "
                f"{replayed.__qualname__} keys: {why}"
            )


def _field_notes(value: Any) -> Iterator[str]:
    hints = field_hints(type(value))
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        hint = hints.get(field.name, Any)
        replayed = None if item is None else _replayed(item, unwrap(hint))
        if replayed is not None and replayed is not type(item):
            why = _why("the field's", hint)
            yield (
                f"returned {_a(value)} whose field {field.name!r} holds {_a(item)}, which "
                f"replays as {_a(replayed)}: {why}"
            )


def _why(whose: str, annotation: Any, open_: bool | None = None) -> str:
    if open_ if open_ is not None else _is_open(annotation):
        return f"{whose} annotation ({_describe(annotation)}) does not say otherwise"
    return f"{whose} annotation is {_describe(annotation)}"


def _is_open(annotation: Any) -> bool:
    """Whether ``annotation`` lets data pass through as it is (Any, object, str ...)."""
    annotation = unwrap(annotation)
    if is_union(annotation) or typing.get_origin(annotation) is not None:
        return False
    return not (isinstance(annotation, type) and _rebuilds(annotation))


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _type(value: object) -> type[Any]:
    return type(value)


def _a(thing: Any) -> str:
    """``thing``'s type name (``thing`` itself if a type) with "a" or "an" before it."""
    kind = thing if isinstance(thing, type) else _type(thing)
    name = kind.__qualname__
    return f"{'an' if name[:1].lower() in 'aeio' else 'a'} {name}"


def _describe(annotation: Any) -> str:
    """``annotation`` as code would spell it, without module names."""
    annotation = unwrap(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    if is_union(annotation):
        return " | ".join(_describe(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(origin, type) and args:
        inner = ", ".join("..." if a is Ellipsis else _describe(a) for a in args)
        return f"{origin.__qualname__}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__qualname__
    if isinstance(annotation, str):
        return annotation
    return repr(annotation).replace("typing.", "")
