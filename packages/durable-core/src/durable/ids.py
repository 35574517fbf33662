"""Run ids: ``id=`` templates over a workflow's arguments, and the default id.

Without ``id=``, a run id is ``app-function-part-part...``: one part per parameter, in
order, defaults applied (``*args`` and ``**kwargs`` are one part each). A part is

- for a parameter annotated ``str`` (or ``str | None``): a non-empty string of the safe
  characters ``A-Z a-z 0-9 _ . : @ + = ,`` as it is;
- for any other parameter: an ``int`` >= 0 as its digits, and a non-empty string of
  safe characters that is not all digits as it is;
- anything else: ``~`` and the argument's canonical JSON (keys sorted, no spaces),
  percent-escaped, ``-`` too: ``-3`` is ``~%2D3``, ``"42"`` for an ``int`` parameter is
  ``~%2242%22``, ``[1, "a b"]`` is ``~%5B1,%22a%20b%22%5D``, ``None`` is ``~null``.

No part holds a ``-``, and digits, safe text and ``~`` parts cannot be mistaken for one
another, so two calls of one workflow share a default id exactly when their arguments
have the same JSON form: ``1`` and ``"1"`` differ, ``("a-1", "2")`` and ``("a", "1-2")``
differ, and the id is the same in every process. An argument with no JSON form is an
``IdTemplateError``: give ``@wf.workflow(id=...)`` a template, or call ``.run(run_id, ...)``.

An ``id=`` template is ``str.format`` over the arguments, except that a field whose
text holds a memory address (an object's default repr, ``<... at 0x7f...>``, different
in every process) is an ``IdTemplateError``.
"""

from __future__ import annotations

import inspect
import re
import string
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from .errors import DurableError, IdTemplateError
from .serialization import Unserializable, canonical_json, to_json

_ROOT = re.compile(r"[.\[]")

# Default repr of objects, functions, methods ...: `<app.Order object at 0x7f3a...>`,
# `<function make.<locals>.step at 0x7f3a...>`.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")  # its tail: searching for it is linear


class RunIdTemplate:
    """A checked ``str.format`` template such as ``"order-{order_id}"``."""

    def __init__(self, template: str, fn: Callable[..., Any], workflow: str) -> None:
        self.template = template
        self.workflow = workflow
        self._signature = inspect.signature(fn)
        params = self._signature.parameters
        self._var_keyword = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
        for field in _field_names(template, workflow):
            if field not in params and self._var_keyword is None:
                raise IdTemplateError(
                    f"the id template {template!r} of workflow {workflow!r} names "
                    f"{{{field}}}, but {fn.__qualname__}() has no parameter {field!r} "
                    f"(its parameters: {', '.join(params) or 'none'})"
                )

    def format(self, bound: inspect.BoundArguments) -> str:
        values = dict(bound.arguments)
        if self._var_keyword is not None:
            values.update(values.pop(self._var_keyword, {}))
        try:
            run_id = self.template.format_map(values)
        except (KeyError, IndexError, AttributeError) as exc:
            raise IdTemplateError(
                f"the id template {self.template!r} of workflow {self.workflow!r} "
                f"could not be filled from the call's arguments: {exc!r}"
            ) from None
        if _ADDRESS.search(run_id) is not None:  # rare: only then look at each field
            self._refuse_addresses(values)
        return run_id

    def _refuse_addresses(self, values: dict[str, Any]) -> None:
        """Raise if a field's text holds a memory address (a string argument's may)."""
        formatter = string.Formatter()
        for _, field, spec, conversion in formatter.parse(self.template):
            if field is None:
                continue
            value: object = None
            try:
                value, _ = formatter.get_field(field, (), values)
                if type(value) is str:  # the caller's own text: the same in every process
                    continue
                shown = formatter.format_field(
                    formatter.convert_field(value, conversion),
                    formatter.vformat(spec, (), values) if spec else "",
                )
            except Exception:  # a __format__ that fails the second time: cannot tell
                shown = None
            if shown is None:
                where = ""
            elif (found := _ADDRESS.search(shown)) is not None:
                start = max(found.start() - 60, 0)  # from the first "<" not too far back
                start = max(shown.find("<", start, found.start()), start)
                where = f" ({shown[start : found.end()]} from {{{field}}}, a {_type_name(value)})"
            else:
                continue
            raise IdTemplateError(
                f"the id template {self.template!r} of workflow {self.workflow!r} gave a "
                f"run id whose text holds a memory address{where}: it would be different "
                "in every process, so the run could never be resumed; name a stable "
                "attribute in the template (like {order.id}), give the class a __str__, "
                "or call .run(run_id, ...) with an explicit run id"
            )


def _field_names(template: str, workflow: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise IdTemplateError(
            f"the id template {template!r} of workflow {workflow!r} is not a valid "
            f"format string: {exc}"
        ) from None
    fields: list[str] = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = _ROOT.split(field, 1)[0]
        if not root or root.isdigit():
            raise IdTemplateError(
                f"the id template {template!r} of workflow {workflow!r} must name "
                f"arguments, like {{order_id}}; positional fields such as {{{field}}} "
                "are not allowed"
            )
        fields.append(root)
    return fields


# -- the default run id -------------------------------------------------------------------

_SAFE = re.compile(r"[A-Za-z0-9_.:@+=,]+")  # ASCII only: `re` \d would take other digits
_DIGITS = re.compile(r"[0-9]+")
# What `quote` keeps besides letters, digits and "_.-~" (it never escapes those).
_QUOTE_SAFE = "_.:@+=,"


def default_run_id(
    app: str, fn_name: str, bound: inspect.BoundArguments, hints: Mapping[str, Any]
) -> str:
    """``app-fn_name-part-...``, one part per parameter (see the module's docstring).

    ``hints`` are the function's resolved type hints (``typing.get_type_hints``), empty
    if they cannot be resolved: they say which parameters are ``str`` parameters.
    Raises :class:`IdTemplateError` for an argument with no JSON form.
    """
    arguments = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    arguments.apply_defaults()  # `bound` should have them already: never mutate it
    parts = [app, fn_name]
    for name, value in arguments.arguments.items():
        text = _canonical(value, app, fn_name, name)
        parts.append(_part(text, is_text=_is_str_annotation(hints.get(name))))
    return "-".join(parts)


def _canonical(value: Any, app: str, fn_name: str, name: str) -> str:
    try:
        return canonical_json(to_json(value))
    except (TypeError, ValueError, RecursionError) as exc:  # Unserializable, huge ints ...
        why = str(exc) if isinstance(exc, Unserializable) else f"{type(exc).__name__}: {exc}"
        raise IdTemplateError(
            f"workflow {f'{app}.{fn_name}'!r} has no id template, so its run id is made "
            f"from the JSON form of its arguments, but argument {name!r} (a "
            f"{_type_name(value)}) has none ({why}); give @wf.workflow(id=...) a template "
            "over parts of it that are stable, or call .run(run_id, ...) with an explicit "
            "run id"
        ) from None


def _part(text: str, *, is_text: bool) -> str:
    """One argument's part of the id, from its canonical JSON ``text``.

    Three kinds, told apart by their first character and by being all digits: digits
    (an int >= 0, for a non-``str`` parameter), safe text (a string, all digits only for
    a ``str`` parameter) and ``~`` + escaped JSON. Each is one-to-one on its own, so
    the part gives back ``text``; and none holds a ``-``.
    """
    if not is_text and _DIGITS.fullmatch(text):  # JSON numbers of these digits are ints
        return text
    if text.startswith('"'):
        inner = text[1:-1]  # safe characters need no JSON escapes: the string itself
        if _SAFE.fullmatch(inner) and (is_text or not _DIGITS.fullmatch(inner)):
            return inner
    escaped = quote(text, safe=_QUOTE_SAFE, encoding="utf-8", errors="surrogatepass")
    return "~" + escaped.replace("-", "%2D")


def _is_str_annotation(hint: Any) -> bool:
    """``str``, ``str | None``, ``Optional[str]``, ``Annotated[...]`` of those."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        members = [member for member in typing.get_args(hint) if member is not type(None)]
        return all(member is str for member in members)  # a union has two members or more
    return hint is str


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


#: The longest run id or signal name a store is asked to keep, in UTF-8 bytes: keys of
#: PostgreSQL's indexes hold at most ~2,700 bytes (run id and step id together).
MAX_KEY_BYTES = 1024


def check_storable_key(value: object, what: str, where: str = "") -> None:
    """Refuse, before anything is written or run, a run id or signal name (``what``
    says which) that some store cannot keep: not a str, a lone surrogate (no UTF-8),
    a NUL character (PostgreSQL's text refuses it), more than MAX_KEY_BYTES. ``where``
    follows the value in messages (" of task 'x' in run 'r'")."""
    if not isinstance(value, str):
        raise DurableError(f"a {what} is a str, not {type(value).__name__} ({value!r})")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise DurableError(
            f"the {what} {value!r}{where} cannot be stored: it holds "
            f"{exc.object[exc.start]!r}, "
            "a lone surrogate that no text encoding can write; nothing was run"
        ) from None
    if "\x00" in value:
        raise DurableError(
            f"the {what} {value!r}{where} cannot be stored: it holds a NUL character (\\x00), "
            "which PostgreSQL's text refuses; nothing was run"
        )
    if size > MAX_KEY_BYTES:
        raise DurableError(
            f"the {what} {value[:60]!r}...{where} is {size:,} bytes long, more than the "
            f"{MAX_KEY_BYTES:,} a store is asked to keep; nothing was run"
        )
