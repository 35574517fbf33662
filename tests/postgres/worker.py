"""Processes the PostgreSQL tests start (and kill, pause): ``python worker.py CMD ARGS...``.

``URL`` is a ``db=`` URL with ``?schema=``; ``T0`` an epoch time to start at, so that
several processes overlap; ``LEDGER`` a file step bodies append lines to (one
``os.write`` each, fsynced: a kill cannot tear or lose a line that was written).

crash URL LEDGER STEPS PAUSE
    Run ``crash-run``: STEPS steps ``step-I`` returning I*I, each logging ``step-I``
    then sleeping PAUSE s. Prints ``{"result": ...}``.
fence URL ROLE LEDGER PAUSE_AT
    Own ``fenced-run`` (six steps, lease 1 s). Step bodies log ``ROLE start I`` and
    return ``ROLE-I``; role ``a`` prints ``ready`` in the body of step PAUSE_AT and
    blocks there half a second (the test SIGSTOPs it). Prints the result or the
    error's type as JSON.
contend URL PROC RUNS STEPS T0 LEDGER
    Call runs ``c-0`` ... ``c-<RUNS-1>`` all at once (each process the same ids, in
    its own order). Step bodies log ``step RUN I PID``, a finished body ``done RUN PID``.
    Prints a JSON summary: how many results were right, the wrong ones, the errors.
orphan URL HOST LEDGER PREFIX COUNT LEASE
    As host HOST (``socket.gethostname``): start runs ``PREFIX-0`` ... of ``job``; each
    checkpoints ``before``, then blocks forever in ``hang``. Prints READY when all
    COUNT runs are in ``hang``, then waits to be killed.
recover URL HOST LEDGER T0 [LEASE]
    As host HOST, from T0: ``wf.recover()``; prints ``{"recovered": [...]}`` (sorted).
tinypool URL
    A Workflow on the user's asyncpg pool of one connection: a run waits for a signal,
    ``complete`` delivers it. Prints ``{"result": ..., "pool_open": ...}``.
loops URL
    One Workflow used from three ``asyncio.run`` calls in turn, each running a flow
    that waits for a signal. Prints ``{"results": [...]}``.
setup URL T0
    Build the store from URL, from T0 call ``setup()`` and write a step; prints OK or
    the error as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit


def say(text: str) -> None:
    print(text, flush=True)


def wait_until(t0: str) -> None:
    delay = float(t0) - time.time()
    if delay > 0:
        time.sleep(delay)


class Ledger:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())
        os.fsync(self.fd)


def pretend_host(host: str) -> None:
    """Be another machine: owner ids name this host (durable.owners reads it lazily)."""
    socket.gethostname = lambda: host


async def crash(url: str, ledger_path: str, steps: str, pause: str) -> None:
    from durable import Workflow

    ledger = Ledger(ledger_path)
    wf = Workflow("crash", db=url, default_retries=0, max_recoveries=1000)

    @wf.task
    async def square(i: int) -> dict[str, int]:
        ledger.write(f"step-{i}")
        await asyncio.sleep(float(pause))
        return {"i": i, "square": i * i}

    @wf.workflow(id="crash-run")
    async def squares() -> int:
        total = 0
        for i in range(int(steps)):
            total += (await square(i, step_id=f"step-{i}"))["square"]
        return total

    async with wf:
        say(json.dumps({"result": await squares()}))


async def fence(url: str, role: str, ledger_path: str, pause_at_text: str) -> None:
    from durable import Workflow

    ledger, pause_at = Ledger(ledger_path), int(pause_at_text)
    wf = Workflow("fence", db=url, lease_seconds=1.0, default_retries=0)

    @wf.task
    async def work(i: int) -> str:
        ledger.write(f"{role} start {i}")
        if role == "a" and i == pause_at:
            say("ready")
            time.sleep(0.5)  # the test stops the process in here  # noqa: ASYNC251
        return f"{role}-{i}"

    @wf.workflow(id="fenced-run")
    async def six() -> list[str]:
        return [await work(i, step_id=f"step-{i}") for i in range(6)]

    async with wf:
        try:
            answer: dict[str, object] = {"result": await six()}
        except Exception as exc:
            answer = {"error": type(exc).__name__, "message": str(exc)}
        say(json.dumps(answer))


def contended_result(n: int, steps: int) -> int:
    return sum(n * 100 + i for i in range(steps))


async def contend(
    url: str, proc: str, runs_text: str, steps_text: str, t0: str, ledger_path: str
) -> None:
    from durable import Workflow
    from durable.backoff import constant

    ledger, runs, steps, pid = Ledger(ledger_path), int(runs_text), int(steps_text), os.getpid()
    wf = Workflow("contend", db=url, default_retries=0, default_backoff=constant(0))

    @wf.task
    async def step(run: int, i: int) -> int:
        ledger.write(f"step c-{run} {i} {pid}")
        return run * 100 + i

    @wf.workflow
    async def flow(n: int) -> int:
        total = 0
        for i in range(steps):
            total += await step(n, i, step_id=f"s{i}")
        ledger.write(f"done c-{n} {pid}")
        return total

    order = list(range(runs))
    shift = int(proc) * runs // 4
    order = order[shift:] + order[:shift]  # each process starts elsewhere, all meet
    async with wf:
        wait_until(t0)
        began = time.time()
        outcomes = await asyncio.gather(
            *(flow.run(f"c-{n}", n) for n in order), return_exceptions=True
        )
        ended = time.time()
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    wrong = [
        (n, o)
        for n, o in zip(order, outcomes, strict=True)
        if not isinstance(o, BaseException) and o != contended_result(n, steps)
    ]
    right = len(order) - len(errors) - len(wrong)
    say(json.dumps({"right": right, "wrong": wrong, "errors": errors[:20],
                    "began": began, "ended": ended}))  # fmt: skip


def machine_workflow(url: str, ledger: Ledger, lease: float, *, hang: bool) -> Any:
    from durable import Workflow

    wf = Workflow("machines", db=url, default_retries=0, lease_seconds=lease)
    host, pid = socket.gethostname(), os.getpid()
    hanging: list[str] = []
    all_hanging = asyncio.Event()
    wanted = [0]

    @wf.task
    async def before(run: str, n: int) -> int:
        ledger.write(f"before {run} {host} {pid}")
        return n

    @wf.task
    async def stuck(run: str, n: int) -> int:
        ledger.write(f"stuck {run} {host} {pid}")
        if hang:
            hanging.append(run)
            if len(hanging) == wanted[0]:
                all_hanging.set()
            await asyncio.sleep(3600)
        return 10 * n

    @wf.workflow
    async def job(run: str, n: int) -> int:
        return await before(run, n) + await stuck(run, n)

    return wf, job, all_hanging, wanted


async def orphan(
    url: str, host: str, ledger_path: str, prefix: str, count: str, lease: str
) -> None:
    pretend_host(host)
    wf, job, all_hanging, wanted = machine_workflow(
        url, Ledger(ledger_path), float(lease), hang=True
    )
    wanted[0] = int(count)
    async with wf:
        tasks = [
            asyncio.ensure_future(job.run(f"{prefix}-{n}", f"{prefix}-{n}", n))
            for n in range(int(count))
        ]
        await all_hanging.wait()
        say("READY")
        await asyncio.gather(*tasks)  # never: the test kills this process


async def recover(url: str, host: str, ledger_path: str, t0: str, lease: str = "1.0") -> None:
    pretend_host(host)
    wf, _, _, _ = machine_workflow(url, Ledger(ledger_path), float(lease), hang=False)
    async with wf:
        say("READY")
        wait_until(t0)
        recovered = await wf.recover()
    say(json.dumps({"recovered": sorted(recovered)}))


async def setup(url: str, t0: str) -> None:
    from durable.plugins import resolve_store

    store = resolve_store(url)
    wait_until(t0)
    try:
        await store.setup()
        await store.set_step("setup-run", f"step-{os.getpid()}", os.getpid())
        answer: dict[str, object] = {"ok": True}
    except Exception as exc:
        answer = {"error": type(exc).__name__, "message": str(exc)}
    finally:
        await store.close()
    say(json.dumps(answer))


async def tinypool(url: str) -> None:
    import asyncpg

    from durable import Workflow
    from durable_postgres import PostgresStore

    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    pool = await asyncpg.create_pool(
        urlunsplit(("postgresql", parts.netloc, parts.path, "", "")), min_size=1, max_size=1
    )
    wf = Workflow("app", db=PostgresStore(pool=pool, schema=schema), default_retries=0)

    @wf.workflow
    async def approval() -> Any:
        return await wf.signal("go", poll=0.5)

    waiter = asyncio.ensure_future(approval.run("tiny-pool"))
    await asyncio.sleep(0.5)
    assert await wf.complete("tiny-pool", "go", 7) is True
    result = await waiter
    await wf.close()
    say(json.dumps({"result": result, "pool_open": not pool.is_closing()}))
    await pool.close()


def loops(url: str) -> None:
    from durable import Workflow
    from durable_postgres import PostgresStore

    wf = Workflow("app", db=PostgresStore(url, retry_seconds=2), default_retries=0)

    @wf.task
    async def double(x: int) -> int:
        return 2 * x

    @wf.workflow
    async def flow(x: int) -> int:
        signalled: int = await wf.signal("go", poll=30.0)
        return await double(x) + signalled

    async def run(x: int) -> int:
        run_id = f"loop-{x}"
        waiting = asyncio.ensure_future(flow.run(run_id, x))
        await asyncio.sleep(0.3)
        assert await wf.complete(run_id, "go", 100) is True
        result: int = await asyncio.wait_for(waiting, 10)
        return result

    results = [asyncio.run(run(x)) for x in (1, 2, 3)]
    asyncio.run(wf.close())
    say(json.dumps({"results": results}))


COMMANDS: dict[str, Any] = {
    "crash": crash,
    "fence": fence,
    "contend": contend,
    "orphan": orphan,
    "recover": recover,
    "setup": setup,
    "tinypool": tinypool,
}

if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "loops":
        loops(*args)
    else:
        asyncio.run(COMMANDS[command](*args))
