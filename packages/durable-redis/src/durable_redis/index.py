"""The prefix's run index (a sorted set), walked newest first for listing and cleanup.

The index is a superset of the runs: an entry is added before its run's record, and a
run that expired leaves its entry behind. Walks skip such entries and remove them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from redis.asyncio import Redis

from durable.store import RunRecord

from .codec import decode_record, text
from .keys import RECORD_FIELDS

#: How many runs one round trip of a walk reads.
BATCH = 200


async def walk_runs(
    client: Redis, index: str, key_of: Callable[[str], str]
) -> AsyncGenerator[list[RunRecord]]:
    """Batches of run records, newest first; stale index entries are pruned at the end.

    Positions, not scores, page through the index: a run added meanwhile only shifts
    older entries down, so an entry may be seen twice (callers skip repeats) but none
    is skipped.
    """
    gone: list[str] = []
    start = 0
    try:
        while True:
            members: list[Any] = await _loose(client).zrevrange(index, start, start + BATCH - 1)
            if not members:
                return
            start += len(members)
            run_ids = [text(member) for member in members]
            pipe = client.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hmget(key_of(run_id), RECORD_FIELDS)
            rows: list[list[Any]] = await pipe.execute()
            batch: list[RunRecord] = []
            for run_id, values in zip(run_ids, rows, strict=True):
                record = decode_record(run_id, values)
                if record is None:
                    gone.append(run_id)
                else:
                    batch.append(record)
            yield batch
    finally:
        if gone:
            await client.zrem(index, *gone)


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
