"""What the store does over many runs of its prefix: listing, retention, and taking
orphaned runs over. Each walks the run index (:mod:`durable_redis.index`), a batch of
records per round trip, and changes a run only through a script on that run's keys,
which checks it again atomically: the index and the records read with it are a hint,
never the rule. So on a Redis Cluster, where a run's keys are in a slot of their own,
each change is still atomic per run (the scripts go one after another there).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

from redis.asyncio import Redis

from durable.records import lease_is_live
from durable.store import RunRecord, RunStatus

from . import scripts
from .codec import decode_record
from .index import walk_newest_first, walk_oldest_first
from .keys import KeyLayout
from .script_calls import Call, run_script_many


async def list_runs(
    client: Redis, keys: KeyLayout, *, status: str | None, workflow: str | None, limit: int
) -> list[RunRecord]:
    """Up to ``limit`` runs, newest first, in ``status`` and of ``workflow`` (None: any)."""
    found: dict[str, RunRecord] = {}
    async with aclosing(walk_newest_first(client, keys.index, keys.run_key)) as walk:
        async for batch in walk:
            for _, record in batch:
                if status in (None, record.status) and workflow in (None, record.workflow):
                    found.setdefault(record.run_id, record)  # a walk may repeat a run
            if len(found) >= limit:
                break
    return list(found.values())[:limit]


async def delete_runs(
    client: Redis, keys: KeyLayout, *, before: float, statuses: Sequence[RunStatus]
) -> int:
    """Delete the runs in ``statuses`` last changed before ``before`` (epoch seconds),
    each checked again by the deleting script; return how many."""
    cutoff = repr(float(before))
    deleted = 0
    async with aclosing(walk_newest_first(client, keys.index, keys.run_key)) as walk:
        async for batch in walk:
            doomed = [
                r.run_id for _, r in batch
                if r.status in statuses and r.updated_at is not None
                and r.updated_at.timestamp() < before
            ]  # fmt: skip
            calls: list[Call] = [(keys.run_keys(run_id), (cutoff, *statuses)) for run_id in doomed]
            outcomes = await run_script_many(client, scripts.DELETE_IF, calls)
            # -1: already gone (a resend of this very deletion, or it expired).
            gone = [r for r, out in zip(doomed, outcomes, strict=True) if out != 0]
            if gone:
                await client.zrem(keys.index, *gone)
            deleted += len(gone)
    return deleted


class OrphanClaims:
    """One ``claim_orphans`` call: called with a client, again on each resend.

    It walks the running runs oldest first and has the CLAIM_ORPHAN script take each
    candidate, a batch per round trip. A candidate is a run of one of ``workflows``
    whose lease ran out by the server's clock (``TIME``, read once per try; on a
    Cluster, one node's clock, while each script judges by its own node's: a skew only
    delays a run to a later pass, the script decides). What a try took is kept over
    the next: a resend after a broken connection reports it, and also asks the script
    about runs this owner holds, which the lost reply of a first try may have taken
    (the script tells them by this call's token).
    """

    def __init__(
        self,
        keys: KeyLayout,
        workflows: Sequence[str],
        *,
        owner: str,
        lease_seconds: float,
        limit: int,
        ttl_ms: int,
    ) -> None:
        self._keys = keys
        self._workflows = frozenset(workflows)
        self._owner = owner
        self._limit = limit
        self._args = (ttl_ms, owner, repr(float(lease_seconds)))
        self._token = uuid.uuid4().hex
        self._tries = 0
        #: Run id -> its record as claimed, oldest first.
        self.claimed: dict[str, RunRecord] = {}

    async def __call__(self, client: Redis) -> list[RunRecord]:
        self._tries += 1
        if self._workflows:
            seconds, microseconds = await _loose(client).time()
            now = int(seconds) + int(microseconds) / 1_000_000
            await self._claim_from(client, now)
        return list(self.claimed.values())

    async def _claim_from(self, client: Redis, now: float) -> None:
        async with aclosing(
            walk_oldest_first(client, self._keys.index, self._keys.run_key)
        ) as walk:
            async for batch in walk:
                candidates = [record for _, record in batch if self._candidate(record, now)]
                while candidates and len(self.claimed) < self._limit:
                    room = self._limit - len(self.claimed)
                    await self._claim(client, candidates[:room])
                    candidates = candidates[room:]
                if len(self.claimed) >= self._limit:
                    return

    def _candidate(self, record: RunRecord, now: float) -> bool:
        if record.status != "running" or record.workflow not in self._workflows:
            return False
        if record.run_id in self.claimed:
            return False
        if not lease_is_live(record, now):
            return True
        return self._tries > 1 and record.owner == self._owner  # see the class

    async def _claim(self, client: Redis, records: list[RunRecord]) -> None:
        calls: list[Call] = [
            (self._keys.run_keys(r.run_id), (*self._args, r.workflow, self._token)) for r in records
        ]
        replies = await run_script_many(client, scripts.CLAIM_ORPHAN, calls)
        for record, reply in zip(records, replies, strict=True):
            if int(reply[0]) == 1:  # else another worker was first, or the run went on
                taken = decode_record(record.run_id, reply[1])
                assert taken is not None  # the script returns the record it changed
                self.claimed[record.run_id] = taken


def _loose(value: object) -> Any:
    """redis-py methods whose annotations are partly untyped, as ``Any``."""
    return value
