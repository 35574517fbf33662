"""``db=`` URLs of the Redis store: our own options, and the URLs redis-py would misread.

Passwords are masked by :func:`durable.urls.mask_url`, the one rule of every package,
re-exported here under the same name."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from durable.urls import MASK as MASK
from durable.urls import mask_url as mask_url

#: Query options read by the store; every other option goes to redis-py unchanged.
STORE_OPTIONS = ("ttl", "prefix")

#: A day: long enough for any run that is still alive to renew its keys many times.
DEFAULT_TTL = 86400.0

#: ``?ttl=`` values meaning "no expiry".
_NO_EXPIRY = ("", "0", "none", "never")


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A ``db=`` URL split into what redis-py connects to and the store's own options."""

    connect_url: str
    ttl: float | None = DEFAULT_TTL
    prefix: str = "durable"


def checked_ttl(ttl: object, where: str = "RedisStore(ttl=...)") -> float | None:
    """``ttl`` as seconds, or None for no expiry (``None`` or ``0``).

    Anything else than a positive finite number raises a ValueError naming ``where``.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(
            f"{where}: ttl must be positive seconds, or None (or 0) for no expiry, not {ttl!r}"
        )
    seconds = float(ttl)
    if seconds == 0:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"{where}: ttl must be positive finite seconds, or None (or 0) for no expiry, "
            f"not {ttl!r}"
        )
    return seconds


def check_lease(ttl: float | None, lease_seconds: float, where: str) -> None:
    """Refuse a lease longer than the ttl, before anything is written: the run's keys
    could expire while it executes (renewals come every third of the lease), and a
    late write would then rebuild a record without its inputs."""
    if ttl is not None and float(lease_seconds) > ttl:
        raise ValueError(
            f"the Redis store {where} has ttl={ttl:g} s, shorter than the lease of this "
            f"workflow (lease_seconds={float(lease_seconds):g}): the ttl must be at least "
            "lease_seconds (better many times it), or a run's keys could expire while it "
            "executes. Raise ttl (RedisStore(ttl=...) or ?ttl=; none: no expiry) or lower "
            "Workflow(lease_seconds=...)"
        )


def ttl_milliseconds(ttl: float | None) -> int:
    """The TTL the scripts set (0: none); at least 1 ms for any positive ttl."""
    return 0 if ttl is None else max(1, round(ttl * 1000))


def split_url(url: str) -> StoreUrl:
    """Take ``?ttl=`` and ``?prefix=`` out of ``url`` (``ttl=0`` or ``none``: no expiry)."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in STORE_OPTIONS:
            ours[key] = value
        else:
            rest.append((key, value))
    connect_url = _join(parts._replace(query=urlencode(rest)))
    prefix = ours.get("prefix", "durable")
    raw_ttl = ours.get("ttl")
    if raw_ttl is None:
        return StoreUrl(connect_url, DEFAULT_TTL, prefix)
    if raw_ttl.strip().lower() in _NO_EXPIRY:
        return StoreUrl(connect_url, None, prefix)
    where = f"the Redis URL {mask_url(url)!r}"
    try:
        ttl = float(raw_ttl)
    except ValueError:
        raise ValueError(
            f"{where}: ttl must be seconds or 'none' (no expiry), not {raw_ttl!r}"
        ) from None
    return StoreUrl(connect_url, checked_ttl(ttl, where), prefix)


def store_options_in(url: str) -> list[str]:
    """The store's own options present in ``url``'s query."""
    return [key for key, _ in parse_qsl(urlsplit(url).query) if key in STORE_OPTIONS]


# -- URLs redis-py would misread -------------------------------------------------------------

#: ``scheme://`` at the start of a URL (masking is :func:`durable.urls.mask_url`'s).
_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")


def misread_user_info(url: str) -> bool:
    """Whether urllib (so redis-py) would read part of ``url``'s password as its host,
    port or path: the user info holds a raw ``/``, ``?`` or ``#``, so an ``@`` follows
    the end of urllib's netloc (its first ``/ ? #``). An ``@`` in a query value
    (``?client_name=me@host``, ``?password=p@ss``) is not taken for one: an ``=``
    comes before it. ``unix:///a@b.sock`` has a path, no user info."""
    try:
        scheme = _SCHEME.match(url)
        start = scheme.end() if scheme else 0
        if scheme and scheme.group().strip().lower() == "unix://" and url[start:][:1] == "/":
            return False
        ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
        if not ends:
            return False
        netloc_end = min(ends)
        at = url.find("@", netloc_end)
        if at < 0:
            return False
        # An "=" excuses the "@" only inside the query (or fragment): a password such
        # as "secret/x=" puts its "=" before any "?", and is still misread.
        query = min((i for i in (url.find(c, netloc_end, at) for c in "?#") if i >= 0), default=-1)
        return query < 0 or "=" not in url[query:at]
    except Exception:
        return False


def _join(parts: SplitResult) -> str:
    # Not urlunsplit: it drops the "//" of unix:///path URLs, whose netloc is empty.
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"
