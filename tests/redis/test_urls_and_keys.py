"""URLs, entry points, key layout and Cluster hash tags: no server needed."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

import durable
from durable.plugins import resolve_store
from durable_redis import RedisStore
from durable_redis.keys import KeyLayout, hash_tag
from durable_redis.urls import mask_url, split_url


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://cache.example:6380/2", "unix:///tmp/redis.sock?db=3"],
)
def test_every_redis_scheme_selects_the_redis_store(url: str) -> None:
    store = resolve_store(url)
    assert isinstance(store, RedisStore)
    assert store.url == url


def test_lazy_export_from_durable() -> None:
    assert durable.RedisStore is RedisStore
    from durable import redis_store  # the seed's import path

    assert redis_store.RedisStore is RedisStore


def test_url_options_ttl_and_prefix() -> None:
    store = resolve_store("redis://localhost:6379/1?ttl=3600&prefix=shop&socket_timeout=3")
    assert isinstance(store, RedisStore)
    assert (store.ttl, store.keys.prefix) == (3600.0, "shop")
    assert store.url == "redis://localhost:6379/1?socket_timeout=3"  # the rest is redis-py's
    for never in ("0", "none", "never"):
        assert split_url(f"redis://h/0?ttl={never}").ttl is None
    assert split_url("redis://h/0").ttl == 86400.0
    assert split_url("redis://h/0").prefix == "durable"
    with pytest.raises(ValueError, match="ttl must be seconds"):
        split_url("redis://:hunter2@h/0?ttl=soon")
    with pytest.raises(ValueError, match="ttl must be seconds") as info:
        split_url("redis://:hunter2@h/0?ttl=soon")
    assert "hunter2" not in str(info.value)


def test_constructor_takes_options_as_arguments_only() -> None:
    with pytest.raises(ValueError, match="pass ttl= and prefix= as arguments"):
        RedisStore("redis://localhost/0?ttl=5")
    assert RedisStore(ttl=0).ttl is None
    assert RedisStore(ttl=None).ttl is None
    with pytest.raises(ValueError, match="ttl must be positive"):
        RedisStore(ttl=-1)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://app:hunter2@host/0", "redis://app:***@host/0"),
        ("rediss://hunter2@host/0", "rediss://***@host/0"),
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "hunter2" not in repr(RedisStore.from_url(url))


def test_a_run_key_carries_the_run_id_as_its_hash_tag() -> None:
    layout = KeyLayout("durable")
    odd = ["order-42", "{tag}:x", "}", "{", "", "a}b{c", "%7B", "заказ ✓", "x" * 500]
    for run_id in odd:
        key = layout.run_key(run_id)
        tag = key[key.index("{") + 1 : key.index("}")]
        assert tag, f"an empty hash tag for {run_id!r} would hash the whole key"
        assert tag == hash_tag(run_id)
        # Any key named with the same tag lands in the run's slot.
        assert key_slot(key.encode()) == key_slot(f"other:{{{tag}}}:x".encode())
    # Escaping is one-to-one: distinct run ids never share keys.
    assert len({hash_tag(run_id) for run_id in odd}) == len(odd)
    assert hash_tag("%") != hash_tag("")


def test_prefix_without_braces() -> None:
    for bad in ("", "a{b}", "}"):
        with pytest.raises(ValueError, match="prefix"):
            KeyLayout(bad)
    assert KeyLayout("app:v1").index == "app:v1:runs"
