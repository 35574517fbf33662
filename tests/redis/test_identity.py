"""A run id belongs to one workflow and one set of inputs (``durable.records.same_identity``).

A claim of a run on record from another workflow, or with another input digest when
both the record and the caller have one, is refused by the claim script before it
writes anything: the run's hash, its TTL and its index entry stay exactly as they
were. Checked on fakeredis, on the real server and on a Cluster, and against
InMemoryStore, the reference, for the same calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from durable import InMemoryStore, Store
from durable.store import RunClaim, RunRecord
from durable_redis import RedisStore

from .conftest import RedisServer
from .test_faults import DroppingProxy

TTL = 60.0
#: A TTL no claim of the store (TTL seconds) would set: if it is still there after a
#: claim, the claim did not refresh the run's expiry.
MARKER_TTL_MS = 3_600_000

Scenario = Callable[[Store], Awaitable[list[Any]]]


@dataclass
class Harness:
    store: RedisStore
    client: Any  # a plain client on the same data, to look at the hash itself

    def key(self, run_id: str) -> str:
        return self.store.keys.run_key(run_id)

    async def raw(self, run_id: str) -> tuple[Any, ...]:
        """Everything Redis keeps about the run: its hash, its index entry."""
        fields = await self.client.hgetall(self.key(run_id))
        score = await self.client.zscore(self.store.keys.index, run_id)
        return fields, score

    async def mark_ttl(self, run_id: str) -> None:
        assert await self.client.pexpire(self.key(run_id), MARKER_TTL_MS)

    async def ttl_ms(self, run_id: str) -> int:
        ttl: int = await self.client.pttl(self.key(run_id))
        return ttl


@pytest.fixture(params=["fakeredis", "server", "cluster"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    client: Any
    if request.param == "fakeredis":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        store = RedisStore(client=client, ttl=TTL)
    elif request.param == "cluster":
        port = request.getfixturevalue("cluster_port")
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        store = RedisStore(client=client, ttl=TTL, prefix=f"ident-{uuid.uuid4().hex[:8]}")
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("prefix")
        store = RedisStore(url, ttl=TTL, prefix=prefix)
        client = redis.asyncio.Redis.from_url(url)
    await store.setup()
    yield Harness(store, client)
    await store.close()
    await client.aclose()


def plain(record: RunRecord | None) -> Any:
    """A record without its times, which differ between any two stores."""
    if record is None:
        return None
    return dataclasses.replace(record, created_at=None, updated_at=None, lease_expires_at=None)


def outcome(claim: RunClaim) -> tuple[bool, bool, Any]:
    return claim.acquired, claim.created, plain(claim.record)


async def same_on_both(scenario: Scenario, store: RedisStore) -> list[Any]:
    expected = await scenario(InMemoryStore())
    assert await scenario(store) == expected
    return expected


# The states a run on record can be in when a claim of another identity comes, each
# one a state in which a claim of the run's own identity by "b" would be granted.
async def failed(store: Store, run_id: str, digest: str | None) -> None:
    await store.claim_run(run_id, "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest=digest)
    await store.finish_run(run_id, "a", "failed", error="RuntimeError: boom")


async def unstored_result(store: Store, run_id: str, digest: str | None) -> None:
    await store.claim_run(run_id, "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest=digest)
    await store.finish_run(run_id, "a", "completed", has_result=False)


async def lease_ran_out(store: Store, run_id: str, digest: str | None) -> None:
    await store.claim_run(
        run_id, "wf", {"n": 1}, owner="a", lease_seconds=0.01, input_digest=digest
    )
    await asyncio.sleep(0.05)


async def held_by_caller(store: Store, run_id: str, digest: str | None) -> None:
    """Owned by "b" itself, the caller: the state a resent claim finds."""
    await store.claim_run(run_id, "wf", {"n": 1}, owner="b", lease_seconds=30, input_digest=digest)


STATES = [failed, unstored_result, lease_ran_out, held_by_caller]


async def check_refused_and_untouched(
    harness: Harness, run_id: str, *, workflow: str, digest: str | None
) -> RunClaim:
    """Claim as "b" and check that the claim was refused and nothing changed."""
    await harness.mark_ttl(run_id)
    before = await harness.raw(run_id)
    record_before = await harness.store.get_run(run_id)
    claim = await harness.store.claim_run(
        run_id, workflow, {"n": 2}, owner="b", lease_seconds=30, input_digest=digest
    )
    assert (claim.acquired, claim.created) == (False, False)
    assert claim.record == record_before, "the refused claim returns the record as it is"
    assert await harness.raw(run_id) == before, "the refused claim changed the run's hash"
    assert await harness.ttl_ms(run_id) > MARKER_TTL_MS - 60_000, "it refreshed the TTL"
    assert await harness.store.get_run(run_id) == record_before
    return claim


@pytest.mark.parametrize("state", STATES, ids=lambda state: state.__name__)
async def test_a_claim_of_another_workflow_is_refused_and_changes_nothing(
    harness: Harness, state: Callable[[Store, str, str | None], Awaitable[None]]
) -> None:
    for digest in (None, "d1"):  # with or without digests on either side
        run_id = f"r-{digest}"
        await state(harness.store, run_id, digest)
        for caller_digest in (None, digest, "d2"):
            claim = await check_refused_and_untouched(
                harness, run_id, workflow="other", digest=caller_digest
            )
            assert (claim.record.workflow, claim.record.input_digest) == ("wf", digest)
        # Its own workflow still gets the run: the refusal left it claimable.
        claim = await harness.store.claim_run(
            run_id, "wf", None, owner="b", lease_seconds=30, input_digest=digest
        )
        assert claim.acquired
        assert claim.record.input_digest == digest


@pytest.mark.parametrize("state", STATES, ids=lambda state: state.__name__)
async def test_a_claim_with_another_digest_is_refused_and_changes_nothing(
    harness: Harness, state: Callable[[Store, str, str | None], Awaitable[None]]
) -> None:
    await state(harness.store, "r", "d1")
    claim = await check_refused_and_untouched(harness, "r", workflow="wf", digest="d2")
    assert (claim.record.run_id, claim.record.workflow) == ("r", "wf")
    assert claim.record.input_digest == "d1"  # the engine names both in its error
    assert claim.record.inputs == {"n": 1}


@pytest.mark.parametrize("state", STATES, ids=lambda state: state.__name__)
async def test_a_claim_with_the_same_digest_or_none_is_granted(
    harness: Harness, state: Callable[[Store, str, str | None], Awaitable[None]]
) -> None:
    for run_id, caller_digest in (("same", "d1"), ("none", None)):
        await state(harness.store, run_id, "d1")
        await harness.mark_ttl(run_id)
        claim = await harness.store.claim_run(
            run_id, "wf", {"n": 2}, owner="b", lease_seconds=30, input_digest=caller_digest
        )
        assert (claim.acquired, claim.created) == (True, False)
        assert (claim.record.status, claim.record.owner) == ("running", "b")
        assert claim.record.input_digest == "d1", "a granted claim keeps the recorded digest"
        assert claim.record.inputs == {"n": 1}
        assert await harness.ttl_ms(run_id) <= TTL * 1000, "a granted claim refreshes the TTL"
        assert await harness.store.get_run(run_id) == claim.record


async def test_a_created_record_keeps_its_digest(harness: Harness) -> None:
    store = harness.store
    claim = await store.claim_run(
        "new", "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest="d1"
    )
    assert (claim.acquired, claim.created) == (True, True)
    assert claim.record.input_digest == "d1"
    assert await harness.client.hget(harness.key("new"), "input_digest") == b"d1"
    run = await store.get_run("new")
    assert run is not None
    assert (run.workflow, run.input_digest) == ("wf", "d1")
    assert run == claim.record
    assert [r.input_digest for r in await store.list_runs(workflow="wf")] == ["d1"]
    await store.finish_run("new", "a", "completed", result=5, has_result=True)
    run = await store.get_run("new")
    assert run is not None
    assert (run.status, run.input_digest) == ("completed", "d1")

    # Without a digest, nothing is stored for it: a record as older versions wrote.
    claim = await store.claim_run("bare", "wf", None, owner="a", lease_seconds=30)
    assert (claim.acquired, claim.created, claim.record.input_digest) == (True, True, None)
    assert not await harness.client.hexists(harness.key("bare"), "input_digest")


async def test_a_record_without_digest_keeps_none_on_a_granted_claim(
    harness: Harness,
) -> None:
    """A run recorded without a digest (by 0.3, whose script never wrote the field) is
    not compared, and keeps no digest: the engine reads that as "its step ids may be
    old-style", so the field must not appear behind its back."""
    store = harness.store
    await store.claim_run("old", "wf", {"n": 1}, owner="a", lease_seconds=30)  # no digest
    assert not await harness.client.hexists(harness.key("old"), "input_digest")

    # Refused for another reason (a live lease of "a"): nothing changes.
    await check_refused_and_untouched(harness, "old", workflow="wf", digest="d1")

    holder = "a"
    for owner, digest in (("b", "d1"), ("c", "d2")):  # any digest: not compared
        await store.finish_run("old", holder, "failed", error="RuntimeError: boom")
        claim = await store.claim_run(
            "old", "wf", None, owner=owner, lease_seconds=30, input_digest=digest
        )
        holder = owner
        assert (claim.acquired, claim.created) == (True, False)
        assert claim.record.input_digest is None
        assert not await harness.client.hexists(harness.key("old"), "input_digest")
    run = await store.get_run("old")
    assert run is not None
    assert run.input_digest is None
    assert [r.input_digest for r in await store.list_runs()] == [None]
    # Another workflow is refused all the same, also when the run is failed.
    await store.finish_run("old", holder, "failed", error="RuntimeError: boom")
    await check_refused_and_untouched(harness, "old", workflow="other", digest="d1")


async def test_a_resent_claim_still_finds_its_own_record(harness: Harness) -> None:
    """redis-py resends a claim whose reply was lost: the resend has the same workflow
    and digest as the record its first run made, so it is granted, without ``created``."""
    store = harness.store
    first = await store.claim_run(
        "r", "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest="d1"
    )
    resent = await store.claim_run(
        "r", "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest="d1"
    )
    assert (first.acquired, first.created) == (True, True)
    assert (resent.acquired, resent.created) == (True, False)
    assert plain(resent.record) == plain(first.record)
    assert resent.record.input_digest == "d1"


async def test_a_claim_whose_reply_was_lost_is_resent_and_granted(
    redis_server: RedisServer,
) -> None:
    """The real thing: the server runs the claim, the reply never arrives, the store
    resends it. The resend meets the record (and digest) its first run wrote."""
    async with DroppingProxy(redis_server.port) as proxy:
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", ttl=TTL)
        await store.setup()
        # Load the script first: a dropped NOSCRIPT reply would prove nothing.
        await store.claim_run("warm-up", "wf", None, owner="a", lease_seconds=30)
        digest = "drop-me-" + uuid.uuid4().hex[:8]
        proxy.armed = digest.encode()
        claim = await store.claim_run(
            "r", "wf", {"n": 1}, owner="a", lease_seconds=30, input_digest=digest
        )
        assert proxy.dropped == 1, "the reply was not dropped: the test proves nothing"
        assert (claim.acquired, claim.created) == (True, False)
        assert (claim.record.workflow, claim.record.input_digest) == ("wf", digest)
        assert claim.record.recoveries == 0
        other = await store.claim_run(
            "r", "wf", {"n": 2}, owner="a", lease_seconds=30, input_digest="other"
        )
        assert (other.acquired, other.record.input_digest) == (False, digest)
        await store.close()


async def test_identity_rule_matches_the_memory_store(harness: Harness) -> None:
    async def scenario(store: Store) -> list[Any]:
        seen: list[Any] = []

        async def claim(run_id: str, workflow: str, owner: str, digest: str | None) -> None:
            got = await store.claim_run(
                run_id, workflow, {"n": 1}, owner=owner, lease_seconds=30, input_digest=digest
            )
            seen.append(outcome(got))

        await claim("r", "wf", "a", "d1")  # created, with its digest
        await claim("r", "wf", "a", "d1")  # a resend: granted, not created
        await claim("r", "other", "a", "d1")  # its own owner, another workflow
        await claim("r", "wf", "a", "d2")  # its own owner, other inputs
        await claim("r", "wf", "a", None)  # no digest: not compared
        await store.finish_run("r", "a", "failed", error="RuntimeError: x")
        await claim("r", "wf", "b", "d2")
        await claim("r", "other", "b", None)
        await claim("r", "wf", "b", "d1")  # a recovery-free takeover of a failed run
        await store.finish_run("r", "b", "completed", result=3, has_result=True)
        await claim("r", "wf", "c", "d1")  # completed with a result: refused as before
        await claim("r", "other", "c", "d1")
        await claim("old", "wf", "a", None)  # a record without digest
        await claim("old", "other", "a", "d9")  # another workflow: refused all the same
        await claim("old", "wf", "b", "d9")  # a live lease of "a": refused
        await claim("old", "wf", "a", "d9")  # granted, the digest not compared ...
        await claim("old", "wf", "a", "d1")  # ... nor taken
        seen.append(plain(await store.get_run("r")))
        seen.append(plain(await store.get_run("old")))
        return seen

    seen = await same_on_both(scenario, harness.store)
    assert [(acquired, created) for acquired, created, _ in seen[:-2]] == [
        (True, True), (True, False), (False, False), (False, False), (True, False),
        (False, False), (False, False), (True, False), (False, False), (False, False),
        (True, True), (False, False), (False, False), (True, False), (True, False),
    ]  # fmt: skip
    assert (seen[-2].input_digest, seen[-1].input_digest) == ("d1", None)
