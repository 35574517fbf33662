"""The Redis store: one round trip per checkpoint, Cluster-ready keys, pushed signals."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, suppress
from typing import Any, ClassVar, TypeVar, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from durable.errors import LeaseLostError
from durable.records import stale_write
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
    decode_attempts,
    decode_record,
    decode_steps,
    decode_value,
    encode_signal,
    encode_step,
    signal_records,
    step_records,
    text,
)
from .index import Position, scan_page, walk_runs
from .keys import RECORD_FIELDS, SIGNAL, STEP, KeyLayout
from .resilience import Resender, describe, resendable
from .scripts import run_script, run_script_indexed, run_script_many
from .signals import SignalListener, signal_message
from .urls import (
    DEFAULT_TTL,
    checked_ttl,
    mask_url,
    misread_user_info,
    split_url,
    store_options_in,
    ttl_milliseconds,
)

log = logging.getLogger("durable.redis")
T = TypeVar("T")


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
    at once in threads: redis-py binds connections to the loop that opens them, so a
    store built from a URL keeps a client per loop, and drops the client of a loop
    that was closed. A ``client`` given is one client: when the loop changes and the
    one it was used on is not running any more, the store disconnects its connections
    (without closing it) so that they reopen on the new loop.
    """

    #: Runs have records: leased claims, outcomes, listing, scans, cancel and reopen.
    records_runs: ClassVar[bool] = True
    #: A checkpoint or attempt given ``owner=`` is written only while that owner holds
    #: the run (checked in the same script, so the same round trip).
    fences_writes: ClassVar[bool] = True

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
            _check_url(url)
        self.url = url
        self.keys = KeyLayout(prefix)
        self._ttl_ms = ttl_milliseconds(self.ttl)
        self._checkpoint = scripts.checkpoint_script(self._ttl_ms)
        # A RedisCluster is no Redis subclass, but offers every command used here the
        # same way (scripts.py handles its one difference, pipelined EVALSHA).
        self._given = cast("Redis | None", client)
        #: What the store uses on each event loop, and the one it used last (the hot
        #: path's one comparison).
        self._loops: dict[AbstractEventLoop, _OnLoop] = {}
        self._here: _OnLoop | None = None
        #: The loop the given client's connections were last used on.
        self._given_loop: AbstractEventLoop | None = None
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
        """Connect (once per event loop) and check that the server answers."""
        await self._run("connect", lambda client: _loose(client).ping())

    async def close(self) -> None:
        loop = get_running_loop()
        places, self._loops, self._here = self._loops, {}, None
        for here in places.values():
            if here.loop is loop:
                await here.close(own_client=here.client is not self._given)
            elif here.loop.is_running():  # another thread's loop: closed over there
                with suppress(RuntimeError):  # it closed meanwhile
                    asyncio.run_coroutine_threadsafe(
                        here.close(own_client=here.client is not self._given), here.loop
                    )
            # A loop that is closed took its connections' transports with it: dropped.

    async def _on_loop(self) -> _OnLoop:
        """The client (and signal listener) of the running event loop."""
        here, loop = self._here, get_running_loop()
        if here is not None and here.loop is loop:
            return here
        return await self._move_to(loop)

    async def _move_to(self, loop: AbstractEventLoop) -> _OnLoop:
        here = self._loops.get(loop)
        if here is None:
            self._forget_closed_loops()
            client = self._given if self._given is not None else self._new_client()
            here = self._loops[loop] = _OnLoop(loop, client)
        if self._given is not None and self._given_loop is not loop:
            previous, self._given_loop = self._given_loop, loop
            if previous is not None and not previous.is_running():
                # Its connections belong to a loop that is closed (or idle): reopen them
                # here, before any command goes out on one and fails mid-way.
                here.reopening = loop.create_task(_reconnect(self._given, self._where))
        if here.reopening is not None:
            await asyncio.shield(here.reopening)  # concurrent callers wait for the same
            here.reopening = None
        self._here = here
        return here

    def _forget_closed_loops(self) -> None:
        # Nothing can be awaited on a closed loop: its clients are dropped as they are.
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            self._loops.pop(loop, None)

    def _new_client(self) -> Redis:
        # No retries of its own: Resender's.
        try:
            client: Redis = _loose(Redis).from_url(self.url)
        except (ValueError, TypeError) as exc:  # _check_url passed it: another redis-py?
            raise _bad_url(self.url, type(exc).__name__) from None
        return client

    # -- steps ------------------------------------------------------------------------------

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        key = self._key(run_id)
        raw = await self._run("read a step", lambda client: client.hget(key, STEP + step_id))
        return (False, None) if raw is None else (True, decode_value(raw))

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return decode_steps(await self._hgetall("load the steps of a run", run_id))

    async def list_steps(self, run_id: str) -> Sequence[StepRecord]:
        return step_records(await self._hgetall("list the steps of a run", run_id))

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1, *, owner: str | None = None
    ) -> bool:
        # The hot path: no closure and no retry machinery unless the first try fails.
        here = self._here
        if here is None or here.loop is not get_running_loop():
            here = await self._move_to(get_running_loop())
        client, keys = here.client, self.keys.run_keys(run_id)
        if owner is None:
            args: tuple[str, ...] = (STEP + step_id, encode_step(result, attempt))
        else:
            args = (STEP + step_id, encode_step(result, attempt), owner)
        try:
            reply = await run_script(client, self._checkpoint, keys, args)
        except RedisError as exc:
            if not resendable(exc):
                raise self._resender.error("save a step", exc) from exc
            reply = await self._resender.resend(
                "save a step", lambda: run_script(client, self._checkpoint, keys, args), exc
            )
        if reply is None:
            return True
        refused = self._refused(run_id, f"step {step_id!r}", reply)
        if refused is not None:
            raise refused
        return False  # cancel_requested

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        await self.checkpoint_step(run_id, step_id, result, attempt)

    async def record_attempt(
        self, run_id: str, step_id: str, attempt: int, error: str, *, owner: str | None = None
    ) -> None:
        """Keep the count of failed attempts of a step (0: the failure was final, the
        count is cleared), so that a run taken over in a retry's backoff counts on."""
        args = (self._ttl_ms, step_id, int(attempt), "0" if owner is None else "1", owner or "")
        reply = await self._script("record a failed attempt", scripts.RECORD_ATTEMPT, run_id, args)
        refused = self._refused(run_id, f"attempt {attempt} of step {step_id!r}", reply)
        if refused is not None:
            raise refused

    async def load_attempts(self, run_id: str) -> Mapping[str, int]:
        key = self.keys.attempts_key(run_id)
        fields = await self._run("load the attempts of a run", lambda client: client.hgetall(key))
        return decode_attempts(fields)

    def _refused(self, run_id: str, what: str, reply: Any) -> LeaseLostError | None:
        """The error of a fenced write the script refused (it replied ``{code, status,
        holder}``), or None when the reply is not a refusal."""
        if not isinstance(reply, list):
            return None
        fields = cast("Sequence[Any]", reply)
        code, status, holder = int(fields[0]), text(fields[1]), text(fields[2])
        if code == 0:
            why = (
                f"its record is gone from the Redis store {self._where} (expired, deleted "
                "or flushed)"
            )
        elif code == 1:
            why = f"the run is {status} now"
        elif holder:
            why = f"another owner holds the run now ({holder})"
        else:
            why = "no owner holds the run now (it was released or reopened)"
        return stale_write(run_id, what, why)

    # -- signals ----------------------------------------------------------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        key = self._key(run_id)
        raw = await self._run("read a signal", lambda client: client.hget(key, SIGNAL + name))
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
        here = await self._on_loop()
        if here.listener is None:
            here.listener = SignalListener(here.client, self.keys.channel, self._where)
        key = self._key(run_id)

        async def delivered() -> bool:
            found = await self._run("read a signal", lambda c: c.hexists(key, SIGNAL + name))
            return bool(found)

        await here.listener.wait(run_id, name, max_wait, delivered)

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
        self._check_lease(lease_seconds)
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

    def _check_lease(self, lease_seconds: float) -> None:
        """Refuse a lease longer than the ttl, before anything is written: the run's
        keys could expire while it executes (renewals come every third of the lease),
        and a late write would then rebuild a record without its inputs."""
        ttl = self.ttl
        if ttl is not None and float(lease_seconds) > ttl:
            raise ValueError(
                f"the Redis store {self._where} has ttl={ttl:g} s, shorter than the lease "
                f"of this workflow (lease_seconds={float(lease_seconds):g}): the ttl must be "
                "at least lease_seconds (better many times it), or a run's keys could "
                "expire while it executes. Raise ttl (RedisStore(ttl=...) or ?ttl=; "
                "none: no expiry) or lower Workflow(lease_seconds=...)"
            )

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

    async def mark_progress(self, run_id: str, owner: str) -> None:
        await self._script(
            "note a run's progress", scripts.MARK_PROGRESS, run_id, (self._ttl_ms, owner)
        )

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
    ) -> bool:
        args = (self._ttl_ms, owner, status, "1" if has_result else "0",
                json.dumps(result) if has_result else "", "0" if error is None else "1",
                error or "")  # fmt: skip
        recorded = await self._indexed("record a run's outcome", scripts.FINISH, run_id, args)
        return int(recorded) == 1

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
        values = await self._run("read a run", lambda client: client.hmget(key, RECORD_FIELDS))
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

        async def listing(client: Redis) -> list[RunRecord]:
            found: dict[str, RunRecord] = {}
            async with aclosing(walk_runs(client, self.keys.index, self._key)) as walk:
                async for batch in walk:
                    for record in batch:
                        if status in (None, record.status) and workflow in (None, record.workflow):
                            found.setdefault(record.run_id, record)
                    if len(found) >= limit:
                        break
            return list(found.values())[:limit]

        return await self._run("list runs", listing)

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        """One page of the runs in ``status``, oldest first; walks the index from the
        cursor (a position in it), reading the records of every status on the way."""
        after = _position(cursor)
        if limit < 1:
            raise ValueError(f"scan_runs: limit must be 1 or more, not {limit!r}")

        async def scanning(client: Redis) -> tuple[list[RunRecord], Position | None]:
            return await scan_page(client, self.keys.index, self._key, status, after, limit)

        page, last = await self._run("scan runs", scanning)
        return page, None if last is None else json.dumps([last[0], last[1]])

    async def delete_runs(self, *, finished_before: float, statuses: Sequence[RunStatus]) -> int:
        """Delete whole runs (steps, signals and attempts too); each is checked again
        atomically."""
        if not statuses:
            return 0
        cutoff = repr(float(finished_before))

        async def deleting(client: Redis) -> int:
            deleted = 0
            async with aclosing(walk_runs(client, self.keys.index, self._key)) as walk:
                async for batch in walk:
                    doomed = [
                        r.run_id for r in batch
                        if r.status in statuses and r.updated_at is not None
                        and r.updated_at.timestamp() < finished_before
                    ]  # fmt: skip
                    calls = [(self.keys.run_keys(run_id), (cutoff, *statuses)) for run_id in doomed]
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

    async def _run(self, what: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        client = (await self._on_loop()).client
        return await self._resender.run(what, lambda: call(client))

    async def _hgetall(self, what: str, run_id: str) -> dict[Any, Any]:
        key = self._key(run_id)
        return await self._run(what, lambda client: client.hgetall(key))

    async def _script(
        self, what: str, script: scripts.Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        keys = self.keys.run_keys(run_id)
        return await self._run(what, lambda client: run_script(client, script, keys, args))

    async def _indexed(
        self, what: str, script: scripts.Script, run_id: str, args: Sequence[str | int]
    ) -> Any:
        keys, index, score = self.keys.run_keys(run_id), self.keys.index, time.time()
        return await self._run(
            what,
            lambda client: run_script_indexed(
                client, script, keys, args, index=index, run_id=run_id, score=score
            ),
        )

    async def _change(self, what: str, script: scripts.Script, run_id: str) -> RunRecord | None:
        known, values = await self._script(what, script, run_id, (self._ttl_ms,))
        return decode_record(run_id, values) if int(known) == 1 else None


class _OnLoop:
    """What the store uses on one event loop: a client, and the signal subscription
    (redis-py binds connections, and asyncio its futures, to one loop)."""

    __slots__ = ("client", "listener", "loop", "reopening")

    def __init__(self, loop: AbstractEventLoop, client: Redis) -> None:
        self.loop = loop
        self.client = client
        self.listener: SignalListener | None = None
        #: The given client's connections being reopened on this loop.
        self.reopening: asyncio.Task[None] | None = None

    async def close(self, *, own_client: bool) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            await listener.close()
        if own_client:
            await self.client.aclose()


async def _reconnect(client: Redis, where: str) -> None:
    """Disconnect ``client``'s connections (opened on another event loop) so that each
    reconnects on this one; its pool and settings stay. Never raises."""
    try:
        async with asyncio.timeout(5):  # never wait on a lock held on the old loop
            if isinstance(client, RedisCluster):
                # The nodes of the slot map, and the startup nodes (their own objects).
                startup: Any = getattr(client.nodes_manager, "startup_nodes", {})
                for node in [*client.get_nodes(), *startup.values()]:
                    with suppress(Exception):
                        await node.disconnect()
            else:
                # Closing a transport of a closed loop fails; the connection is reset.
                await client.connection_pool.disconnect()
    except Exception as exc:
        log.debug("%s: connections of another event loop left as they were (%r)", where, exc)


def _position(cursor: str | None) -> Position | None:
    """The index position a ``scan_runs`` cursor names (the JSON of [score, run id])."""
    if cursor is None:
        return None
    try:
        score, run_id = json.loads(cursor)
        return float(score), str(run_id)
    except (ValueError, TypeError):
        raise ValueError(f"not a cursor of RedisStore.scan_runs: {cursor!r}") from None


def _check_url(url: str) -> None:
    """Refuse a URL redis-py cannot use, with the URL masked: redis-py's own errors
    can quote a piece of a password that holds ``/``, ``?`` or ``#`` (as a port, a
    db, or the host of "Error connecting to ...")."""
    try:
        from redis.asyncio.connection import parse_url
    except ImportError:  # a redis-py without it: it will say so when connecting
        return
    try:
        _loose(parse_url)(url)
    except (ValueError, TypeError) as exc:
        # redis-py's reason may quote a piece of a password: shown for URLs without one.
        raise _bad_url(url, str(exc) if mask_url(url) == url else type(exc).__name__) from None
    if misread_user_info(url):
        raise _bad_url(url, "a piece of its password would be read as the host, port or path")


def _bad_url(url: str, reason: str) -> ValueError:
    masked = mask_url(url)
    hint = (
        "; a password holding '/', '?', '#' or '@' must be percent-encoded "
        "(urllib.parse.quote(password, safe=''))"
        if masked != url
        else ""
    )
    return ValueError(f"{masked!r} is not a Redis URL redis-py can connect to ({reason}){hint}")


def _loose(value: object) -> Any:
    """redis-py methods whose annotations leave ``**kwargs`` untyped, as ``Any``."""
    return value
