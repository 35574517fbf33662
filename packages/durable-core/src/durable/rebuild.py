"""Plain JSON data rebuilt into the type the code annotates.

:func:`decoder` gives, for an annotation, a function from stored JSON data to a value
of that type; :func:`durable.serialization.from_json` is its public face. Stored data
never names a class: a value becomes a model, a dataclass or a datetime only because
the annotation says so, and a union's discriminator picks only among the members the
annotation names (see :mod:`durable.unions`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .unions import plan, union_decoder

Codec = Callable[[Any], Any]
_SCALARS = (str, int, float, bool, type(None))


def decoder(annotation: Any) -> Codec:
    """The function rebuilding JSON data into ``annotation`` (cached per annotation)."""
    return memoized(_decoders, annotation, _build_decoder)


def memoized(cache: dict[Any, Codec], annotation: Any, build: Callable[[Any], Codec]) -> Codec:
    """``cache[annotation]``, built by ``build`` the first time (an unhashable
    annotation, which is rare, is built every time)."""
    try:
        return cache[annotation]
    except KeyError:
        pass
    except TypeError:
        return build(annotation)
    return cached_build(cache, annotation, build)


_decoders: dict[Any, Codec] = {}


def _identity(data: Any) -> Any:
    return data


def _plain_mapping(data: Any) -> dict[Any, Any]:
    """``{k: v for k, v in data.items()}``, the same dict (or error)."""
    return dict(data.items())


def _build_decoder(annotation: Any) -> Codec:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return decoder(args[0])
    if origin in (types.UnionType, typing.Union):
        return _union_decoder(args)
    if origin in (list, set, frozenset, tuple) or (
        isinstance(origin, type) and issubclass(origin, list | set | frozenset)
    ):
        return _sequence_decoder(origin, args)
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        key = _key_decoder(args[0]) if args else _identity
        val = decoder(args[1]) if len(args) > 1 else _identity
        if key is _identity and val is _identity:  # dict[str, Any]: a copy, made in C
            return _plain_mapping
        return lambda data: {key(k): val(v) for k, v in data.items()}
    if origin is not None or not isinstance(annotation, type):
        return _identity  # Literal, TypedDict, TypeVar, Any ...: plain data is right
    return _class_decoder(annotation)


def _class_decoder(cls: type[Any]) -> Codec:
    if cls in _SCALARS or cls is object:
        return _identity
    if issubclass(cls, enum.Enum):
        return cls
    if cls is dt.datetime:
        return dt.datetime.fromisoformat
    if cls is dt.date:
        return dt.date.fromisoformat
    if cls is dt.time:
        return dt.time.fromisoformat
    if cls is dt.timedelta:
        return lambda data: dt.timedelta(seconds=data)
    if cls is uuid.UUID or cls is Decimal:
        return cls
    validate: Codec | None = getattr(cls, "model_validate", None)
    if callable(validate):
        return validate
    if dataclasses.is_dataclass(cls):
        return _dataclass_decoder(cls)
    if cls in (list, tuple, set, frozenset):
        return cls
    return _identity


def _key_decoder(annotation: Any) -> Codec:
    """JSON keys are strings: turn them back into the int, UUID or enum keys they were."""
    if annotation is int:
        return int
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enum_type: type[enum.Enum] = annotation
        by_text = {str(member.value): member for member in enum_type}
        return lambda key: by_text[key]
    return decoder(annotation)


def _union_decoder(members: tuple[Any, ...]) -> Codec:
    union = plan(members)
    if len(union.options) == 1:
        only = decoder(union.options[0])
        return lambda data: None if data is None else only(data)
    return union_decoder(union, [decoder(option) for option in union.options])


def _sequence_decoder(origin: Any, args: tuple[Any, ...]) -> Codec:
    if origin is tuple and args and args[-1] is not Ellipsis:
        items = [decoder(a) for a in args]
        return lambda data: tuple(d(v) for d, v in zip(items, data, strict=False))
    item = decoder(args[0]) if args else _identity
    container = typing.cast(
        "Callable[[Any], Any]", origin if origin in (set, frozenset, tuple) else list
    )

    def decode(data: Any) -> Any:
        return container(item(v) for v in data)

    return decode


def _dataclass_decoder(cls: type[Any]) -> Codec:
    hints = field_hints(cls)
    fields = [(f.name, decoder(hints.get(f.name, Any))) for f in dataclasses.fields(cls) if f.init]

    def decode(data: Any) -> Any:
        return cls(**{name: dec(data[name]) for name, dec in fields if name in data})

    return decode


def is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def field_hints(cls: Any) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields; none when they cannot resolve."""
    if not is_dataclass_type(cls):
        return {}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to plain data
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints}


def cached_build(cache: dict[Any, Codec], annotation: Any, build: Callable[[Any], Codec]) -> Codec:
    """``build(annotation)``, cached; while it runs, a type that refers to itself (a
    dataclass with a ``list[Self]`` field) gets a function that looks the result up."""
    cache[annotation] = lambda data: cache[annotation](data)
    try:
        built = cache[annotation] = build(annotation)
    except BaseException:
        del cache[annotation]
        raise
    return built
