"""Fixtures shared by the whole suite.

A test that needs a server skips, with a reason, when the server is not reachable;
with ``DURABLE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) it fails instead, so that CI
can never go green by skipping what it was meant to test (see ``redis_url`` in
``tests/redis``, env ``DURABLE_REDIS_URL``).

``start_script``  starts ``python SCRIPT ARGS...`` as a real process (output piped),
                  and kills whatever still runs when the test ends.
"""

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durable import Store, Workflow
from durable.backoff import constant

StartScript = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start_script() -> Iterator[StartScript]:
    started: list[subprocess.Popen[str]] = []

    def start(script: Path, *args: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
async def make_wf(db: Callable[[], Store]) -> AsyncIterator[Callable[..., Workflow]]:
    """Workflows on the folder's ``db`` fixture (a store factory), closed afterwards."""
    made: list[Workflow] = []

    def make(name: str = "app", **kwargs: Any) -> Workflow:
        kwargs.setdefault("default_backoff", constant(0))
        workflow = Workflow(name, db=db(), **kwargs)
        made.append(workflow)
        return workflow

    yield make
    for workflow in made:
        await workflow.close()
