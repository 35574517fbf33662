"""Run ids: ``id=`` templates over a workflow's arguments, and the default id."""

from __future__ import annotations

import inspect
import re
import string
from collections.abc import Callable
from typing import Any

from .errors import IdTemplateError

_ROOT = re.compile(r"[.\[]")


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
            return self.template.format_map(values)
        except (KeyError, IndexError, AttributeError) as exc:
            raise IdTemplateError(
                f"the id template {self.template!r} of workflow {self.workflow!r} "
                f"could not be filled from the call's arguments: {exc!r}"
            ) from None


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


def default_run_id(app: str, fn_name: str, bound: inspect.BoundArguments) -> str:
    """The seed's default: the app name, the function name and every argument, joined."""
    return "-".join([app, fn_name, *(str(v) for v in bound.arguments.values())])
