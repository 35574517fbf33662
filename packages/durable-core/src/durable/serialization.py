"""JSON in, typed values out.

Results and payloads are stored as JSON. :func:`to_json` turns a value into plain JSON
data (dicts, lists, strings, numbers, booleans, ``None``) and refuses anything it
cannot bring back. :func:`from_json` rebuilds plain data into the type the code
annotates. Stored data never names a class: a value becomes a model, a dataclass or a
datetime only because the task's return annotation says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

JSONScalar = str | int | float | bool | None
_SCALARS = (str, int, float, bool, type(None))


class Unserializable(TypeError):
    """Raised by :func:`to_json` for a value with no JSON form; says where it was."""

    def __init__(self, value: object, path: str = "") -> None:
        self.type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        self._path = path  # may start with a note, " (a dict key)", for the outer parts
        super().__init__(self._message())

    @property
    def path(self) -> str:
        """Where the value is, from the top: ``['items'][2].price``; empty at the top."""
        return self._path.lstrip()

    def within(self, segment: str) -> Unserializable:
        """This error, seen from the container one level out (``segment`` leads the path)."""
        self._path = segment + self._path
        self.args = (self._message(),)
        return self

    def _message(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.type_name}{where} has no JSON form"


def to_json(value: Any) -> Any:
    """Return ``value`` as plain JSON data, or raise :class:`Unserializable`."""
    try:
        return _to_json(value)
    except RecursionError:  # a reference cycle, or nesting deeper than JSON can hold
        raise Unserializable(value, "(a reference cycle, or nesting too deep)") from None


# The path to a value with no JSON form is put together only when there is one: each
# container adds its own part as the error passes through it, so the common case
# builds no strings (~2.5x faster on a small dict).


def _to_json(value: Any) -> Any:
    kind: type[object] = type(typing.cast(object, value))
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _mapping_to_json(value.items())
    if kind is list or kind is tuple:
        return _sequence_to_json(value)
    return _to_json_rich(value)


def _mapping_to_json(items: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, item in items:
        name = key if type(key) is str else _key(key)
        try:
            data[name] = _to_json(item)
        except Unserializable as exc:
            raise exc.within(f"[{key!r}]") from None
    return data


def _sequence_to_json(items: Iterable[Any]) -> list[Any]:
    data: list[Any] = []
    for index, item in enumerate(items):
        try:
            data.append(_to_json(item))
        except Unserializable as exc:
            raise exc.within(f"[{index}]") from None
    return data


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or not isinstance(key, int | uuid.UUID | enum.Enum):
        raise Unserializable(key, " (a dict key)")
    return str(key.value if isinstance(key, enum.Enum) else key)


def _to_json_rich(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _to_json(value.value)
    if isinstance(value, _SCALARS):  # subclasses of str, int ...
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    kind: type[object] = type(typing.cast(object, value))
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(kind, "model_validate"):  # a pydantic model
        try:
            return dump(mode="json")
        except Exception as exc:  # e.g. a field of an arbitrary type
            raise Unserializable(value, f" ({exc})") from None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            try:
                data[field.name] = _to_json(getattr(value, field.name))
            except Unserializable as exc:
                raise exc.within(f".{field.name}") from None
        return data
    if isinstance(value, Mapping):
        items = typing.cast("Mapping[Any, Any]", value).items()  # type: ignore[redundant-cast]
        return _mapping_to_json(items)
    if isinstance(value, list | tuple | set | frozenset):
        return _sequence_to_json(typing.cast("Iterable[Any]", value))
    raise Unserializable(value)


def canonical_json(data: Any) -> str:
    """Plain JSON ``data`` as one text for equal data: keys sorted, no spaces.

    For digests and ids, which must be the same in every process and on every machine.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def from_json(data: Any, annotation: Any) -> Any:
    """Rebuild plain JSON ``data`` into ``annotation``; unknown annotations pass it through."""
    if annotation is Any or annotation is None or data is None:
        return data
    return _decoder(annotation)(data)


_Decoder = Callable[[Any], Any]
_decoders: dict[Any, _Decoder] = {}


def _decoder(annotation: Any) -> _Decoder:
    try:
        return _decoders[annotation]
    except KeyError:
        pass
    except TypeError:  # unhashable annotation (rare): build without caching
        return _build_decoder(annotation)
    decoder = _decoders[annotation] = _build_decoder(annotation)
    return decoder


def _identity(data: Any) -> Any:
    return data


def _build_decoder(annotation: Any) -> _Decoder:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _decoder(args[0])
    if origin in (types.UnionType, typing.Union):
        return _union_decoder(args)
    if origin in (list, set, frozenset, tuple) or (
        isinstance(origin, type) and issubclass(origin, list | set | frozenset)
    ):
        return _sequence_decoder(origin, args)
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        key = _key_decoder(args[0]) if args else _identity
        val = _decoder(args[1]) if len(args) > 1 else _identity
        return lambda data: {key(k): val(v) for k, v in data.items()}
    if origin is not None or not isinstance(annotation, type):
        return _identity  # Literal, TypedDict, TypeVar, Any ...: plain data is right
    return _class_decoder(annotation)


def _class_decoder(cls: type[Any]) -> _Decoder:
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
    validate: _Decoder | None = getattr(cls, "model_validate", None)
    if callable(validate):
        return validate
    if dataclasses.is_dataclass(cls):
        return _dataclass_decoder(cls)
    if cls in (list, tuple, set, frozenset):
        return cls
    return _identity


def _key_decoder(annotation: Any) -> _Decoder:
    """JSON keys are strings: turn them back into the int, UUID or enum keys they were."""
    if annotation is int:
        return int
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enum_type: type[enum.Enum] = annotation
        by_text = {str(member.value): member for member in enum_type}
        return lambda key: by_text[key]
    return _decoder(annotation)


def _union_decoder(members: tuple[Any, ...]) -> _Decoder:
    options = [m for m in members if m is not type(None)]
    if len(options) == 1:
        only = _decoder(options[0])
        return lambda data: None if data is None else only(data)

    def decode(data: Any) -> Any:
        if data is None:
            return None
        for option in options:
            if isinstance(option, type) and type(data) is option:
                return data
        for option in options:
            try:
                return _decoder(option)(data)
            except (TypeError, ValueError, KeyError):
                continue
        return data

    return decode


def _sequence_decoder(origin: Any, args: tuple[Any, ...]) -> _Decoder:
    if origin is tuple and args and args[-1] is not Ellipsis:
        items = [_decoder(a) for a in args]
        return lambda data: tuple(d(v) for d, v in zip(items, data, strict=False))
    item = _decoder(args[0]) if args else _identity
    container = typing.cast(
        "Callable[[Any], Any]", origin if origin in (set, frozenset, tuple) else list
    )

    def decode(data: Any) -> Any:
        return container(item(v) for v in data)

    return decode


def _dataclass_decoder(cls: type[Any]) -> _Decoder:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to plain data
        hints = {}
    fields = [(f.name, _decoder(hints.get(f.name, Any))) for f in dataclasses.fields(cls) if f.init]

    def decode(data: Any) -> Any:
        return cls(**{name: dec(data[name]) for name, dec in fields if name in data})

    return decode


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of ``fn``, or ``Any`` when it cannot be resolved."""
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except Exception:
        raw = getattr(fn, "__annotations__", {}).get("return", Any)
        return Any if isinstance(raw, str) else raw
