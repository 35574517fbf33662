"""Passwords never shown (issue #14): any character in a password, in the user info or
in ``?password=``, is masked in reprs, errors and messages; masking never raises."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
        ("redis://host:6379/0?password=p@ss#x/y?z&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://host?password=p@ss", "redis://host?password=***"),
        (
            "redis://h/0?db=1&client_secret=abc&token=t@k",
            "redis://h/0?db=1&client_secret=***&token=***",
        ),
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        ("unix:///run/a@b.sock?db=1", "unix:///run/a@b.sock?db=1"),  # no user info
        ("redis://:a&password=b@host/0", "redis://:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("", ""),
    ],
)
def test_passwords_with_any_character_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@given(st.text(min_size=1))
def test_any_password_in_the_user_info_is_masked(password: str) -> None:
    from durable_redis.urls import _OPTION, _is_secret  # pyright: ignore[reportPrivateUsage]

    # The one ambiguity left open: a password holding a secret option itself
    # (":a?password=b@host"), read as the URL's query.
    assume(not any(_is_secret(m.group(1)) for m in _OPTION.finditer(password)))
    assert mask_url(f"redis://app:{password}@cache.internal:6380/2") == (
        "redis://app:***@cache.internal:6380/2"
    )
    if ":" not in password:  # no ":": it may be a password alone, masked whole
        assert mask_url(f"rediss://{password}@cache/0") == "rediss://***@cache/0"


@given(st.text().filter(lambda text: "&" not in text))
def test_any_password_option_is_masked(password: str) -> None:
    url = f"redis://cache.internal:6379/0?password={password}&db=1"
    assert mask_url(url) == "redis://cache.internal:6379/0?password=***&db=1"


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
