"""JSON in, typed values out.

Results and payloads are stored as JSON. :func:`to_json` turns a value into plain JSON
data (dicts, lists, strings, numbers, booleans, ``None``) and refuses anything it
cannot bring back. :func:`from_json` rebuilds plain data into the type the code
annotates. A value becomes a model, a dataclass or a datetime only because the task's
return annotation says so: stored data names no class, except that where an annotated
union's members look alike in JSON (``str | UUID``), :func:`encoder` stores which of
*those* members the value was (:mod:`durable.unions`). :func:`lossy_note` says when an
annotation cannot bring a value's type back at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import json
import json.encoder
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from .lossy import lossy_note as lossy_note
from .rebuild import Codec, cached_build, decoder, field_hints, is_dataclass_type, memoized
from .unions import is_union, plan, union_encoder, unwrap

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
    """Return ``value`` as plain JSON data, or raise :class:`Unserializable`.

    Equal values give equal data in every process: a set's elements come sorted by
    their JSON text, never in hash order (which for strings differs between
    processes). A dict whose keys would collide once turned into text (``1`` and
    ``"1"``) is refused rather than stored with one entry missing.
    """
    try:
        return _to_json(value)
    except RecursionError:
        raise _too_deep(value) from None


def _too_deep(value: Any) -> Unserializable:
    return Unserializable(value, "(a reference cycle, or nesting too deep)")


# The path to a value with no JSON form is put together only when there is one: each
# container adds its own part as the error passes through it, so the common case
# builds no strings (~2.5x faster on a small dict). For the same reason a key
# collision is looked for only when the JSON dict came out smaller than the dict.


def _to_json(value: Any) -> Any:
    kind: type[object] = type(typing.cast(object, value))
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _mapping_to_json(value)
    if kind is list or kind is tuple:
        return _sequence_to_json(value)
    return _to_json_rich(value)


def _mapping_to_json(mapping: Mapping[Any, Any], encode: Codec = _to_json) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, item in mapping.items():
        name = key if type(key) is str else _key(key)
        try:
            data[name] = encode(item)
        except Unserializable as exc:
            raise exc.within(f"[{key!r}]") from None
    if len(data) != len(mapping):
        raise _collision(mapping)
    return data


def _sequence_to_json(items: Iterable[Any], encode: Codec = _to_json) -> list[Any]:
    data: list[Any] = []
    for index, item in enumerate(items):
        try:
            data.append(encode(item))
        except Unserializable as exc:
            raise exc.within(f"[{index}]") from None
    return data


def _set_to_json(items: Iterable[Any], encode: Codec = _to_json) -> list[Any]:
    data = _sequence_to_json(items, encode)
    data.sort(key=_element_text)
    return data


def _element_text(data: Any) -> str:
    """``canonical_json(data)``, quicker for an int (the text json gives it is its repr)."""
    return int.__repr__(data) if type(data) is int else canonical_json(data)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or not isinstance(key, int | uuid.UUID | enum.Enum):
        raise Unserializable(key, " (a dict key)")
    return str(key.value if isinstance(key, enum.Enum) else key)


def _collision(mapping: Mapping[Any, Any]) -> Unserializable:
    """The error for a dict two of whose keys became one JSON key, naming both."""
    seen: dict[str, Any] = {}
    for key in mapping:
        name = key if type(key) is str else _key(key)
        if name in seen:
            both = f"{_show_key(seen[name])} and {_show_key(key)}"
            return Unserializable(mapping, f" (keys {both} both become {name!r})")
        seen[name] = key
    return Unserializable(mapping, " (its size changed while it was stored)")


def _show_key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return f"{type(key).__qualname__}.{key.name}"
    return repr(key)


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
        return _dataclass_to_json(value)
    if isinstance(value, Mapping):
        mapping = typing.cast("Mapping[Any, Any]", value)  # type: ignore[redundant-cast]
        return _mapping_to_json(mapping)
    if isinstance(value, list | tuple):
        return _sequence_to_json(typing.cast("Iterable[Any]", value))
    if isinstance(value, set | frozenset):
        return _set_to_json(typing.cast("Iterable[Any]", value))
    raise Unserializable(value)


_NO_CODECS: Mapping[str, Codec] = types.MappingProxyType({})


def _dataclass_to_json(value: Any, codecs: Mapping[str, Codec] = _NO_CODECS) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        try:
            data[field.name] = codecs.get(field.name, _to_json)(getattr(value, field.name))
        except Unserializable as exc:
            raise exc.within(f".{field.name}") from None
    return data


def canonical_json(data: Any) -> str:
    """Plain JSON ``data`` as one text for equal data: keys sorted, no spaces.

    For digests and ids, which must be the same in every process and on every machine,
    and to sort a set's elements.
    """
    if _C_CANONICAL is None or isinstance(data, str):
        return _CANONICAL.encode(data)
    return "".join(_C_CANONICAL(data, 0))


# What json.dumps(data, sort_keys=True, ...) builds on every call: built once, a string
# is encoded ~10x faster, which matters when each element of a set is.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# And the C encoder JSONEncoder.encode builds on every call, built once too: half the
# cost of a run's input digest. Without a circular check: the data comes from to_json.
def _c_canonical() -> Callable[[Any, int], list[str]] | None:
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # None without CPython's _json
    if make is None:
        return None
    built: Callable[[Any, int], list[str]] = make(
        None, _CANONICAL.default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    return built


_C_CANONICAL = _c_canonical()


# -- encoding for an annotation ----------------------------------------------------------

_encoders: dict[Any, Codec] = {}


def encoder(annotation: Any) -> Callable[[Any], Any]:
    """A function from a value of ``annotation`` to JSON data, raising like :func:`to_json`.

    It differs from :func:`to_json` only where the annotation has a union whose
    members JSON cannot tell apart (``str | UUID``, two models): there the value is
    stored with a discriminator (see :mod:`durable.unions`) so that
    :func:`from_json` rebuilds the member that was returned. For every other
    annotation it *is* :func:`to_json`, so the common checkpoint pays one dict lookup.
    """
    return memoized(_encoders, annotation, _top_encoder)


def _top_encoder(annotation: Any) -> Codec:
    if not _needs_names(annotation, frozenset()):
        return to_json
    typed = _inner_encoder(annotation)

    def encode(value: Any) -> Any:
        try:
            return typed(value)
        except RecursionError:
            raise _too_deep(value) from None

    return encode


def _needs_names(annotation: Any, seen: frozenset[type[Any]]) -> bool:
    """Whether some union within ``annotation`` has members JSON cannot tell apart."""
    annotation = unwrap(annotation)
    args = typing.get_args(annotation)
    if is_union(annotation):
        return plan(args).ambiguous or any(_needs_names(a, seen) for a in args)
    if _container_origin(typing.get_origin(annotation)):
        return any(_needs_names(a, seen) for a in args if a is not Ellipsis)
    if is_dataclass_type(annotation) and annotation not in seen:
        inner = seen | {annotation}
        return any(_needs_names(h, inner) for h in field_hints(annotation).values())
    return False


def _inner_encoder(annotation: Any) -> Codec:
    """The encoder of a part of a value; recursive dataclasses meet a forwarder."""
    if not _needs_names(annotation, frozenset()):
        return _to_json
    try:
        return _inner_encoders[annotation]
    except KeyError:
        pass
    except TypeError:
        return _build_encoder(annotation)
    return cached_build(_inner_encoders, annotation, _build_encoder)


_inner_encoders: dict[Any, Codec] = {}


def _build_encoder(annotation: Any) -> Codec:
    annotation = unwrap(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if is_union(annotation):
        union = plan(args)
        return union_encoder(union, [_inner_encoder(o) for o in union.options], _to_json)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return _row_encoder([_inner_encoder(a) for a in args])
    if _container_origin(origin) and issubclass(origin, Mapping):
        return _values_encoder(_inner_encoder(args[-1]))
    if _container_origin(origin):
        return _items_encoder(_inner_encoder(args[0]))
    hints = field_hints(annotation)
    return _fields_encoder(annotation, {n: _inner_encoder(h) for n, h in hints.items()})


def _container_origin(origin: Any) -> typing.TypeGuard[type[Any]]:
    return isinstance(origin, type) and issubclass(
        origin, list | tuple | set | frozenset | dict | Mapping
    )


def _items_encoder(item: Codec) -> Codec:
    def encode(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return _sequence_to_json(typing.cast("Iterable[Any]", value), item)
        if isinstance(value, set | frozenset):
            return _set_to_json(typing.cast("Iterable[Any]", value), item)
        return _to_json(value)  # not what the annotation says: stored as it is

    return encode


def _row_encoder(items: list[Codec]) -> Codec:
    def encode(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return _to_json(value)
        codecs = itertools.chain(items, itertools.repeat(_to_json))  # extra items: as they are
        row = zip(typing.cast("Iterable[Any]", value), codecs, strict=False)
        data: list[Any] = []
        for index, (item, codec) in enumerate(row):
            try:
                data.append(codec(item))
            except Unserializable as exc:
                raise exc.within(f"[{index}]") from None
        return data

    return encode


def _values_encoder(item: Codec) -> Codec:
    def encode(value: Any) -> Any:
        if isinstance(value, Mapping):
            mapping = typing.cast("Mapping[Any, Any]", value)  # type: ignore[redundant-cast]
            return _mapping_to_json(mapping, item)
        return _to_json(value)

    return encode


def _fields_encoder(cls: Any, codecs: Mapping[str, Codec]) -> Codec:
    def encode(value: Any) -> Any:
        if type(typing.cast(object, value)) is not cls:  # a subclass replays as cls anyway
            return _to_json(value)
        return _dataclass_to_json(value, codecs)

    return encode


# -- decoding ----------------------------------------------------------------------------


def from_json(data: Any, annotation: Any) -> Any:
    """Rebuild plain JSON ``data`` into ``annotation``; unknown annotations pass it through.

    A union member is chosen by the discriminator :func:`encoder` stored, else by the
    JSON kind of the data where only one member gives that kind, else as earlier
    versions did (the first member that accepts the data).
    """
    if annotation is Any or annotation is None or data is None:
        return data
    return decoder(annotation)(data)


def rebuilder(annotation: Any) -> Callable[[Any], Any]:
    """``from_json(data, annotation)`` as a function of ``data``, its decoder looked up once
    (for a task's every replayed step)."""
    if annotation is Any or annotation is None:
        return _as_stored
    decode = decoder(annotation)
    return lambda data: data if data is None else decode(data)


def _as_stored(data: Any) -> Any:
    return data


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of ``fn``, or ``Any`` when it cannot be resolved."""
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except Exception:
        raw = getattr(fn, "__annotations__", {}).get("return", Any)
        return Any if isinstance(raw, str) else raw
