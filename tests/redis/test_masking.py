"""Passwords never shown (issue #14): any character in a password, in the user info or
in ``?password=``, is masked in reprs, errors and messages; masking never raises.

``durable_redis.urls.mask_url`` is core's :func:`durable.urls.mask_url` (one rule): an
``@`` in a query secret may end a user info, so the host before it is masked too."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import durable.urls
from durable import StoreError, Workflow
from durable_redis import RedisStore
from durable_redis.urls import mask_url

from .conftest import spare_port

SPECIAL = "p#a/ss?w@rd:x&y=z%41 ;"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:p#a/ss?@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("redis://:pa@ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pa:ss@host/1", "redis://user:***@host/1"),
        ("redis://:/p?x#y@host/0?socket_timeout=3", "redis://:***@host/0?socket_timeout=3"),
        ("rediss://s#cr/t?@host:6380/2", "rediss://***@host:6380/2"),  # a password alone
        ("redis://user:@host/0", "redis://user:***@host/0"),
        # An @ in a query secret may end a user info ("6379/0?password=p" a password):
        # what lies before it is masked too.
        ("redis://host:6379/0?password=p@ss#x/y?z&db=1", "redis://host:***&db=1"),
        ("redis://host?password=p@ss", "redis://***"),
        ("redis://host?password=p%40ss", "redis://host?password=***"),  # as it should be
        ("redis://h/0?db=1&client_secret=abc&token=t@k", "redis://***"),
        (
            "redis://h/0?db=1&client_secret=abc&token=t%40k&x=1",
            "redis://h/0?db=1&client_secret=***&token=***&x=1",
        ),
        ("redis://:a?password=b@h", "redis://:***"),  # "a?password=b", or "b@h"?
        ("redis://u:pw@h/0?password=p@ss&db=1", "redis://u:***&db=1"),
        ("rediss:///s3cr3t@host/0", "rediss://***@host/0"),  # not a unix socket's path
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        ("unix:///run/a@b.sock?db=1", "unix:///run/a@b.sock?db=1"),  # no user info
        ("redis://:a&password=b@host/0", "redis://:***"),  # "b@host/0" masked as an option
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("", ""),
    ],
)
def test_passwords_with_any_character_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


#: Text holding a secret option now and then (":a?password=b@host"): read as the URL's
#: query, it may leave a piece of a password in the user info before it.
tricky_text = st.one_of(
    st.text(),
    st.tuples(
        st.text(max_size=4),
        st.sampled_from(["?password=", "#token=", "&secret=", ";pwd=", "?x=1&Password="]),
        st.text(max_size=4),
    ).map("".join),
)


def test_mask_url_is_cores() -> None:
    assert mask_url is durable.urls.mask_url


@given(tricky_text.filter(bool))
def test_any_password_in_the_user_info_is_masked(password: str) -> None:
    # A password holding a secret option masks the rest of the URL too (the option's
    # value would run past the "@"): more is hidden, never a piece of it.
    assert mask_url(f"redis://app:{password}@cache.internal:6380/2") in (
        "redis://app:***@cache.internal:6380/2",
        "redis://app:***",
    )
    if ":" not in password:  # no ":": it may be a password alone, masked whole
        assert mask_url(f"rediss://{password}@cache/0") in ("rediss://***@cache/0", "rediss://***")


@given(st.text().filter(lambda text: "&" not in text))
def test_any_password_option_is_masked(password: str) -> None:
    url = f"redis://cache.internal:6379/0?password={password}&db=1"
    masked = mask_url(url)
    if "@" not in password:
        assert masked == "redis://cache.internal:6379/0?password=***&db=1"
    else:  # its "@" may end a user info: the host before it is masked too
        assert masked == "redis://cache.internal:***&db=1"


@given(tricky_text, st.text().filter(lambda text: "&" not in text))
def test_a_password_and_a_password_option_are_both_masked(password: str, option: str) -> None:
    # Whichever "@" ends the user info: everything shown is of neither secret.
    url = f"redis://app:{password}@cache:6380/2?password={option}&db=1"
    assert mask_url(url) in (
        "redis://app:***@cache:6380/2?password=***&db=1",
        "redis://app:***&db=1",
    )


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize("value", [None, 42, b"redis://:pw@h", Unprintable()])
def test_masking_never_raises(value: Any) -> None:
    assert isinstance(mask_url(value), str)
    assert "pw" not in mask_url(value)


def test_a_url_redis_py_cannot_parse_is_refused_with_the_password_masked() -> None:
    """redis-py's own error would quote a piece of the password (a port, a db)."""
    for url in (f"redis://:{SPECIAL}@host:6379/0", "redis://app:12/34@host/0"):
        with pytest.raises(ValueError, match="percent-encoded") as info:
            RedisStore(url)
        message = str(info.value)
        assert "***" in message
        for piece in ("a/ss", "w@rd", "34", "12"):
            assert piece not in message
        # No chained error of redis-py's in the traceback.
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
        with pytest.raises(ValueError, match="percent-encoded"):
            Workflow("masked", db=url)


def test_repr_and_errors_show_no_password() -> None:
    from urllib.parse import quote

    encoded = quote(SPECIAL, safe="")
    url = f"redis://app:{encoded}@127.0.0.1:{spare_port()}/0"
    store = RedisStore(url, retry_seconds=0.2)
    assert encoded not in repr(store)
    assert "app:***@" in repr(store)
    wf = Workflow("masked", db=store)
    assert encoded not in repr(wf)


async def test_an_unreachable_server_error_shows_no_password() -> None:
    from urllib.parse import quote

    encoded = quote(SPECIAL, safe="")
    store = RedisStore(f"redis://app:{encoded}@127.0.0.1:{spare_port()}/0", retry_seconds=0.2)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert encoded not in str(info.value)
    assert "redis://app:***@127.0.0.1:" in str(info.value)
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://secret/x=@host:6379/0",  # a base64 password: "/" then "=" before the "@"
        "redis://:6379/x=y@host/0",
    ],
)
def test_an_equals_sign_before_any_query_does_not_excuse_a_misread_password(url: str) -> None:
    # urllib reads "secret" as the host: the store would connect to the wrong server,
    # without a password and without an error.
    from durable_redis.urls import misread_user_info

    assert misread_user_info(url)
    assert not misread_user_info("redis://host/0?client_name=me@there")  # a query value
