"""The Lua scripts of the store: each write is one atomic script call, one round trip.

Every script takes the run's hash (see :mod:`durable_redis.keys`) as its one key and,
except the checkpoint script, the TTL in milliseconds as ARGV[1] (0: no expiry). A
script that changes a run refreshes the hash's TTL, so the run expires ``ttl`` after
its last write, as a whole. Run times and leases come from the server's clock
(``TIME``), so that processes on hosts whose clocks disagree still agree on when a
lease ends.

redis-py resends a command whose connection failed, also when the server had already
run it (DESIGN §7). Each script is therefore safe to run twice with the same
arguments: the second run reports what the first one did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

from .keys import RECORD_FIELDS

_PRELUDE = """
local run = KEYS[1]
local function touch()
  local ttl_ms = tonumber(ARGV[1])
  if ttl_ms > 0 then redis.call('PEXPIRE', run, ttl_ms) else redis.call('PERSIST', run) end
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function stamp(seconds) return string.format('%.6f', seconds) end
local function record() return redis.call('HMGET', run, RECORD_FIELDS) end
"""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _script(name: str, body: str, *, prelude: bool = True) -> Script:
    source = (_PRELUDE if prelude else "") + body
    source = source.replace("RECORD_FIELDS", ", ".join(f"'{f}'" for f in RECORD_FIELDS))
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def checkpoint_script(ttl_ms: int) -> Script:
    """The hot path: no prelude, the TTL written into the script.

    ARGV: "step:<id>", encoded step. One ``HSET`` and one ``PEXPIRE`` (``PERSIST``
    without a TTL); returns the run's ``cancel_requested`` field, in the same round trip.
    """
    expire = (
        f"redis.call('PEXPIRE', KEYS[1], {ttl_ms})\n"
        if ttl_ms > 0
        else "redis.call('PERSIST', KEYS[1])\n"
    )
    return _script(
        "checkpoint_step",
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
        f"{expire}return redis.call('HGET', KEYS[1], 'cancel_requested')\n",
        prelude=False,
    )


# ARGV: ttl, workflow, inputs, owner, lease seconds, has takeover ('1'/'0'), takeover,
# has input digest ('1'/'0'), input digest. The rule of durable.store.claim_allowed: a
# run on record belongs to one workflow and one set of inputs (same_identity), and a
# claim of another workflow's run, or with another digest when both sides have one, is
# refused before anything is written (no status, lease, time, TTL or recovery change).
# A claim on a run someone else left running counts a recovery (counts_as_recovery). A
# claim that creates the record stores the digest; a record without one (made before
# 0.4) keeps none, which tells the engine its step ids may be old-style. Returns
# {outcome, the record}: 2 when the claim created the record, 1 when it took a run on
# record, 0 when refused. A claim resent after a lost reply finds the record its first
# run made, with its own workflow and digest: 1.
CLAIM = _script(
    "claim_run",
    """
local now = clock()
local found = redis.call('HMGET', run, 'status', 'owner', 'workflow', 'input_digest')
local status, holder, digest = found[1], found[2], found[4]
local granted
if not status then
  granted = true
elseif (found[3] or '') ~= ARGV[2] or (ARGV[8] == '1' and digest and digest ~= ARGV[9]) then
  granted = false  -- another workflow's run, or other inputs: the engine says which
elseif status == 'failed' then
  granted = true
elseif status == 'completed' then
  granted = redis.call('HGET', run, 'has_result') ~= '1'
elseif status ~= 'running' then
  granted = false
else
  local lease = redis.call('HGET', run, 'lease')
  granted = (not holder) or holder == ARGV[4] or (ARGV[6] == '1' and holder == ARGV[7])
    or (not lease) or tonumber(lease) <= now
end
if granted then
  if not status then
    redis.call('HSET', run, 'workflow', ARGV[2], 'inputs', ARGV[3], 'has_result', '0',
               'created', stamp(now))
    if ARGV[8] == '1' then redis.call('HSET', run, 'input_digest', ARGV[9]) end
  elseif status == 'running' and holder and holder ~= ARGV[4] then
    redis.call('HINCRBY', run, 'recoveries', 1)
  end
  redis.call('HSET', run, 'status', 'running', 'owner', ARGV[4],
             'lease', stamp(now + tonumber(ARGV[5])), 'updated', stamp(now))
  redis.call('HDEL', run, 'error')
  touch()
end
return {granted and (status and 1 or 2) or 0, record()}
""",
)

# ARGV: ttl, owner, lease seconds. Returns 1 when renewed, 0 when another owner holds
# the run or it ended, -1 when its record is gone (flushed, or lost by a restart
# without persistence: a live run cannot expire, each renewal refreshes its TTL).
RENEW = _script(
    "renew_lease",
    """
local status = redis.call('HGET', run, 'status')
if not status then return -1 end
if status ~= 'running' or redis.call('HGET', run, 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', run, 'lease', stamp(clock() + tonumber(ARGV[3])))
touch()
return 1
""",
)

# ARGV: ttl, owner
RELEASE = _script(
    "release_run",
    """
if redis.call('HGET', run, 'owner') == ARGV[2] then
  redis.call('HDEL', run, 'owner', 'lease')
  touch()
end
return 1
""",
)

# ARGV: ttl, owner ('' = any: the seed's mark_run_done/failed), status, has result,
# result, has error, error. Only the owner of a running run may finish it (an owner
# that lost the run, or whose run was cancelled meanwhile, cannot); owner '' always can.
FINISH = _script(
    "finish_run",
    """
local now = clock()
if redis.call('HEXISTS', run, 'status') == 1 then
  if ARGV[2] ~= '' and (redis.call('HGET', run, 'status') ~= 'running'
                        or redis.call('HGET', run, 'owner') ~= ARGV[2]) then
    return 0
  end
else
  redis.call('HSET', run, 'workflow', '', 'created', stamp(now))
end
redis.call('HSET', run, 'status', ARGV[3], 'has_result', ARGV[4], 'updated', stamp(now))
if ARGV[4] == '1' then redis.call('HSET', run, 'result', ARGV[5])
else redis.call('HDEL', run, 'result') end
if ARGV[6] == '1' then redis.call('HSET', run, 'error', ARGV[7])
else redis.call('HDEL', run, 'error') end
redis.call('HDEL', run, 'owner', 'lease', 'cancel_requested')
touch()
return 1
""",
)

# ARGV: ttl. A run executing somewhere (live lease) gets cancel_requested, which its
# next checkpoint reports; a failed or released one is cancelled at once.
# Returns {known (1/0), the record}.
REQUEST_CANCEL = _script(
    "request_cancel",
    """
local status = redis.call('HGET', run, 'status')
if not status then return {0, {}} end
if status == 'running' or status == 'failed' then
  local now = clock()
  local lease = redis.call('HGET', run, 'lease')
  if status == 'running' and redis.call('HEXISTS', run, 'owner') == 1 and lease
     and tonumber(lease) > now then
    redis.call('HSET', run, 'cancel_requested', '1', 'updated', stamp(now))
  else
    redis.call('HSET', run, 'status', 'cancelled', 'error', 'cancelled', 'updated', stamp(now))
    redis.call('HDEL', run, 'cancel_requested')
  end
  touch()
end
return {1, record()}
""",
)

# ARGV: ttl. A failed, cancelled or dead run becomes running with no owner.
REOPEN = _script(
    "reopen_run",
    """
local status = redis.call('HGET', run, 'status')
if not status then return {0, {}} end
if status == 'failed' or status == 'cancelled' or status == 'dead' then
  redis.call('HSET', run, 'status', 'running', 'updated', stamp(clock()))
  redis.call('HDEL', run, 'owner', 'lease', 'cancel_requested', 'recoveries')
  touch()
end
return {1, record()}
""",
)

# ARGV: finished before (epoch seconds), statuses... Deletes the run when it is in one
# of the statuses and was last changed before the time. Returns 1 deleted, 0 kept,
# -1 no such run (an index entry left by an expired run).
DELETE_IF = _script(
    "delete_run",
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated') or '0')
if updated >= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV do
  if status == ARGV[i] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
""",
    prelude=False,
)

# ARGV: ttl, "signal:<name>", delivery token (32 chars), encoded signal, channel,
# message. First write wins. The token tells a retry of our own write (it succeeded,
# the reply was lost) from another caller's delivery: the retry still reports 1.
SET_SIGNAL = _script(
    "set_signal",
    """
local stored = redis.call('HGET', run, ARGV[2])
if stored then
  if string.sub(stored, 1, 32) == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', run, ARGV[2], ARGV[4])
touch()
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
""",
)


async def run_script(client: Redis, script: Script, key: str, args: Sequence[str | int]) -> Any:
    """EVALSHA, loading the script first if the server does not know it (yet, or any
    more: a restarted server has an empty script cache)."""
    try:
        return await client.evalsha(script.sha, 1, key, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, 1, key, *args)


async def run_script_indexed(
    client: Redis,
    script: Script,
    key: str,
    args: Sequence[str | int],
    *,
    index: str,
    run_id: str,
    score: float,
) -> Any:
    """``run_script`` plus ``ZADD NX index score run_id``, pipelined: one round trip.

    The index entry goes first, so that a crash in between leaves an entry without a
    record (``list_runs`` skips and prunes it), never a record missing from the index.
    It is a separate command, not part of the script, because on a Redis Cluster the
    index lives in another slot than the run's hash.
    """
    if isinstance(client, RedisCluster):  # its pipelines refuse EVALSHA: two round trips
        await client.zadd(index, {run_id: score}, nx=True)
        return await run_script(client, script, key, args)
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        pipe.zadd(index, {run_id: score}, nx=True)
        pipe.evalsha(script.sha, 1, key, *args)
        try:
            results: list[Any] = await pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            await client.script_load(script.source)
            continue
        return results[-1]
    raise AssertionError("unreachable")


async def run_script_many(
    client: Redis, script: Script, calls: Sequence[tuple[str, Sequence[str | int]]]
) -> list[Any]:
    """One script on many runs: pipelined, or one call after another on a Cluster (its
    pipelines refuse EVALSHA). For bulk maintenance, not for hot paths."""
    if not calls:
        return []
    await client.script_load(script.source)
    if isinstance(client, RedisCluster):
        return [await run_script(client, script, key, args) for key, args in calls]
    pipe = client.pipeline(transaction=False)
    for key, args in calls:
        pipe.evalsha(script.sha, 1, key, *args)
    results: list[Any] = await pipe.execute()
    return results
