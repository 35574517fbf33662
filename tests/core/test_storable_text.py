"""Text a store cannot keep never reaches it: run ids and signal names with a NUL, a
lone surrogate or more than 1,024 bytes are refused before anything runs; an error
message with such characters is kept escaped, so that the run's outcome is written
(a run whose outcome cannot be written stays running, and recovery reruns it)."""

from __future__ import annotations

import pytest

from durable import Workflow
from durable.errors import DurableError
from durable.records import storable_text


class StrictTextStore:
    """What PostgreSQL does with text: a NUL or a lone surrogate is an error."""

    @staticmethod
    def check(text: str | None) -> None:
        if text is not None:
            assert "\x00" not in text, f"a NUL reached the store: {text!r}"
            text.encode("utf-8")


def _strict_workflow() -> tuple[Workflow, list[str | None]]:
    from durable import InMemoryStore

    seen: list[str | None] = []

    class Store(InMemoryStore):
        async def finish_run(self, run_id: str, owner: str, status: str, **kw: object) -> bool:  # type: ignore[override]
            error = kw.get("error")
            assert error is None or isinstance(error, str)
            StrictTextStore.check(error)
            seen.append(error)
            return await super().finish_run(run_id, owner, status, **kw)  # type: ignore[arg-type]

        async def record_attempt(
            self, run_id: str, step_id: str, attempt: int, error: str, **kw: object
        ) -> None:  # type: ignore[override]
            StrictTextStore.check(error)
            await super().record_attempt(run_id, step_id, attempt, error, **kw)  # type: ignore[arg-type]

    return Workflow("app", db=Store()), seen


@pytest.mark.parametrize("message", ["bad\x00byte", "lone \udc80 surrogate"])
async def test_an_error_the_store_cannot_keep_is_kept_escaped(message: str) -> None:
    wf, seen = _strict_workflow()

    @wf.task(retries=1, backoff=lambda attempt: 0.0)
    async def fails() -> None:
        raise ValueError(message)

    @wf.workflow(id="r-{n}")
    async def flow(n: int) -> None:
        await fails()

    with pytest.raises(ValueError, match=r"byte|surrogate"):
        await flow(1)
    record = await wf.get_run("r-1")
    assert record is not None
    assert record.status == "failed"
    assert seen
    assert seen[-1] is not None
    assert "ValueError: " in seen[-1]
    assert record.error == seen[-1]


def test_storable_text_escapes_only_what_it_must() -> None:
    assert storable_text("plain, é, 中") == "plain, é, 中"
    assert storable_text("a\x00b") == "a\\x00b"
    assert storable_text("x\udc80y") == "x\\udc80y"


@pytest.mark.parametrize(
    "bad",
    ["nul\x00id", "surrogate\udc80", "x" * 1025, "é" * 513],
    ids=["nul", "surrogate", "long", "long-utf8"],
)
async def test_run_ids_and_signal_names_a_store_cannot_keep_are_refused(bad: str) -> None:
    wf = Workflow("app", db="memory://")
    ran: list[str] = []

    @wf.workflow
    async def flow(key: str) -> str:
        ran.append(key)
        return key

    with pytest.raises(DurableError, match=r"cannot be stored|bytes long"):
        await flow.run(bad, "k")
    with pytest.raises(DurableError, match=r"cannot be stored|bytes long"):
        await wf.complete(bad, "approval", True)
    with pytest.raises(DurableError, match=r"cannot be stored|bytes long"):
        await wf.complete("r-1", bad, True)
    assert ran == []
    assert await flow.run("x" * 1024, "fits") == "fits"


async def test_a_step_id_a_store_cannot_keep_is_refused_before_the_step_runs() -> None:
    wf = Workflow("app", db="memory://")
    ran: list[int] = []

    @wf.task
    async def charge() -> int:
        ran.append(1)
        return 1

    @wf.workflow(id="pay-{n}")
    async def flow(n: int) -> int:
        return await charge(step_id="charge\x00v2")  # type: ignore[call-arg]

    with pytest.raises(DurableError, match="cannot be stored"):
        await flow(1)
    assert ran == [], "the step ran, and its checkpoint could never be written"
