"""Step results and signal payloads are never logged above DEBUG."""

import logging

import pytest

from durable import Workflow

SECRET = "sk-live-5f3a9c0d1e2b-do-not-log"


class Crash(Exception):
    pass


async def test_results_and_payloads_are_not_logged_above_debug(
    wf: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0
    crash = [True]

    @wf.task(retries=1)
    async def fetch_token() -> dict[str, str]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Crash("transient")  # a retry warning is logged
        return {"token": SECRET}

    @wf.workflow(id="r")
    async def flow() -> str:
        token = (await fetch_token())["token"]
        approval = await wf.signal("approval", poll=0.05)
        if crash:
            crash.clear()
            raise Crash("after the checkpoint")
        return token + approval["note"]

    caplog.set_level(logging.DEBUG, logger="durable")
    await wf.complete("r", "approval", {"note": SECRET})
    with pytest.raises(Crash):
        await flow()
    assert await flow() == SECRET + SECRET  # replayed and completed

    records = [r for r in caplog.records if r.name.startswith("durable")]
    assert any(r.levelno >= logging.WARNING for r in records)  # the logs were captured
    for record in records:
        if record.levelno > logging.DEBUG:
            assert SECRET not in record.getMessage(), record.getMessage()
