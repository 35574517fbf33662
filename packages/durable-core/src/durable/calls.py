"""One call of a workflow as the executor sees it, and the awaits between runs.

A run that awaits itself, directly or through runs it awaits, would wait for its own
result forever; both checks here turn that into a :class:`RecursiveRunError` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .context import active_run
from .errors import RecursiveRunError
from .records import RunRecord

if TYPE_CHECKING:
    from .flows import WorkflowFunction
    from .store import Store


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a workflow, as the executor needs it."""

    run_id: str
    args: Any
    kwargs: Any
    #: The arguments as JSON data, kept in the run's record (None if not storable).
    inputs: Any
    #: Their digest (:func:`durable.identity.input_digest`), or the recorded one when
    #: the run is resumed from its record.
    digest: str | None
    #: Who calls, for error messages.
    what: str = "this call"


@dataclass(slots=True)
class InFlight:
    outcome: asyncio.Future[Any]
    #: The call the run executing here was started with (its workflow and inputs).
    workflow: str
    call: Call

    def record(self) -> RunRecord:
        """The identity of the run in flight, as a record for the conflict check."""
        call = self.call
        return RunRecord(
            call.run_id, self.workflow, "running", call.inputs, input_digest=call.digest
        )


def refuse_self_call(store: Store, run_id: str, flow: WorkflowFunction[..., Any]) -> None:
    """A run that awaits itself (or a run that awaits it) would wait forever."""
    ctx = active_run.get()
    while ctx is not None:
        if ctx.run_id == run_id and ctx.store is store:
            raise RecursiveRunError(
                f"run {run_id!r} of workflow {flow.workflow_id!r} awaits itself (from "
                f"inside its own execution, in workflow {ctx.workflow_id!r}); it would "
                "wait for its own result forever. Give the inner call another run id"
            )
        ctx = ctx.parent


class AwaitGraph:
    """Which runs the code of each run in this process awaits (how many calls of each)."""

    def __init__(self) -> None:
        self._awaits: dict[str, Counter[str]] = {}

    @contextlib.contextmanager
    def awaiting(self, waiter: str, run_id: str, workflow: str) -> Generator[None]:
        """``waiter``'s code awaits ``run_id`` for the block; refused if ``run_id``,
        through the runs it awaits, already awaits ``waiter``."""
        self._refuse_cycle(waiter, run_id, workflow)
        waits = self._awaits.setdefault(waiter, Counter())
        waits[run_id] += 1
        try:
            yield
        finally:
            waits[run_id] -= 1
            if not waits[run_id]:
                del waits[run_id]
                if not waits:
                    del self._awaits[waiter]

    def _refuse_cycle(self, waiter: str, run_id: str, workflow: str) -> None:
        seen: set[str] = set()
        todo = [run_id]
        while todo:
            current = todo.pop()
            if current == waiter:
                raise RecursiveRunError(
                    f"run {waiter!r} awaits run {run_id!r} of workflow {workflow!r}, which "
                    f"(through the runs it awaits) awaits {waiter!r}: both would wait "
                    "forever. Break the cycle: one of them must not await the other"
                )
            if current not in seen:
                seen.add(current)
                todo.extend(self._awaits.get(current, ()))
