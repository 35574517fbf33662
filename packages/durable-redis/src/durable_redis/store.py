"""The Redis store: one round trip per checkpoint, Cluster-ready keys, pushed signals."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, TypeVar, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from durable.store import (
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    Store,
)

from . import scripts
from .codec import (
    decode_record,
    decode_steps,
    decode_value,
    encode_signal,
    encode_step,
    signal_records,
    step_records,
)
from .index import walk_runs
from .keys import RECORD_FIELDS, SIGNAL, STEP, KeyLayout
from .resilience import Resender, describe, resendable
from .scripts import run_script, run_script_indexed, run_script_many
from .signals import SignalListener, signal_message
from .urls import DEFAULT_TTL, mask_url, split_url, store_options_in

log = logging.getLogger("durable.redis")
T = TypeVar("T")


class RedisStore(Store):
    """Checkpoints in Redis, shared by every process that uses the same server and prefix.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/redis.sock?db=0``. Query options go to redis-py.
        ttl: Seconds a run (one hash: record, steps, signals) lives after its last
            change (claim, checkpoint, lease renewal, signal, outcome ...); a live
            run's lease renewals keep it. ``None`` or ``0``: runs never expire.
        prefix: Start of every key and of the signal channel; stores with different
            prefixes on one database never see each other's runs.
        client: An existing ``redis.asyncio.Redis`` (or ``RedisCluster``, or a
            fakeredis client) to use instead of connecting to ``url``. The store
            never closes a client it was given; its own retry settings add to the
            store's.
        retry_seconds: How long an operation is resent while the server cannot be
            reached (a restart, a failover) before it fails with ``StoreError``.

    ``db=`` URLs take two more query options, ``?ttl=3600`` (``ttl=none`` for no
    expiry) and ``?prefix=myapp``: ``Workflow("app", db="redis://localhost/0?ttl=3600")``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        ttl: float | None = DEFAULT_TTL,
        prefix: str = "durable",
        client: Redis | RedisCluster | None = None,
        *,
        retry_seconds: float = 5.0,
    ) -> None:
        if store_options_in(url):
            raise ValueError(
                f"pass ttl= and prefix= as arguments of RedisStore, not in its URL "
                f"{mask_url(url)!r} (URL options are for db= strings and RedisStore.from_url)"
            )
        if ttl is not None and ttl < 0:
            raise ValueError(f"ttl must be positive seconds, 0 or None, not {ttl!r}")
        self.url = url
        self.ttl = ttl or None
        self.keys = KeyLayout(prefix)
        self._ttl_ms = int(self.ttl * 1000) if self.ttl else 0
        self._checkpoint = scripts.checkpoint_script(self._ttl_ms)
        # A RedisCluster is no Redis subclass, but offers every command used here the
        # same way (scripts.py handles its one difference, pipelined EVALSHA).
        self._given_client = cast("Redis | None", client)
        self._client = self._given_client
        self._listener: SignalListener | None = None
        self._where = describe(url, client)
        self._resender = Resender(self._where, retry_seconds)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        options = split_url(url)
        return cls(options.connect_url, ttl=options.ttl, prefix=options.prefix)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, ttl={self.ttl!r}, prefix={self.keys.prefix!r})"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Connect (once) and check that the server answers."""
        await self._run("connect", lambda: _loose(self._redis()).ping())

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        client, self._client = self._client, self._given_client
        if client is not None and client is not self._given_client:
            await client.aclose()

    def _redis(self) -> Redis:
        client = self._client
        if client is None:
            # One pool per store, created on first use: redis-py binds its connections
            # to the event loop that opens them. No retries of its own: Resender's.
            client = self._client = _loose(Redis).from_url(self.url)
        return client

    # -- steps ------------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        raw = await self._run(
            "read a step", lambda: self._redis().hget(self._key(run_id), STEP + step_id)
        )
        return (False, None) if raw is None else (True, decode_value(raw))

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return decode_steps(await self._hgetall("load the steps of a run", run_id))

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return step_records(await self._hgetall("list the steps of a run", run_id))

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1
    ) -> bool:
        # The hot path: no closure and no retry machinery unless the first try fails.
        client, key = self._redis(), self._key(run_id)
        args = (STEP + step_id, encode_step(result, attempt))
        try:
            cancel = await run_script(client, self._checkpoint, key, args)
        except RedisError as exc:
            if not resendable(exc):
                raise self._resender.error("save a step", exc) from exc
            cancel = await self._resender.resend(
                "save a step", lambda: run_script(self._redis(), self._checkpoint, key, args), exc
            )
        return cancel is None

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        await self.checkpoint_step(run_id, step_id, result, attempt)

    # -- signals ----------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        raw = await self._run(
            "read a signal", lambda: self._redis().hget(self._key(run_id), SIGNAL + name)
        )
        return (False, None) if raw is None else (True, decode_value(raw))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        # A fresh token per call: a resend of this very call (ours, or redis-py's own)
        # finds its own token and still reports the first delivery (DESIGN §7).
        token = uuid.uuid4().hex
        args = (self._ttl_ms, SIGNAL + name, token, encode_signal(token, payload),
                self.keys.channel, signal_message(run_id, name))  # fmt: skip
        stored = await self._script("save a signal", scripts.SET_SIGNAL, run_id, args)
        return int(stored) == 1

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return signal_records(await self._hgetall("list the signals of a run", run_id))

    async def wait_for_signal(self, run_id: str, name: str, max_wait: float) -> None:
        if self._listener is None:
            self._listener = SignalListener(self._redis(), self.keys.channel, self._where)

        async def delivered() -> bool:
            key = self._key(run_id)
            return bool(
                await self._run("read a signal", lambda: self._redis().hexists(key, SIGNAL + name))
            )

        await self._listener.wait(run_id, name, max_wait, delivered)

    # -- runs -------------------------------------------------------------------------------

    async def claim_run(
        self,
        run_id: str,
        workflow: str,
        inputs: Any,
        *,
        owner: str,
        lease_seconds: float,
        takeover_from: str | None = None,
        input_digest: str | None = None,
    ) -> RunClaim:
        # The identity check (same workflow, same digest) runs in the script, before
        # anything is written: a refused claim leaves the hash and its TTL as they were.
        args = (self._ttl_ms, workflow, json.dumps(inputs), owner, repr(float(lease_seconds)),
                "0" if takeover_from is None else "1", takeover_from or "",
                "0" if input_digest is None else "1", input_digest or "")  # fmt: skip
        outcome, values = await self._indexed("claim a run", scripts.CLAIM, run_id, args)
        record = decode_record(run_id, values)
        assert record is not None  # the script returns the record it found or made
        # A claim resent after a lost reply finds the record its first run made and
        # says 1: never "created" for a run that may have steps.
        return RunClaim(int(outcome) >= 1, record, created=int(outcome) == 2)

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        args = (self._ttl_ms, owner, repr(float(lease_seconds)))
        renewed = int(await self._script("renew a lease", scripts.RENEW, run_id, args))
        if renewed == -1:
            log.error(
                "run %s: its record is gone from the Redis store %s (flushed, or lost in a "
                "restart without persistence); this process stops executing it",
                run_id, self._where,
            )  # fmt: skip
        return renewed == 1

    async def release_run(self, run_id: str, owner: str) -> None:
        await self._script("release a run", scripts.RELEASE, run_id, (self._ttl_ms, owner))

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> None:
        args = (self._ttl_ms, owner, status, "1" if has_result else "0",
                json.dumps(result) if has_result else "", "0" if error is None else "1",
                error or "")  # fmt: skip
        await self._indexed("record a run's outcome", scripts.FINISH, run_id, args)

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        return await self._change("cancel a run", scripts.REQUEST_CANCEL, run_id)

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        return await self._change("reopen a run", scripts.REOPEN, run_id)

    async def get_run(self, run_id: str) -> RunRecord | None:
        key = self._key(run_id)
        values = await self._run("read a run", lambda: self._redis().hmget(key, RECORD_FIELDS))
        return decode_record(run_id, values)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> Sequence[RunRecord]:
        """Newest first. Walks the prefix's index, so it is meant for inspection, not
        for hot paths; index entries of runs that expired are pruned on the way."""

        async def listing() -> list[RunRecord]:
            found: dict[str, RunRecord] = {}
            async with aclosing(walk_runs(self._redis(), self.keys.index, self._key)) as walk:
                async for batch in walk:
                    for record in batch:
                        if status in (None, record.status) and workflow in (None, record.workflow):
                            found.setdefault(record.run_id, record)
                    if len(found) >= limit:
                        break
            return list(found.values())[:limit]

        return await self._run("list runs", listing)

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        """Delete whole runs (steps and signals too); each is checked again atomically."""
        if not statuses:
            return 0
        cutoff = repr(float(finished_before))

        async def deleting() -> int:
            client, deleted = self._redis(), 0
            async with aclosing(walk_runs(client, self.keys.index, self._key)) as walk:
                async for batch in walk:
                    doomed = [
                        r.run_id for r in batch
                        if r.status in statuses and r.updated_at is not None
                        and r.updated_at.timestamp() < finished_before
                    ]  # fmt: skip
                    calls = [(self._key(run_id), (cutoff, *statuses)) for run_id in doomed]
                    outcomes = await run_script_many(client, scripts.DELETE_IF, calls)
                    # -1: already gone (a resend of this very deletion, or it expired).
                    gone = [r for r, out in zip(doomed, outcomes, strict=True) if out != 0]
                    if gone:
                        await client.zrem(self.keys.index, *gone)
                    deleted += len(gone)
            return deleted

        return await self._run("delete runs", deleting)

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, run_id: str) -> str:
        return self.keys.run_key(run_id)

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await self._resender.run(what, call)

    async def _hgetall(self, what: str, run_id: str) -> dict[Any, Any]:
        key = self._key(run_id)
        return await self._run(what, lambda: self._redis().hgetall(key))

    async def _script(
        self, what: str, script: scripts.Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        key = self._key(run_id)
        return await self._run(what, lambda: run_script(self._redis(), script, key, args))

    async def _indexed(
        self, what: str, script: scripts.Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        key, index, score = self._key(run_id), self.keys.index, time.time()
        return await self._run(
            what,
            lambda: run_script_indexed(
                self._redis(), script, key, args, index=index, run_id=run_id, score=score
            ),
        )

    async def _change(self, what: str, script: scripts.Script, run_id: str) -> RunRecord | None:
        known, values = await self._script(what, script, run_id, (self._ttl_ms,))
        return decode_record(run_id, values) if int(known) == 1 else None


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
