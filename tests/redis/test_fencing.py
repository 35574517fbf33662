"""Fenced writes: an owner that lost its run writes nothing (issue #14).

A checkpoint or an attempt given ``owner=`` is written only while the run is
``running`` under that owner; the check and the write are one script, one round trip.
Each test runs on fakeredis and on the real server (``make_redis_store``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable import LeaseLostError, Workflow
from durable_redis import RedisStore

from .conftest import StoreFactory


async def lose_run_to_b(store: RedisStore, *, expire: bool) -> None:
    """``a`` claims run ``r`` and checkpoints; ``b`` takes it over, and writes its own
    step ``s`` and attempts: after ``a``'s lease ran out, or by ``takeover_from``."""
    await store.claim_run("r", "wf", {"n": 1}, owner="a", lease_seconds=0.05 if expire else 30)
    assert await store.checkpoint_step("r", "first", "a's", owner="a") is True
    if expire:
        await asyncio.sleep(0.15)
        claim = await store.claim_run("r", "wf", {"n": 1}, owner="b", lease_seconds=30)
    else:
        claim = await store.claim_run(
            "r", "wf", {"n": 1}, owner="b", lease_seconds=30, takeover_from="a"
        )
    assert claim.acquired
    assert claim.record.owner == "b"
    assert await store.checkpoint_step("r", "s", "b's", 1, owner="b") is True
    await store.record_attempt("r", "retried", 2, "E: b's", owner="b")


@pytest.mark.parametrize("expire", [True, False], ids=["lease-expired", "takeover_from"])
async def test_a_checkpoint_of_the_old_owner_is_refused_and_writes_nothing(
    make_redis_store: StoreFactory, expire: bool
) -> None:
    store = make_redis_store()
    await lose_run_to_b(store, expire=expire)
    with pytest.raises(LeaseLostError) as info:
        await store.checkpoint_step("r", "s", "a's", 1, owner="a")
    message = str(info.value)
    assert "run 'r'" in message
    assert "step 's'" in message
    assert "not recorded" in message
    assert "another owner holds the run now (b)" in message
    with pytest.raises(LeaseLostError):
        await store.checkpoint_step("r", "new", "a's", 1, owner="a")
    # Another store object (another process) sees b's writes only.
    other = make_redis_store()
    assert await other.load_steps("r") == {"first": "a's", "s": "b's"}
    record = await other.get_run("r")
    assert record is not None
    assert (record.status, record.owner) == ("running", "b")
    await store.close()
    await other.close()


@pytest.mark.parametrize("expire", [True, False], ids=["lease-expired", "takeover_from"])
async def test_an_attempt_of_the_old_owner_is_refused_and_writes_nothing(
    make_redis_store: StoreFactory, expire: bool
) -> None:
    store = make_redis_store()
    await lose_run_to_b(store, expire=expire)
    for attempt in (3, 0):  # a count, and the reset of a final failure
        with pytest.raises(LeaseLostError) as info:
            await store.record_attempt("r", "retried", attempt, "E: a's", owner="a")
        message = str(info.value)
        assert "run 'r'" in message
        assert "step 'retried'" in message
        assert "(b)" in message
    assert dict(await make_redis_store().load_attempts("r")) == {"retried": 2}
    await store.close()


async def test_the_old_owner_cannot_finish_renew_or_release_the_run(
    make_redis_store: StoreFactory,
) -> None:
    store = make_redis_store()
    await lose_run_to_b(store, expire=False)
    assert await store.finish_run("r", "a", "completed", result=1, has_result=True) is False
    assert await store.renew_lease("r", "a", 30) is False
    await store.release_run("r", "a")
    record = await store.get_run("r")
    assert record is not None
    assert (record.status, record.owner) == ("running", "b")
    assert await store.finish_run("r", "b", "completed", result=2, has_result=True) is True
    record = await store.get_run("r")
    assert record is not None
    assert (record.status, record.result) == ("completed", 2)
    # Once the run ended, even its last owner's late writes are refused.
    with pytest.raises(LeaseLostError, match="the run is completed now"):
        await store.checkpoint_step("r", "late", 1, owner="b")
    with pytest.raises(LeaseLostError, match="the run is completed now"):
        await store.record_attempt("r", "late", 1, "E", owner="b")
    assert "late" not in await store.load_steps("r")
    await store.close()


async def test_fenced_writes_need_a_record_running_under_their_owner(
    make_redis_store: StoreFactory,
) -> None:
    store = make_redis_store()
    # No record (never claimed, expired or flushed): nothing is written, no half record.
    with pytest.raises(LeaseLostError, match="its record is gone"):
        await store.checkpoint_step("ghost", "s", 1, owner="a")
    with pytest.raises(LeaseLostError, match="its record is gone"):
        await store.record_attempt("ghost", "s", 1, "E", owner="a")
    assert await store.finish_run("ghost", "a", "completed", result=1, has_result=True) is False
    assert await store.get_run("ghost") is None
    assert await store.load_steps("ghost") == {}
    assert await store.load_attempts("ghost") == {}
    # Released (or reopened): no owner holds it.
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.release_run("r", "a")
    with pytest.raises(LeaseLostError, match="no owner holds the run now"):
        await store.checkpoint_step("r", "s", 1, owner="a")
    # Claimed again, the same owner writes; a cancellation requested meanwhile is
    # still reported by the checkpoint, which is written (the run is still running).
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.request_cancel("r")
    assert await store.checkpoint_step("r", "s", 1, owner="a") is False
    assert await store.load_steps("r") == {"s": 1}
    await store.close()


async def test_without_owner_writes_stay_unconditional(make_redis_store: StoreFactory) -> None:
    store = make_redis_store()
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.finish_run("r", "a", "completed", result=1, has_result=True)
    assert await store.checkpoint_step("r", "s", 1) is True  # the seed's protocol
    await store.set_step("no-record", "s", 2)
    await store.record_attempt("no-record", "s", 2, "E")
    assert await store.load_steps("r") == {"s": 1}
    assert await store.load_steps("no-record") == {"s": 2}
    assert dict(await store.load_attempts("no-record")) == {"s": 2}
    assert await store.finish_run("r", "", "failed", error="E") is True  # owner "": always
    await store.close()


async def test_a_fenced_checkpoint_is_one_command(make_redis_store: StoreFactory) -> None:
    """The owner check is inside the checkpoint script: one EVALSHA, nothing before."""
    store = make_redis_store()
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    await store.checkpoint_step("r", "warm", 0, owner="a")  # the scripts are loaded
    await store.record_attempt("r", "warm", 1, "E", owner="a")
    client: Any = (await store._on_loop()).client  # pyright: ignore[reportPrivateUsage]
    sent: list[Any] = []
    execute = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await execute(*args, **options)

    client.execute_command = counting
    try:
        assert await store.checkpoint_step("r", "s", 1, owner="a") is True
        with pytest.raises(LeaseLostError):
            await store.checkpoint_step("r", "s", 2, owner="b")
        await store.record_attempt("r", "t", 1, "E", owner="a")
    finally:
        del client.execute_command
    assert [str(name).upper() for name in sent] == ["EVALSHA"] * 3
    assert await store.load_steps("r") == {"warm": 0, "s": 1}
    await store.close()


async def test_a_paused_owner_loses_its_step_to_the_new_owner(
    make_redis_store: StoreFactory,
) -> None:
    """Through the engine: the owner paused in a step's body past a takeover gets
    LeaseLostError from its checkpoint, and the new owner's result stays."""
    store = make_redis_store()
    assert store.fences_writes  # so the engine passes owner= to its writes
    wf = Workflow("fence", db=store)
    in_body, resume = asyncio.Event(), asyncio.Event()

    @wf.task
    async def charge() -> str:
        in_body.set()
        await resume.wait()  # paused (a SIGSTOP, a long GC ...) while b takes over
        return "a's"

    @wf.workflow(id="order")
    async def order() -> str:
        return await charge(step_id="charge")

    running = asyncio.create_task(order())
    await asyncio.wait_for(in_body.wait(), 10)
    other = make_redis_store()
    record = await other.get_run("order")
    assert record is not None
    assert record.owner is not None
    claim = await other.claim_run(
        "order", record.workflow, record.inputs, owner="b", lease_seconds=30,
        takeover_from=record.owner,
    )  # fmt: skip
    assert claim.acquired
    assert await other.checkpoint_step("order", "charge", "b's", owner="b") is True
    resume.set()
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(running, 10)
    assert await other.load_steps("order") == {"charge": "b's"}
    record = await other.get_run("order")
    assert record is not None
    assert (record.status, record.owner) == ("running", "b")
    await wf.close()
    await other.close()


async def test_an_outcome_resent_after_a_lost_reply_still_says_recorded(
    make_redis_store: StoreFactory,
) -> None:
    """The engine reads finish_run's answer of a fencing store: the same call run twice
    (redis-py's resend, or the store's) reports what the first one did."""
    store = make_redis_store()
    await store.claim_run("r", "wf", None, owner="a", lease_seconds=30)
    for _ in range(2):
        assert await store.finish_run("r", "a", "failed", error="E: x") is True
    assert await store.finish_run("r", "x", "failed", error="E: x") is False
    assert await store.finish_run("r", "a", "completed", result=1, has_result=True) is False
    record = await store.get_run("r")
    assert record is not None
    assert (record.status, record.error) == ("failed", "E: x")
    # Reopened and claimed by another owner: the old owner's outcome is refused again.
    await store.reopen_run("r")
    assert (await store.claim_run("r", "wf", None, owner="b", lease_seconds=30)).acquired
    assert await store.finish_run("r", "a", "failed", error="E: x") is False
    assert await store.finish_run("r", "b", "completed", result=2, has_result=True) is True
    assert await store.finish_run("r", "b", "completed", result=2, has_result=True) is True
    await store.close()
