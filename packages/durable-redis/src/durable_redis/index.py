"""The prefix's run index (a sorted set), walked newest first for listing and cleanup,
and oldest first, page by page, for recovery's scan.

The index is a superset of the runs: an entry is added before its run's record, and a
run that expired leaves its entry behind. Walks skip such entries and remove them.
"""

from __future__ import annotations

import math
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


#: A position in the index: (score, run id) of the last run a page returned.
Position = tuple[float, str]


async def scan_page(
    client: Redis,
    index: str,
    key_of: Callable[[str], str],
    status: str,
    after: Position | None,
    limit: int,
) -> tuple[list[RunRecord], Position | None]:
    """Up to ``limit`` runs in ``status``, oldest first (index score: the time of the
    first claim; then run id, the index's own order for equal scores), after ``after``.

    Returns the page and the position of its last run, or None when the index has no
    more runs. A run that joins the index meanwhile is newer than any position handed
    out (never skipped, never repeated); stale entries are pruned on the way.
    """
    page: list[RunRecord] = []
    gone: list[str] = []
    low, offset = (after[0], 0) if after is not None else (-math.inf, 0)
    try:
        while True:
            rows: list[tuple[Any, float]] = await _loose(client).zrangebyscore(
                index, repr(low), "+inf",
                start=offset, num=BATCH, withscores=True,
            )  # fmt: skip
            if not rows:
                return page, None
            entries = [(float(score), text(member)) for member, score in rows]
            fresh = [e for e in entries if after is None or _later(e, after)]
            pipe = client.pipeline(transaction=False)
            for _score, run_id in fresh:
                pipe.hmget(key_of(run_id), RECORD_FIELDS)
            values: list[list[Any]] = await pipe.execute() if fresh else []
            for (score, run_id), fields in zip(fresh, values, strict=True):
                record = decode_record(run_id, fields)
                if record is None:
                    gone.append(run_id)
                elif record.status == status:
                    page.append(record)
                    if len(page) >= limit:
                        return page, (score, run_id)
            last = entries[-1][0]
            ties = sum(1 for score, _ in entries if score == last)
            low, offset = (low, offset + len(entries)) if last == low else (last, ties)
    finally:
        if gone:
            await client.zrem(index, *gone)


def _later(entry: Position, after: Position) -> bool:
    # Redis orders the members of one score by their bytes.
    score, run_id = entry
    return score > after[0] or (score == after[0] and run_id.encode() > after[1].encode())
