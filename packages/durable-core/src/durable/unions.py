"""Which member of a union a stored value was.

A task annotated ``-> int | Receipt`` must replay the member it returned, yet stored
JSON names no class. Two ways tell the members apart, and this module decides which:

- **By the kind of the JSON data.** JSON has seven kinds of data (null, bool, int,
  float, string, array, object) and most members only ever become one: an ``int`` is
  an int, a ``Receipt`` an object. Where the members' kinds are disjoint the stored
  data says which member it was, and nothing extra is stored.
- **By a discriminator.** Where two members become the same kind (``str | UUID``, two
  models, ``list | tuple``, ``int | IntEnum``), the value is stored as
  ``{"$durable:member": "UUID", "value": "..."}``. The name is the member's qualified
  name (module-qualified only where two members share one), never a position, so
  reordering the annotation still decodes. It is read only at a union whose members
  overlap, only as an object with exactly those two keys, and only as one of the
  members the annotation names: stored data never picks a class the code does not
  annotate. A plain dict that happens to carry the key is itself wrapped (with name
  ``null``), so user data cannot be mistaken for a discriminator; data stored without
  one, by earlier versions, decodes as it always did.

This module only analyses annotations and wraps data; :mod:`durable.serialization`
walks values and calls it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

MEMBER_KEY = "$durable:member"
VALUE_KEY = "value"

Codec = Callable[[Any], Any]

ALL_KINDS = frozenset({"null", "bool", "int", "float", "string", "array", "object"})
_KIND_OF_DATA: dict[type[Any], str] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "array",
    dict: "object",
}
_STRING_CLASSES = (str, uuid.UUID, Decimal, dt.date, dt.time)  # dt.datetime is a dt.date
_UNION_ORIGINS = (types.UnionType, typing.Union)
# How a member's decoder says the data is not for it (Decimal says ArithmeticError).
_REFUSALS = (TypeError, ValueError, KeyError, ArithmeticError)


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in _UNION_ORIGINS


def unwrap(annotation: Any) -> Any:
    """``annotation`` without ``Annotated[...]`` around it: metadata changes no JSON."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def kinds(annotation: Any) -> frozenset[str]:
    """The kinds of JSON data a value of ``annotation`` can become (all, when unknown)."""
    annotation = unwrap(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_ORIGINS:
        found: frozenset[str] = frozenset()
        return found.union(*(kinds(a) for a in args))
    if origin is typing.Literal:
        return frozenset(_value_kind(a) for a in args)
    if annotation is None or annotation is type(None):
        return frozenset({"null"})
    runtime = origin if origin is not None else annotation
    return _class_kinds(runtime) if isinstance(runtime, type) else ALL_KINDS


def _class_kinds(cls: type[Any]) -> frozenset[str]:
    if issubclass(cls, enum.Enum):
        return frozenset(_value_kind(m.value) for m in cls) or ALL_KINDS
    if issubclass(cls, bool):
        return frozenset({"bool"})
    if issubclass(cls, int):
        return frozenset({"int"})
    if issubclass(cls, float | dt.timedelta):  # a timedelta is stored as its seconds
        return frozenset({"float"})
    if issubclass(cls, _STRING_CLASSES):
        return frozenset({"string"})
    if issubclass(cls, list | tuple | set | frozenset):
        return frozenset({"array"})
    if getattr(cls, "__pydantic_root_model__", False):
        return ALL_KINDS  # a RootModel dumps to whatever its root is
    if issubclass(cls, dict | Mapping) or dataclasses.is_dataclass(cls):
        return frozenset({"object"})
    if hasattr(cls, "model_validate"):
        return frozenset({"object"})
    return ALL_KINDS  # object, protocols, classes to_json refuses anyway


def _value_kind(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return _value_kind(value.value)
    kind = _kind_of(value)
    if not kind and isinstance(value, tuple | set | frozenset):
        return "array"
    if not kind and isinstance(value, Mapping):
        return "object"
    return kind or "string"  # datetimes, UUIDs, Decimals


def _kind_of(data: object) -> str:
    """The JSON kind of plain ``data`` (empty for anything else)."""
    return _KIND_OF_DATA.get(type(data), "")


def is_tag(data: Any) -> bool:
    """Whether plain JSON ``data`` has the shape of a discriminator."""
    return (
        type(data) is dict
        and len(data) == 2  # pyright: ignore[reportUnknownArgumentType]
        and MEMBER_KEY in data
        and VALUE_KEY in data
    )


@dataclasses.dataclass(frozen=True)
class UnionPlan:
    """What :func:`plan` found out about one union annotation."""

    options: tuple[Any, ...]  # the members other than None
    by_kind: Mapping[str, tuple[int, ...]]  # for each JSON kind, the options that give it
    names: tuple[str | None, ...]  # the name stored for each option (None: no unique one)
    by_name: Mapping[str, int]  # every name that finds one option
    by_class: Mapping[type[Any], tuple[int, ...]]  # options by their runtime class
    literals: tuple[int, ...]
    wildcards: tuple[int, ...]  # Any, TypeVars ...: they take any value
    ambiguous: bool  # some kind of JSON data could be two options: values need a name

    def member_of(self, value: Any) -> int | None:
        """The option ``value`` is an instance of: the nearest class in its MRO first."""
        for cls in type(typing.cast(object, value)).__mro__:
            found = self.by_class.get(cls)
            if found:
                return found[0] if len(found) == 1 else _best_fit(value, found, self.options)
        for index in self.literals:
            if _fits(value, self.options[index]):
                return index
        for cls, found in self.by_class.items():  # ABCs and protocols: not in the MRO
            if _is_instance(value, cls):
                return found[0]
        return self.wildcards[0] if self.wildcards else None

    def needs_tag(self, data: Any) -> bool:
        return len(self.by_kind.get(_kind_of(data), ())) > 1


def _is_instance(value: Any, cls: type[Any]) -> bool:
    try:
        return isinstance(value, cls)
    except TypeError:  # a Protocol that is not runtime_checkable
        return False


_plans: dict[Any, UnionPlan] = {}


def plan(members: tuple[Any, ...]) -> UnionPlan:
    """The :class:`UnionPlan` of a union's members (cached)."""
    try:
        return _plans[members]
    except KeyError:
        found = _plans[members] = _build_plan(members)
        return found
    except TypeError:  # an unhashable member (rare): build without caching
        return _build_plan(members)


def _build_plan(members: tuple[Any, ...]) -> UnionPlan:
    options = tuple(m for m in members if m is not type(None) and m is not None)
    by_kind: dict[str, tuple[int, ...]] = {}
    by_class: dict[type[Any], tuple[int, ...]] = {}
    literals: list[int] = []
    wildcards: list[int] = []
    for index, option in enumerate(options):
        for kind in kinds(option):
            by_kind[kind] = (*by_kind.get(kind, ()), index)
        runtime = _runtime_class(option)
        if runtime is not None:
            by_class[runtime] = (*by_class.get(runtime, ()), index)
        elif typing.get_origin(unwrap(option)) is typing.Literal:
            literals.append(index)
        else:
            wildcards.append(index)
    names, by_name = _names(options)
    ambiguous = any(len(found) > 1 for found in by_kind.values())
    return UnionPlan(
        options, by_kind, names, by_name, by_class, tuple(literals), tuple(wildcards), ambiguous
    )


def _runtime_class(annotation: Any) -> type[Any] | None:
    """The class a value of ``annotation`` is an instance of (None: Any, TypeVars ...)."""
    annotation = unwrap(annotation)
    if annotation is Any:  # a class since Python 3.11, but no value's
        return None
    runtime = typing.get_origin(annotation) or annotation
    return runtime if isinstance(runtime, type) else None


def _names(options: tuple[Any, ...]) -> tuple[tuple[str | None, ...], dict[str, int]]:
    """Each option's stored name, and every name (short or long) that finds one option.

    The short name (``Receipt``, ``list``) survives a class moving to another module;
    the long one (``shop.Receipt``, ``list[int]``) is written only where two options
    share a short name.
    """
    short = [_short_name(o) for o in options]
    long = [_long_name(o) for o in options]
    names: list[str | None] = []
    for s, n in zip(short, long, strict=True):
        names.append(s if short.count(s) == 1 else n if long.count(n) == 1 else None)
    by_name: dict[str, int] = {}
    for index, (s, n) in enumerate(zip(short, long, strict=True)):
        if long.count(n) == 1:
            by_name[n] = index
        if short.count(s) == 1:
            by_name[s] = index
    return tuple(names), by_name


def _short_name(annotation: Any) -> str:
    annotation = unwrap(annotation)
    runtime = _runtime_class(annotation)
    if runtime is not None:
        return runtime.__qualname__
    if typing.get_origin(annotation) is typing.Literal:
        return "Literal"
    return str(getattr(annotation, "__name__", repr(annotation)))


def _long_name(annotation: Any) -> str:
    annotation = unwrap(annotation)
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation)


def _best_fit(value: Any, found: tuple[int, ...], options: tuple[Any, ...]) -> int:
    """Of options sharing a runtime class (``list[int] | list[str]``), the one that fits."""
    return next((i for i in found if _fits(value, options[i])), found[0])


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` matches ``annotation``, items included (used on rare unions)."""
    annotation = unwrap(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_ORIGINS:
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if annotation is None or annotation is type(None):
        return value is None
    runtime = _runtime_class(annotation)
    if runtime is None:
        return True
    if not _is_instance(value, runtime):
        return False
    return not args or _items_fit(value, args)


def _items_fit(value: Any, args: tuple[Any, ...]) -> bool:
    if isinstance(value, Mapping):
        items = typing.cast("Mapping[Any, Any]", value).items()  # type: ignore[redundant-cast]
        return len(args) != 2 or all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in items)
    if isinstance(value, tuple) and args[-1] is not Ellipsis:
        row = typing.cast("tuple[Any, ...]", value)  # type: ignore[redundant-cast]
        return len(row) == len(args) and all(map(_fits, row, args))
    if isinstance(value, list | tuple | set | frozenset):
        return all(_fits(v, args[0]) for v in typing.cast("Sequence[Any]", value))
    return True


def union_encoder(union: UnionPlan, encoders: Sequence[Codec], plain: Codec) -> Codec:
    """Encode a value of the union: its member's form, named where its kind is shared.

    ``encoders`` encode each option; ``plain`` encodes a value that is none of them,
    which is stored as it is (and decoded as earlier versions did).
    """

    def encode(value: Any) -> Any:
        if value is None:
            return None
        index = union.member_of(value)
        data = plain(value) if index is None else encoders[index](value)
        if not union.ambiguous:
            return data
        name = None if index is None else union.names[index]
        if name is not None and union.needs_tag(data):
            return {MEMBER_KEY: name, VALUE_KEY: data}
        if is_tag(data):  # plain data shaped like a discriminator: wrap it, name or not
            return {MEMBER_KEY: name, VALUE_KEY: data}
        return data

    return encode


def union_decoder(union: UnionPlan, decoders: Sequence[Codec]) -> Codec:
    """Decode stored data of the union: by its discriminator, else by its JSON kind.

    Data no option's kind takes, or that the one option of its kind refuses, is
    decoded as earlier versions did: each option tried in order, else the data as is.
    """

    def decode(data: Any) -> Any:
        if data is None:
            return None
        if union.ambiguous and is_tag(data):
            index = union.by_name.get(data[MEMBER_KEY]) if type(data[MEMBER_KEY]) is str else None
            data = data[VALUE_KEY]
            if index is not None:
                return decoders[index](data)
        found = union.by_kind.get(_kind_of(data), ())
        if len(found) == 1:
            try:
                return decoders[found[0]](data)
            except _REFUSALS:
                return _first_decoding(data, union.options, decoders, range(len(decoders)))
        return _first_decoding(data, union.options, decoders, found or range(len(decoders)))

    return decode


def _first_decoding(
    data: Any, options: tuple[Any, ...], decoders: Sequence[Codec], indices: Sequence[int]
) -> Any:
    """How earlier versions decoded a union: an option of the data's exact type, else
    the first option whose decoder accepts the data, else the data as it is."""
    for index in indices:
        if isinstance(options[index], type) and type(data) is options[index]:
            return data
    for index in indices:
        try:
            return decoders[index](data)
        except _REFUSALS:
            continue
    return data
