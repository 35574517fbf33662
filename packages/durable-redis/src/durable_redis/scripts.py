"""The Lua scripts of the store: each write is one atomic script call, one round trip.

Every script takes two keys, the run's hash and its attempts hash (see
:mod:`durable_redis.keys`; one hash tag, so one Cluster slot), and, except the
checkpoint script, the TTL in milliseconds as ARGV[1] (0: no expiry). A script that
changes a run refreshes the TTL of both, so a run expires ``ttl`` after its last
write, as a whole. Run times and leases come from the server's clock (``TIME``), so
that processes on hosts whose clocks disagree still agree on when a lease ends.

Fencing: a write that names its owner (a checkpoint, an attempt, an outcome, a lease
renewal or release) checks in the same script that the run is ``running`` under that
owner, and writes nothing otherwise; the check and the write are one atomic step.

redis-py resends a command whose connection failed, also when the server had already
run it (DESIGN §7). Each script is therefore safe to run twice with the same
arguments: the second run reports what the first one did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .keys import RECORD_FIELDS

#: The fencing check, the one definition of it: the prelude and the checkpoint script
#: (which has no prelude, being the hot path) both include this text. It needs ``run``
#: (the run's hash) in scope.
_REFUSAL = """
-- Why ``owner`` may not write the run: nil when it may, else {code, status, holder}
-- (code 0: no record; 1: the run is not running; 2: another owner, or none, holds it).
local function refusal(owner)
  local found = redis.call('HMGET', run, 'status', 'owner')
  if not found[1] then return {0, '', ''} end
  if found[1] ~= 'running' then return {1, found[1], found[2] or ''} end
  if found[2] ~= owner then return {2, found[1], found[2] or ''} end
  return nil
end
"""

_PRELUDE = (
    """
local run, attempts = KEYS[1], KEYS[2]
local function touch()
  local ttl_ms = tonumber(ARGV[1])
  if ttl_ms > 0 then
    redis.call('PEXPIRE', run, ttl_ms)
    redis.call('PEXPIRE', attempts, ttl_ms)
  else
    redis.call('PERSIST', run)
    redis.call('PERSIST', attempts)
  end
end
"""
    + _REFUSAL
    + """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function stamp(seconds) return string.format('%.6f', seconds) end
local function record() return redis.call('HMGET', run, RECORD_FIELDS) end
-- A granted claim (the rule of claim_run, shared by CLAIM and CLAIM_ORPHAN): the run
-- becomes running under ``owner`` with a fresh lease. Taking over a run that another
-- owner left running counts a recovery (counts_as_recovery), in recoveries and in
-- recoveries_without_progress (a checkpoint clears the latter).
local function grant(owner, lease_seconds, now, status, holder)
  if status == 'running' and holder and holder ~= owner then
    redis.call('HINCRBY', run, 'recoveries', 1)
    redis.call('HINCRBY', run, 'recoveries_without_progress', 1)
  end
  redis.call('HSET', run, 'status', 'running', 'owner', owner,
             'lease', stamp(now + tonumber(lease_seconds)), 'updated', stamp(now))
  redis.call('HDEL', run, 'error', 'finished_by', 'orphan_claim')
  touch()
end
"""
)


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

    ARGV: "step:<id>", encoded step, and the owner for a fenced write. One ``HSET`` and
    the ``PEXPIRE`` of both keys (``PERSIST`` without a TTL); returns the run's
    ``cancel_requested`` field, in the same round trip. A checkpoint is progress: it
    clears ``recoveries_without_progress``, so only take-overs in a row with no
    checkpoint between them count towards dead-lettering (``recoveries`` counts all).
    A fenced write first checks that the run is ``running`` under that owner; when
    not, it writes nothing and returns the prelude's ``refusal`` (the same Lua text).
    """
    if ttl_ms > 0:
        expire = f"redis.call('PEXPIRE', run, {ttl_ms})\nredis.call('PEXPIRE', KEYS[2], {ttl_ms})"
    else:
        expire = "redis.call('PERSIST', run)\nredis.call('PERSIST', KEYS[2])"
    body = f"""
if ARGV[3] then
  local refused = refusal(ARGV[3])
  if refused then return refused end
end
redis.call('HSET', run, ARGV[1], ARGV[2])
redis.call('HDEL', run, 'recoveries_without_progress')
{expire}
return redis.call('HGET', run, 'cancel_requested')
"""
    return _script("checkpoint_step", "local run = KEYS[1]\n" + _REFUSAL + body, prelude=False)


# ARGV: ttl, step id, attempt, has owner ('1'/'0'), owner. Attempt n > 0: the step's
# attempt n failed (the count so far); 0: its failure was final, the count is cleared.
# A fenced call (has owner) writes only while the run is running under that owner,
# else returns the refusal. Returns 1 when written.
RECORD_ATTEMPT = _script(
    "record_attempt",
    """
if ARGV[4] == '1' then
  local refused = refusal(ARGV[5])
  if refused then return refused end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('HSET', attempts, ARGV[2], ARGV[3])
else
  redis.call('HDEL', attempts, ARGV[2])
end
touch()
return 1
""",
)


# ARGV: ttl, workflow, inputs, owner, lease seconds, has takeover ('1'/'0'), takeover,
# has input digest ('1'/'0'), input digest. The rule of durable.store.claim_allowed: a
# run on record belongs to one workflow and one set of inputs (same_identity), and a
# claim of another workflow's run, or with another digest when both sides have one, is
# refused before anything is written (no status, lease, time, TTL or recovery change).
# A granted claim is the prelude's ``grant`` (which counts a take-over's recovery). A
# claim that creates the record stores the digest; a record without one (made before
# 0.4) keeps none, which tells the engine its step ids may be old-style. Returns
# {outcome, the record}: 2 when the claim created the record, 1 when it took a run on
# record, 0 when refused. A claim resent after a lost reply finds the record its first
# run made, with its own workflow and digest: 1. A claim that creates the record
# deletes an attempts hash left without one.
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
    -- Attempts without a record are left from a run that is gone: not this one's.
    redis.call('DEL', attempts)
    redis.call('HSET', run, 'workflow', ARGV[2], 'inputs', ARGV[3], 'has_result', '0',
               'created', stamp(now))
    if ARGV[8] == '1' then redis.call('HSET', run, 'input_digest', ARGV[9]) end
  end
  grant(ARGV[4], ARGV[5], now, status, holder)
end
return {granted and (status and 1 or 2) or 0, record()}
""",
)

# ARGV: ttl, owner, lease seconds, workflow, call token (32 chars). One run of
# claim_orphans: taken, as claim_run would take it (the prelude's ``grant``), only while
# it is still running, of ``workflow``, and no lease of it is live by the server's clock
# (its owner's lease ran out, or no one holds it: released or reopened). Atomic per
# run, so of workers asking at once one gets it, and the others find a live lease. The
# token (one per claim_orphans call) is kept on the run (orphan_claim, until the next
# claim), so that this very call resent after a lost reply reports the run it took.
# Returns {1, the record} when taken, {0} when not.
CLAIM_ORPHAN = _script(
    "claim_orphan",
    """
local now = clock()
local found = redis.call('HMGET', run, 'status', 'owner', 'workflow', 'lease', 'orphan_claim')
local status, holder, lease = found[1], found[2], found[4]
if status ~= 'running' or found[3] ~= ARGV[4] then return {0} end
if holder == ARGV[2] and found[5] == ARGV[5] then return {1, record()} end
if holder and lease and tonumber(lease) > now then return {0} end
grant(ARGV[2], ARGV[3], now, status, holder)
redis.call('HSET', run, 'orphan_claim', ARGV[5])
return {1, record()}
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

# ARGV: ttl, owner. The run reached a wait after a take-over: progress, so the count
# of take-overs without it starts again (only while ``owner`` holds the run).
MARK_PROGRESS = _script(
    "mark_progress",
    """
if not refusal(ARGV[2]) then
  redis.call('HDEL', run, 'recoveries_without_progress')
  touch()
end
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
# that lost the run, or whose run was cancelled meanwhile, or whose record is gone,
# cannot); owner '' always can, and makes the record if there is none. Returns 1 when
# the outcome was recorded, 0 when not. The owner that finished the run is kept
# (finished_by, until the next claim), so that this very call resent after a lost
# reply still says 1.
FINISH = _script(
    "finish_run",
    """
local now = clock()
if ARGV[2] ~= '' then
  if refusal(ARGV[2]) then
    local done = redis.call('HMGET', run, 'status', 'finished_by')
    return (done[1] == ARGV[3] and done[2] == ARGV[2]) and 1 or 0
  end
elseif redis.call('HEXISTS', run, 'status') == 0 then
  redis.call('HSET', run, 'workflow', '', 'created', stamp(now))
end
redis.call('HSET', run, 'status', ARGV[3], 'has_result', ARGV[4], 'updated', stamp(now))
if ARGV[4] == '1' then redis.call('HSET', run, 'result', ARGV[5])
else redis.call('HDEL', run, 'result') end
if ARGV[6] == '1' then redis.call('HSET', run, 'error', ARGV[7])
else redis.call('HDEL', run, 'error') end
redis.call('HDEL', run, 'owner', 'lease', 'cancel_requested')
if ARGV[2] ~= '' then redis.call('HSET', run, 'finished_by', ARGV[2])
else redis.call('HDEL', run, 'finished_by') end
touch()
return 1
""",
)

# ARGV: ttl, channel, message. A run executing somewhere (live lease) gets
# cancel_requested, which its next checkpoint reports; a failed or released one is
# cancelled at once. Either way the message goes out on the channel, so that a run
# waiting (a sleep, a signal) in any process hears of it at once (wait_for_change).
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
    redis.call('HDEL', run, 'cancel_requested', 'finished_by')
  end
  touch()
  redis.call('PUBLISH', ARGV[2], ARGV[3])
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
  redis.call('HDEL', run, 'owner', 'lease', 'cancel_requested', 'recoveries',
             'recoveries_without_progress', 'finished_by')
  touch()
end
return {1, record()}
""",
)

# ARGV: finished before (epoch seconds), statuses... Deletes the run (both its keys)
# when it is in one of the statuses and was last changed before the time. Returns 1
# deleted, 0 kept, -1 no such run (an index entry left by an expired run).
DELETE_IF = _script(
    "delete_run",
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated') or '0')
if updated >= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV do
  if status == ARGV[i] then
    redis.call('DEL', KEYS[1], KEYS[2])
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
