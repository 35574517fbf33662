"""The prefix's run index (a sorted set), walked newest first for listing and cleanup,
and oldest first, page by page, for recovery's scan and orphan claims.

The index is a superset of the runs: an entry is added before its run's record, and a
run that expired leaves its entry behind. Walks skip such entries and remove them.
Both directions share one walk (:func:`_walk`); they differ only in how they page
through the sorted set.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from redis.asyncio import Redis

from durable.store import RunRecord

from .codec import decode_record, text
from .keys import RECORD_FIELDS

#: How many runs one round trip of a walk reads.
BATCH = 200

#: A position in the index: (score, run id). The score is the time of the run's first
#: claim; Redis orders entries of one score by the bytes of the run id.
Position = tuple[float, str]
#: A run on record and its position in the index.
Indexed = tuple[Position, RunRecord]


def walk_newest_first(
    client: Redis, index: str, key_of: Callable[[str], str]
) -> AsyncGenerator[list[Indexed]]:
    """Batches of runs, newest first. Positions, not scores, page through the index: a
    run added meanwhile only shifts older entries down, so an entry may be seen twice
    (callers skip repeats) but none is skipped."""
    return _walk(client, index, key_of, _by_rank_newest_first(client, index))


def walk_oldest_first(
    client: Redis, index: str, key_of: Callable[[str], str], after: Position | None = None
) -> AsyncGenerator[list[Indexed]]:
    """Batches of runs, oldest first, after ``after``. Scores page through the index: a
    run that joins it meanwhile is newer than any position handed out, so it is never
    skipped and never repeated."""
    return _walk(client, index, key_of, _by_score_oldest_first(client, index, after))


async def scan_page(
    client: Redis,
    index: str,
    key_of: Callable[[str], str],
    status: str,
    after: Position | None,
    limit: int,
) -> tuple[list[RunRecord], Position | None]:
    """Up to ``limit`` runs in ``status``, oldest first, after ``after``.

    Returns the page and the position of its last run, or None when the index has no
    more runs.
    """
    page: list[RunRecord] = []
    async with aclosing(walk_oldest_first(client, index, key_of, after)) as walk:
        async for batch in walk:
            for position, record in batch:
                if record.status == status:
                    page.append(record)
                    if len(page) >= limit:
                        return page, position
    return page, None


def cursor_of(position: Position) -> str:
    """The ``scan_runs`` cursor of an index position: the JSON of [score, run id]."""
    return json.dumps([position[0], position[1]])


def position_of(cursor: str, where: str) -> Position:
    """The index position a ``scan_runs`` cursor names, or a ValueError naming it."""
    try:
        score, run_id = json.loads(cursor)
    except (ValueError, TypeError):
        score = run_id = None
    # Exactly what cursor_of writes: a finite number (not a bool) and a text.
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not isinstance(run_id, str)
    ):
        raise ValueError(f"not a cursor of {where}: {cursor!r}") from None
    return float(score), run_id


async def _walk(
    client: Redis,
    index: str,
    key_of: Callable[[str], str],
    positions: AsyncGenerator[list[Position]],
) -> AsyncGenerator[list[Indexed]]:
    """The records of each batch of ``positions`` (one pipelined round trip each);
    index entries without a record are pruned when the walk ends."""
    gone: list[str] = []
    try:
        async with aclosing(positions):
            async for batch in positions:
                records = await _read_records(client, key_of, [run_id for _, run_id in batch])
                found: list[Indexed] = []
                for position, record in zip(batch, records, strict=True):
                    if record is None:
                        gone.append(position[1])
                    else:
                        found.append((position, record))
                yield found
    finally:
        if gone:
            await client.zrem(index, *gone)


async def _read_records(
    client: Redis, key_of: Callable[[str], str], run_ids: list[str]
) -> list[RunRecord | None]:
    if not run_ids:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hmget(key_of(run_id), RECORD_FIELDS)
    rows: list[list[Any]] = await pipe.execute()
    return [decode_record(run_id, values) for run_id, values in zip(run_ids, rows, strict=True)]


async def _by_rank_newest_first(client: Redis, index: str) -> AsyncGenerator[list[Position]]:
    start = 0
    while True:
        rows: list[tuple[Any, float]] = await _loose(client).zrevrange(
            index, start, start + BATCH - 1, withscores=True
        )
        if not rows:
            return
        start += len(rows)
        yield [(float(score), text(member)) for member, score in rows]


async def _by_score_oldest_first(
    client: Redis, index: str, after: Position | None
) -> AsyncGenerator[list[Position]]:
    # From the score of ``after`` (ties of it skipped up to its run id), then on by
    # score; ``offset`` skips what was read of a run of ties at ``low``.
    low, offset = (after[0], 0) if after is not None else (-math.inf, 0)
    while True:
        rows: list[tuple[Any, float]] = await _loose(client).zrangebyscore(
            index, repr(low), "+inf",
            start=offset, num=BATCH, withscores=True,
        )  # fmt: skip
        if not rows:
            return
        entries = [(float(score), text(member)) for member, score in rows]
        yield [entry for entry in entries if after is None or _later(entry, after)]
        last = entries[-1][0]
        ties = sum(1 for score, _ in entries if score == last)
        low, offset = (low, offset + len(entries)) if last == low else (last, ties)


def _later(entry: Position, after: Position) -> bool:
    # Redis orders the members of one score by their bytes.
    score, run_id = entry
    return score > after[0] or (score == after[0] and run_id.encode() > after[1].encode())


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
