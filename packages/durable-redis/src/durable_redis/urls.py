"""``db=`` URLs of the Redis store: our own options, and masking passwords for messages."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

#: Query options read by the store; every other option goes to redis-py unchanged.
STORE_OPTIONS = ("ttl", "prefix")

#: A day: long enough for any run that is still alive to renew its keys many times.
DEFAULT_TTL = 86400.0


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A ``db=`` URL split into what redis-py connects to and the store's own options."""

    connect_url: str
    ttl: float | None = DEFAULT_TTL
    prefix: str = "durable"


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
    if raw_ttl.lower() in ("", "0", "none", "never"):
        return StoreUrl(connect_url, None, prefix)
    try:
        ttl = float(raw_ttl)
    except ValueError:
        raise ValueError(
            f"ttl must be seconds or 'none' in the Redis URL {mask_url(url)!r}, not {raw_ttl!r}"
        ) from None
    return StoreUrl(connect_url, ttl, prefix)


def store_options_in(url: str) -> list[str]:
    """The store's own options present in ``url``'s query."""
    return [key for key, _ in parse_qsl(urlsplit(url).query) if key in STORE_OPTIONS]


def mask_url(url: str) -> str:
    """``url`` with any password (in the netloc or a ``password=`` option) shown as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        # A lone user-info part may be a password written the old way: hide it too.
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            "password=***" if k == "password" else urlencode([(k, v)]) for k, v in pairs
        )
    return _join(parts._replace(netloc=netloc, query=query))


def _join(parts: SplitResult) -> str:
    # Not urlunsplit: it drops the "//" of unix:///path URLs, whose netloc is empty.
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"
