"""A refused claim whose record the rules would have granted is a store's answer from
before a concurrent claim (a snapshot): the engine asks again instead of taking the
record's "result" for the run's answer."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from durable import InMemoryStore, Workflow
from durable.errors import StoreError
from durable.store import RunClaim


class Widget:
    def __init__(self, n: int) -> None:
        self.n = n


class StaleOnce(InMemoryStore):
    """Refuses ``stale`` claims with the run as "completed without a result", the state
    before another process's claim, then answers truly."""

    def __init__(self, stale: int) -> None:
        super().__init__()
        self.stale = stale

    async def claim_run(self, run_id: str, workflow: str, inputs: Any, **kw: Any) -> RunClaim:
        claim = await super().claim_run(run_id, workflow, inputs, **kw)
        if self.stale and not claim.created:
            self.stale -= 1
            await self.release_run(run_id, kw["owner"])
            snapshot = dataclasses.replace(
                claim.record, status="completed", has_result=False, result=None, owner=None
            )
            return RunClaim(False, snapshot)
        return claim


def _flow(wf: Workflow) -> Any:
    @wf.workflow(id="w-{x}")
    async def flow(x: int) -> Widget:
        return Widget(x)  # not JSON: the run completes without a stored result

    return flow


async def test_a_stale_refusal_is_asked_again_not_returned() -> None:
    store = StaleOnce(stale=0)
    wf = Workflow("app", db=store)
    flow = _flow(wf)
    assert (await flow(1)).n == 1
    store.stale = 1
    again = await flow(1)
    assert isinstance(again, Widget), f"the call returned {again!r}, another state's result"


async def test_a_store_that_keeps_refusing_what_the_rules_allow_is_an_error() -> None:
    store = StaleOnce(stale=0)
    wf = Workflow("app", db=store)
    flow = _flow(wf)
    await flow(1)
    store.stale = 100
    with pytest.raises(StoreError, match="refused 6 claims in a row that its rules allow"):
        await flow(1)
