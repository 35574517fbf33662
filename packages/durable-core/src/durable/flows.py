"""``@wf.workflow``: the durable entry point, and the arguments a run remembers."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .calls import Call
from .errors import SerializationError
from .identity import call_inputs
from .ids import RunIdTemplate, default_run_id
from .records import RunRecord
from .runner import rebuild
from .serialization import encoder, from_json, return_annotation
from .turns import line_to_wait_in

if TYPE_CHECKING:
    from .runner import RunExecutor

P = ParamSpec("P")
R = TypeVar("R")


class WorkflowFunction(Generic[P, R]):
    """A durable workflow. Await it like the function it wraps.

    Calling it starts (or resumes, or replays) the run whose id the template gives;
    ``.run(run_id, ...)`` names the run explicitly.
    """

    def __init__(
        self,
        app: str,
        executor: RunExecutor,
        fn: Callable[P, Awaitable[R]],
        *,
        id_template: str | None,
        name: str,
    ) -> None:
        self.fn = fn
        self.name = name
        self.workflow_id = f"{app}.{name}"
        self._app = app
        self._executor = executor
        self._signature = inspect.signature(fn)
        self._type_hints: dict[str, Any] | None = None
        self._result_encoder: Callable[[Any], Any] | None = None
        self._template = (
            RunIdTemplate(id_template, fn, self.workflow_id) if id_template is not None else None
        )
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self._start(None, args, kwargs)

    async def run(self, run_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Start, resume or replay the run ``run_id`` with these arguments."""
        return await self._start(run_id, args, kwargs)

    async def _start(self, run_id: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        # A thousand calls gathered at once each wait their turn before binding and
        # encoding their arguments, rather than all in the caller's turn of the loop.
        if (line := line_to_wait_in()) is not None:  # take_turn, without a coroutine
            await line.wait()
        bound = self._signature.bind(*args, **kwargs)  # once, for the inputs and the id
        inputs, digest = call_inputs(bound)  # applies the defaults to ``bound``
        if run_id is None:
            run_id = self._run_id(bound)
        result: R = await self._executor.run(self, Call(run_id, args, kwargs, inputs, digest))
        return result

    def call_from_record(self, record: RunRecord, *, what: str = "wf.resume()") -> Call:
        """The call that runs ``record``'s run again with the arguments it stored.

        The record's own input digest stands for the call: the stored arguments are the
        run's inputs, even if the function's defaults changed since.
        """
        args, kwargs = self.arguments_from(record.inputs, record.run_id)
        return Call(record.run_id, args, kwargs, record.inputs, record.input_digest, what)

    async def run_call(self, call: Call) -> R:
        result: R = await self._executor.run(self, call)
        return result

    def run_id_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The run id a call with these arguments uses."""
        return self._run_id(self._signature.bind(*args, **kwargs))

    def _run_id(self, bound: inspect.BoundArguments) -> str:
        bound.apply_defaults()
        if self._template is None:
            return default_run_id(self._app, self.name, bound, self._hints())
        return self._template.format(bound)

    def _hints(self) -> dict[str, Any]:
        if self._type_hints is None:
            try:
                self._type_hints = typing.get_type_hints(self.fn)
            except Exception:  # unresolvable forward references: no annotations
                self._type_hints = {}
        return self._type_hints

    def arguments_from(self, inputs: Any, run_id: str) -> tuple[list[Any], dict[str, Any]]:
        """Rebuild a call's ``(args, kwargs)`` from a run's stored inputs."""
        if not isinstance(inputs, dict):
            raise SerializationError(
                f"run {run_id!r} of workflow {self.workflow_id!r} has no stored inputs "
                "(its arguments could not be stored as JSON), so it cannot be restarted "
                "from the store; call the workflow with its arguments instead"
            )
        stored = typing.cast("dict[str, Any]", inputs)
        hints = self._hints()
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, param in self._signature.parameters.items():
            if name not in stored:
                continue
            annotation = _parameter_annotation(param, hints)
            try:
                value = from_json(stored[name], annotation)
            except Exception as exc:  # the parameter's type changed since the run started
                raise SerializationError(
                    f"run {run_id!r} of workflow {self.workflow_id!r}: its stored argument "
                    f"{name!r} cannot be rebuilt as {annotation!r} ({type(exc).__name__})"
                ) from exc
            if param.kind is param.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is param.VAR_KEYWORD:
                kwargs.update(value)
            elif param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[name] = value
        return args, kwargs

    def encode_result(self, result: Any) -> Any:
        """The workflow's result as JSON data, by its return annotation (unions tagged)."""
        if self._result_encoder is None:
            self._result_encoder = encoder(return_annotation(self.fn))
        return self._result_encoder(result)

    def rebuild_result(self, value: Any, run_id: str) -> R:
        result: R = rebuild(value, self.fn, f"workflow {self.workflow_id!r} (run {run_id!r})")
        return result

    def __repr__(self) -> str:
        return f"<durable workflow {self.workflow_id!r}>"


def _parameter_annotation(param: inspect.Parameter, hints: dict[str, Any]) -> Any:
    annotation = hints.get(param.name, Any)
    if param.kind is param.VAR_POSITIONAL:
        return list[annotation]  # type: ignore[valid-type]
    if param.kind is param.VAR_KEYWORD:
        return dict[str, annotation]  # type: ignore[valid-type]
    return annotation
