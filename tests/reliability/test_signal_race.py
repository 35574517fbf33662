"""``complete()`` of one signal from two processes at once: exactly one returns True,
and the waiting workflow gets that caller's payload. Repeated for many signals.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow

from .conftest import RedisServer, Spawn, finish

SIGNALS = 150
TICK = 0.012
START_DELAY = 2.5


@pytest.fixture(params=["sqlite", "redis"])
def race_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
        return
    pytest.importorskip("durable_redis", reason="durable-redis is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server.url
    server.kill()


@pytest.mark.slow
async def test_two_processes_completing_one_signal_deliver_it_once(
    race_url: str, spawn: Spawn
) -> None:
    url = race_url
    wf = Workflow("race", db=url)

    @wf.workflow(id="race-{n}")
    async def waiter(n: int) -> Any:
        return await wf.signal("go", poll=0.05)

    async with wf:
        # Half the runs wait before the race, half start after it (the signal is there).
        early = {n: asyncio.ensure_future(waiter(n)) for n in range(0, SIGNALS, 2)}
        t0 = time.time() + START_DELAY
        procs = [spawn("race", url, p, SIGNALS, t0, TICK) for p in (1, 2)]
        outs = await asyncio.gather(*(asyncio.to_thread(finish, proc) for proc in procs))
        late = {n: asyncio.ensure_future(waiter(n)) for n in range(1, SIGNALS, 2)}
        got = dict(zip([*early, *late], await asyncio.wait_for(
            asyncio.gather(*early.values(), *late.values()), 30), strict=True))  # fmt: skip
        stored = {n: await wf.store.get_signal(f"race-{n}", "go") for n in range(SIGNALS)}

    reports = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    won = {p: set(report["won"]) for p, report in zip((1, 2), reports, strict=True)}
    gaps = [abs(a - b) for a, b in zip(reports[0]["starts"], reports[1]["starts"], strict=True)]
    print(
        f"{SIGNALS} signals completed by 2 processes at once: process 1 won {len(won[1])}, "
        f"process 2 won {len(won[2])}, both {len(won[1] & won[2])}, neither "
        f"{SIGNALS - len(won[1] | won[2])}; start gap median {statistics.median(gaps) * 1e3:.2f}"
        f" ms, max {max(gaps) * 1e3:.2f} ms, {sum(g < 0.003 for g in gaps)} within 3 ms"
    )
    assert not won[1] & won[2], "two callers were both told they delivered the signal"
    assert won[1] | won[2] == set(range(SIGNALS)), "a signal no caller delivered"
    close = sum(gap < 0.003 for gap in gaps)
    assert close >= SIGNALS // 5, f"only {close} deliveries started within 3 ms of each other"
    for n in range(SIGNALS):
        winner = 1 if n in won[1] else 2
        assert got[n] == {"from": winner, "n": n}, n
        assert stored[n] == (True, {"from": winner, "n": n})
