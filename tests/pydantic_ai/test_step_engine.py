"""Agent steps run through core's step engine, as ``@wf.task`` calls do.

So a model request's retry backoff is cut short by ``wf.cancel``, its failed attempts are on
record (a run resumed during the backoff does not get a fresh retry budget), and the engine's
``DURABLE_FAULTS`` fault points fire in agent steps too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import RunCancelledError, Workflow
from durable.backoff import constant
from durable_pydantic_ai import TaskConfig, WorkflowDurability
from durable_sqlite import SQLiteStore

WORKER = Path(__file__).with_name("agent_worker.py")


def http_error(status: int) -> ModelHTTPError:
    return ModelHTTPError(status_code=status, model_name="function", body={"error": "x"})


class FailingModel:
    """Raises a retryable 503 on its first ``failures`` calls, then answers; counts calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        if self.calls <= self.failures:
            raise http_error(503)
        return ModelResponse(parts=[TextPart("answer")])


def agent_flow(wf: Workflow, model: FailingModel, config: TaskConfig, run_id: str) -> Any:
    agent = Agent(
        FunctionModel(model.respond),
        name="flaky",
        capabilities=[WorkflowDurability(model_task_config=config)],
    )

    @wf.workflow(id=run_id)
    async def flow() -> str:
        return (await agent.run("go")).output

    return flow


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    """Until ``condition()`` (awaited) is true, or ``seconds`` pass (the asserts tell)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.01)


async def test_cancel_during_a_model_retry_backoff_ends_the_run_cancelled_promptly(
    wf: Workflow,
) -> None:
    model = FailingModel(failures=1)
    flow = agent_flow(wf, model, TaskConfig(retries=3, backoff=constant(30)), "cancel-agent")
    running = asyncio.ensure_future(flow())

    async def failed_once() -> bool:
        return model.calls >= 1

    await wait_for(failed_once)
    await asyncio.sleep(0.05)  # in the 30 s backoff now
    started = time.monotonic()
    await wf.cancel("cancel-agent")
    try:
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(running, timeout=5)
    finally:
        running.cancel()
    assert time.monotonic() - started < 2, "the backoff was not cut short"
    assert model.calls == 1
    record = await wf.get_run("cancel-agent")
    assert record is not None
    assert record.status == "cancelled"


async def test_model_attempts_are_persisted_across_a_restart_during_the_backoff(
    tmp_path: Path,
) -> None:
    path = tmp_path / "attempts.db"
    always = FailingModel(failures=100)

    first = Workflow("attempts", db=SQLiteStore(path))
    flow = agent_flow(first, always, TaskConfig(retries=2, backoff=constant(60)), "agent-run")
    await first.store.setup()
    running = asyncio.ensure_future(flow())

    async def on_record() -> bool:
        attempts = dict(await first.store.load_attempts("agent-run"))
        return always.calls >= 1 and sum(attempts.values()) >= 1

    await wait_for(on_record, seconds=3)
    running.cancel()  # what wf.worker() does to its runs when it exits: mid-backoff
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.close()
    assert always.calls == 1

    again = Workflow("attempts", db=SQLiteStore(path))
    resumed = agent_flow(again, always, TaskConfig(retries=2, backoff=constant(0)), "agent-run")
    async with again:
        with pytest.raises(ModelHTTPError):
            await resumed()
    # retries=2 is 3 attempts in all: one before the restart, two after (not three more).
    assert always.calls == 3, f"retries=2 made {always.calls} attempts across the restart"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before-checkpoint", "after-checkpoint"])
def test_a_fault_point_fires_in_an_agent_step(tmp_path: Path, point: str) -> None:
    db, ledger = tmp_path / "agent.db", tmp_path / "ledger.txt"
    env = {**os.environ, "DURABLE_FAULTS": f"{point}@worker.model_request#1"}
    worker = subprocess.run(
        [sys.executable, str(WORKER), str(db), str(ledger)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert worker.returncode == -signal.SIGKILL, (worker.returncode, worker.stderr)
    # Killed at the second model request's checkpoint: no later model call or tool call ran.
    assert ledger.read_text().split() == ["model-1", "tool-1", "model-2"]
