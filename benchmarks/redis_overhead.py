"""Per-step cost of a workflow on Redis against a raw redis-py SET, in the same run.

    python benchmarks/redis_overhead.py [--url redis://127.0.0.1:6379/9] [--steps 1000]

Every step of a workflow is one checkpoint, one round trip (a Lua script). The floor
is the cheapest round trip redis-py can make: an awaited ``SET`` on the same server,
measured here in the same process just before. The target is a ratio of at most 1.5.
Keys go under a fresh prefix and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import redis.asyncio
from redis.exceptions import RedisError

from durable import InMemoryStore, Store, Workflow
from durable_redis import RedisStore


async def raw_set(client: redis.asyncio.Redis, n: int, prefix: str) -> float:
    """Seconds per awaited SET of a small JSON value, the kind a step stores."""
    value = '{"order": 42, "status": "ok"}'
    started = time.perf_counter()
    for i in range(n):
        await client.set(f"{prefix}:raw:{i % 100}", value)
    return (time.perf_counter() - started) / n


async def workflow_steps(store: Store, n: int, run_id: str) -> float:
    """Seconds per step of one run of ``n`` steps (claim and finish included)."""
    wf = Workflow("bench", db=store, default_retries=0)

    @wf.task
    async def step(i: int) -> dict[str, int | str]:
        return {"order": i, "status": "ok"}

    @wf.workflow
    async def flow() -> int:
        for i in range(n):
            await step(i, step_id=f"s{i}")
        return n

    await wf.get_run("warm-up")  # sets the store up outside the timing
    started = time.perf_counter()
    await flow.run(run_id)
    elapsed = time.perf_counter() - started
    await wf.close()
    return elapsed / n


async def main(url: str, steps: int, rounds: int) -> int:
    prefix = f"durable-bench-{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.ping()
    except RedisError as exc:
        print(f"Redis is not reachable at {url}: {exc}", file=sys.stderr)
        return 2
    floors: list[float] = []
    redis_steps: list[float] = []
    memory_steps: list[float] = []
    try:
        await raw_set(client, 500, prefix)  # warm up connection and caches
        for r in range(rounds):
            floors.append(await raw_set(client, steps, prefix))
            store = RedisStore(url, prefix=prefix)
            redis_steps.append(await workflow_steps(store, steps, f"run-{r}"))
            memory_steps.append(await workflow_steps(InMemoryStore(), steps, f"run-{r}"))
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    floor, per_step = statistics.median(floors), statistics.median(redis_steps)
    engine = statistics.median(memory_steps)
    # Each round measures the floor and the workflow back to back, so the ratio of a
    # round is fair even when the machine's load changes between rounds.
    ratios = sorted(step / raw for step, raw in zip(redis_steps, floors, strict=True))
    print(f"redis-py {redis.__version__}, server {url}, {steps} steps x {rounds} rounds (medians)")
    print(f"{'measure':<44} {'µs/op':>8}")
    print(f"{'raw redis-py SET round trip (the floor)':<44} {floor * 1e6:8.1f}")
    print(f"{'workflow step on RedisStore':<44} {per_step * 1e6:8.1f}")
    print(f"{'workflow step on InMemoryStore (engine only)':<44} {engine * 1e6:8.1f}")
    ratio = statistics.median(ratios)
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(
        f"ratio step/floor: {ratio:.2f}x median of rounds (range {ratios[0]:.2f}-{ratios[-1]:.2f})"
        f"  target <= 1.5x: {verdict}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("DURABLE_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.steps, args.rounds)))
