"""The Redis store: one round trip per checkpoint, Cluster-ready keys, pushed signals.

This module is the store's face, each method of :class:`~durable.Store` in a few
lines; the parts are: ``keys`` (where a run lives), ``scripts`` (every rule of a run
as one Lua script), ``script_calls`` (sending commands and scripts, resent by
``resilience``), ``clients`` (a client per event loop), ``codec`` (the hash's
values), ``index`` and ``bulk`` (walks over the runs: list, scan, delete, orphans),
``signals`` (the pub/sub that wakes waiters) and ``urls``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, cast

from redis.asyncio import Redis, RedisCluster

from durable.settings import positive_int
from durable.store import (
    FinalStatus,
    RunClaim,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    Store,
)

from . import bulk, scripts
from .clients import LoopClients, OnLoop, check_url
from .codec import (
    decode_attempts,
    decode_record,
    decode_steps,
    decode_value,
    encode_signal,
    encode_step,
    raise_refusal,
    signal_records,
    step_records,
    text,
)
from .index import cursor_of, position_of, scan_page
from .keys import RECORD_FIELDS, SIGNAL, STEP, KeyLayout
from .resilience import Resender, describe
from .script_calls import Sender
from .signals import SignalListener, change_message, signal_message
from .urls import (
    DEFAULT_TTL,
    check_lease,
    checked_ttl,
    mask_url,
    split_url,
    store_options_in,
    ttl_milliseconds,
)

log = logging.getLogger("durable.redis")


class RedisStore(Store):
    """Checkpoints in Redis, shared by every process that uses the same server and prefix.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/redis.sock?db=0``. Query options go to redis-py. A
            password holding ``/ ? # @`` must be percent-encoded
            (``urllib.parse.quote(password, safe="")``).
        ttl: Seconds a run (its record, steps, signals and attempts) lives after its
            last change (claim, checkpoint, lease renewal, signal, outcome ...); a
            live run's lease renewals keep it. ``None`` or ``0``: runs never expire.
            It may not be shorter than the ``lease_seconds`` of a Workflow using the
            store (checked when the Workflow claims a run).
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

    The store works from any event loop, one after another (``asyncio.run`` twice) or
    at once in threads (see :mod:`durable_redis.clients`).
    """

    #: Runs have records: leased claims, outcomes, listing, scans, cancel and reopen.
    records_runs: ClassVar[bool] = True
    #: A checkpoint or attempt given ``owner=`` is written only while that owner holds
    #: the run (checked in the same script, so the same round trip).
    fences_writes: ClassVar[bool] = True
    #: ``claim_orphans`` takes expired runs over with a script per run (the claim's
    #: rule, judged by the server's clock), so workers asking at once get different runs.
    claims_orphans: ClassVar[bool] = True
    #: ``wait_for_change`` returns when the run's channel message comes: a signal, or a
    #: cancellation (``request_cancel`` publishes one), from any process.
    notifies_changes: ClassVar[bool] = True

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
        self.ttl = checked_ttl(ttl)
        if client is None:
            check_url(url)
        self.url = url
        self.keys = KeyLayout(prefix)
        self._ttl_ms = ttl_milliseconds(self.ttl)
        self._checkpoint = scripts.checkpoint_script(self._ttl_ms)
        self._where = describe(url, client)
        # A RedisCluster is no Redis subclass, but offers every command used here the
        # same way (script_calls handles its one difference, pipelined EVALSHA).
        self._clients = LoopClients(url, cast("Redis | None", client), self._where)
        self._resender = Resender(self._where, retry_seconds)
        self._send = Sender(self._clients, self._resender, self.keys)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        options = split_url(url)
        return cls(options.connect_url, ttl=options.ttl, prefix=options.prefix)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, ttl={self.ttl!r}, prefix={self.keys.prefix!r})"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Connect (once per event loop) and check that the server answers."""
        await self._send.run("connect", lambda client: _loose(client).ping())

    async def close(self) -> None:
        await self._clients.close()

    async def _on_loop(self) -> OnLoop:
        """The client (and signal listener) of the running event loop."""
        return await self._clients.here()

    # -- steps ------------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        key = self._key(run_id)
        raw = await self._send.run("read a step", lambda client: client.hget(key, STEP + step_id))
        return (False, None) if raw is None else (True, decode_value(raw))

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return decode_steps(await self._send.hgetall("load the steps of a run", run_id))

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return step_records(await self._send.hgetall("list the steps of a run", run_id))

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        if owner is None:
            args: tuple[str, ...] = (STEP + step_id, encode_step(result, attempt))
        else:
            args = (STEP + step_id, encode_step(result, attempt), owner)
        keys = self.keys.run_keys(run_id)
        reply = await self._send.hot_script("save a step", self._checkpoint, keys, args)
        if reply is None:
            return True
        raise_refusal(run_id, f"step {step_id!r}", reply, self._where)
        return False  # cancel_requested

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        await self.checkpoint_step(run_id, step_id, result, attempt)

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        """Keep the count of failed attempts of a step (0: the failure was final, the
        count is cleared), so that a run taken over in a retry's backoff counts on."""
        args = (self._ttl_ms, step_id, int(attempt), "0" if owner is None else "1", owner or "")
        reply = await self._send.script(
            "record a failed attempt", scripts.RECORD_ATTEMPT, run_id, args
        )
        raise_refusal(run_id, f"attempt {attempt} of step {step_id!r}", reply, self._where)

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        key = self.keys.attempts_key(run_id)
        fields = await self._send.run(
            "load the attempts of a run", lambda client: client.hgetall(key)
        )
        return decode_attempts(fields)

    # -- signals ----------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        key = self._key(run_id)
        raw = await self._send.run("read a signal", lambda client: client.hget(key, SIGNAL + name))
        return (False, None) if raw is None else (True, decode_value(raw))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        # A fresh token per call: a resend of this very call (ours, or redis-py's own)
        # finds its own token and still reports the first delivery (DESIGN §7).
        token = uuid.uuid4().hex
        args = (self._ttl_ms, SIGNAL + name, token, encode_signal(token, payload),
                self.keys.channel, signal_message(run_id, name))  # fmt: skip
        stored = await self._send.script("save a signal", scripts.SET_SIGNAL, run_id, args)
        return int(stored) == 1

    async def list_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return signal_records(await self._send.hgetall("list the signals of a run", run_id))

    async def wait_for_signal(self, run_id: str, name: str, max_wait: float) -> None:
        listener = await self._listener()
        key = self._key(run_id)

        async def delivered() -> bool:
            found = await self._send.run("read a signal", lambda c: c.hexists(key, SIGNAL + name))
            return bool(found)

        await listener.wait(run_id, name, max_wait, delivered)

    async def wait_for_change(self, run_id: str, max_wait: float) -> None:
        """Return when the run's channel message comes (a signal of it delivered, a
        cancellation requested), or after ``max_wait`` seconds; at once when a
        cancellation is pending, which also covers one requested before the
        subscription was live."""
        listener = await self._listener()
        key = self._key(run_id)

        async def pending() -> bool:
            flag = await self._send.run("read a run", lambda c: c.hget(key, "cancel_requested"))
            return flag is not None and text(flag) == "1"

        await listener.wait(run_id, None, max_wait, pending)

    async def _listener(self) -> SignalListener:
        here = await self._on_loop()
        if here.listener is None:
            here.listener = SignalListener(here.client, self.keys.channel, self._where)
        return here.listener

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
        check_lease(self.ttl, lease_seconds, self._where)
        # The identity check (same workflow, same digest) runs in the script, before
        # anything is written: a refused claim leaves the hash and its TTL as they were.
        args = (self._ttl_ms, workflow, json.dumps(inputs), owner, repr(float(lease_seconds)),
                "0" if takeover_from is None else "1", takeover_from or "",
                "0" if input_digest is None else "1", input_digest or "")  # fmt: skip
        outcome, values = await self._send.indexed("claim a run", scripts.CLAIM, run_id, args)
        record = decode_record(run_id, values)
        assert record is not None  # the script returns the record it found or made
        # A claim resent after a lost reply finds the record its first run made and
        # says 1: never "created" for a run that may have steps.
        return RunClaim(int(outcome) >= 1, record, created=int(outcome) == 2)

    async def claim_orphans(
        self, workflows: Sequence[str], *, owner: str, lease_seconds: float, limit: int = 100
    ) -> Sequence[RunRecord]:
        """Take over up to ``limit`` running runs of ``workflows`` whose lease ran out,
        oldest first, each atomically (see :class:`durable_redis.bulk.OrphanClaims`)."""
        check_lease(self.ttl, lease_seconds, self._where)
        limit = positive_int("claim_orphans: limit", limit)
        claims = bulk.OrphanClaims(
            self.keys, workflows, owner=owner, lease_seconds=lease_seconds, limit=limit,
            ttl_ms=self._ttl_ms,
        )  # fmt: skip
        return await self._send.run("claim orphaned runs", claims)

    async def renew_lease(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        args = (self._ttl_ms, owner, repr(float(lease_seconds)))
        renewed = int(await self._send.script("renew a lease", scripts.RENEW, run_id, args))
        if renewed == -1:
            log.error(
                "run %s: its record is gone from the Redis store %s (flushed, or lost in a "
                "restart without persistence); this process stops executing it",
                run_id, self._where,
            )  # fmt: skip
        return renewed == 1

    async def mark_progress(self, run_id: str, owner: str) -> None:
        await self._send.script(
            "note a run's progress", scripts.MARK_PROGRESS, run_id, (self._ttl_ms, owner)
        )

    async def release_run(self, run_id: str, owner: str) -> None:
        await self._send.script("release a run", scripts.RELEASE, run_id, (self._ttl_ms, owner))

    async def finish_run(
        self,
        run_id: str,
        owner: str,
        status: FinalStatus,
        *,
        result: Any = None,
        has_result: bool = False,
        error: str | None = None,
    ) -> bool:
        args = (self._ttl_ms, owner, status, "1" if has_result else "0",
                json.dumps(result) if has_result else "", "0" if error is None else "1",
                error or "")  # fmt: skip
        recorded = await self._send.indexed("record a run's outcome", scripts.FINISH, run_id, args)
        return int(recorded) == 1

    async def mark_run_done(self, run_id: str) -> None:
        await self.finish_run(run_id, "", "completed")

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        await self.finish_run(run_id, "", "failed", error=error)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        # The script publishes the change: a run waiting anywhere wakes at once.
        args = (self._ttl_ms, self.keys.channel, change_message(run_id))
        return await self._change("cancel a run", scripts.REQUEST_CANCEL, run_id, args)

    async def reopen_run(self, run_id: str) -> RunRecord | None:
        return await self._change("reopen a run", scripts.REOPEN, run_id, (self._ttl_ms,))

    async def get_run(self, run_id: str) -> RunRecord | None:
        key = self._key(run_id)
        values = await self._send.run("read a run", lambda client: client.hmget(key, RECORD_FIELDS))
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

        def listing(client: Redis) -> Awaitable[list[RunRecord]]:
            return bulk.list_runs(client, self.keys, status=status, workflow=workflow, limit=limit)

        return await self._send.run("list runs", listing)

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        """One page of the runs in ``status``, oldest first; walks the index from the
        cursor (a position in it), reading the records of every status on the way."""
        after = None if cursor is None else position_of(cursor, "RedisStore.scan_runs")
        limit = positive_int("scan_runs: limit", limit)

        async def scanning(client: Redis) -> tuple[list[RunRecord], str | None]:
            page, last = await scan_page(client, self.keys.index, self._key, status, after, limit)
            return page, None if last is None else cursor_of(last)

        return await self._send.run("scan runs", scanning)

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        """Delete whole runs (steps, signals and attempts too); each is checked again
        atomically."""
        if not statuses:
            return 0

        def deleting(client: Redis) -> Awaitable[int]:
            return bulk.delete_runs(client, self.keys, before=finished_before, statuses=statuses)

        return await self._send.run("delete runs", deleting)

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, run_id: str) -> str:
        return self.keys.run_key(run_id)

    async def _change(
        self, what: str, script: scripts.Script, run_id: str, args: Sequence[str | int]
    ) -> RunRecord | None:
        known, values = await self._send.script(what, script, run_id, args)
        return decode_record(run_id, values) if int(known) == 1 else None


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
