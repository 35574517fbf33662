"""The ttl is checked (issue #14): a positive finite number of seconds or no expiry,
and never shorter than the lease of a workflow using the store.

A ttl shorter than the lease would let a run's keys expire while it executes; a late
write would then rebuild a record without its inputs. The store learns the lease at
the claim, and refuses it there, before anything is written.
"""

from __future__ import annotations

import math
from typing import Any

import fakeredis
import pytest

from durable import Workflow
from durable.plugins import resolve_store
from durable_redis import RedisStore
from durable_redis.urls import split_url

from .conftest import REDIS_URL, StoreFactory


@pytest.mark.parametrize(
    "ttl", [math.nan, math.inf, -math.inf, -1, -0.5, True, "3600", [60]], ids=repr
)
def test_the_constructor_refuses_a_ttl_that_is_not_seconds(ttl: Any) -> None:
    with pytest.raises(ValueError, match=r"ttl must be positive"):
        RedisStore(ttl=ttl)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "-5", "1e999", "soon"])
def test_the_url_option_refuses_a_ttl_that_is_not_seconds(raw: str) -> None:
    url = f"redis://:hunter2@localhost:6379/0?ttl={raw}"
    for parse in (split_url, resolve_store, RedisStore.from_url):
        with pytest.raises(ValueError, match=r"ttl must be") as info:
            parse(url)
        assert "hunter2" not in str(info.value)
        assert "redis://:***@localhost:6379/0" in str(info.value)


def test_accepted_ttls() -> None:
    from durable_redis.urls import ttl_milliseconds

    assert RedisStore(ttl=None).ttl is None
    assert RedisStore(ttl=0).ttl is None
    assert RedisStore(ttl=3600).ttl == 3600.0
    assert RedisStore(ttl=0.25).ttl == 0.25
    for never in ("none", "None", "never", "0", ""):
        assert split_url(f"redis://h/0?ttl={never}").ttl is None
    assert split_url("redis://h/0?ttl=1.5").ttl == 1.5
    # Below a millisecond is still an expiry, never "no expiry" (PEXPIRE 0 would be).
    assert ttl_milliseconds(0.0001) == 1
    assert ttl_milliseconds(None) == 0
    assert ttl_milliseconds(2.5) == 2500


async def test_a_lease_longer_than_the_ttl_is_refused_before_anything_is_written() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    store = RedisStore(client=client, ttl=10)
    with pytest.raises(ValueError, match="shorter than the lease") as info:
        await store.claim_run("r", "wf", {"n": 1}, owner="a", lease_seconds=30)
    message = str(info.value)
    assert "ttl=10" in message
    assert "lease_seconds=30" in message
    assert "must be at least lease_seconds" in message
    assert await client.keys("*") == []  # no record, no index entry
    # A lease up to the ttl is fine; without expiry, any lease is.
    assert (await store.claim_run("r", "wf", None, owner="a", lease_seconds=10)).acquired
    forever = RedisStore(client=client, ttl=None)
    assert (await forever.claim_run("s", "wf", None, owner="a", lease_seconds=1e6)).acquired


def one_step_workflow(store: RedisStore, ran: list[int], **options: Any) -> tuple[Workflow, Any]:
    wf = Workflow("short", db=store, **options)

    @wf.task
    async def step() -> int:
        ran.append(1)
        return 1

    @wf.workflow(id="short-run")
    async def flow() -> int:
        return await step()

    return wf, flow


async def test_a_workflow_whose_lease_outlives_the_ttl_fails_clearly(
    make_redis_store: StoreFactory,
) -> None:
    ran: list[int] = []
    store = make_redis_store(ttl=5)
    wf, flow = one_step_workflow(store, ran)  # lease_seconds=30 by default
    with pytest.raises(ValueError, match=r"ttl=5 s, shorter than the lease .*lease_seconds=30"):
        await flow()
    assert ran == []
    assert await store.get_run("short-run") is None
    assert await store.list_runs() == []
    await wf.close()

    wf, flow = one_step_workflow(make_redis_store(ttl=5), ran, lease_seconds=5)
    assert await flow() == 1
    assert ran == [1]
    await wf.close()


async def test_the_ttl_of_a_db_url_is_checked_against_the_lease(prefix: str) -> None:
    wf = Workflow("url", db=f"{REDIS_URL}?ttl=2&prefix={prefix}", lease_seconds=3)

    @wf.workflow(id="url-run")
    async def flow() -> int:
        return 1

    with pytest.raises(ValueError, match=r"ttl=2 s.*lease_seconds=3"):
        await flow()
    assert await wf.get_run("url-run") is None
    await wf.close()
