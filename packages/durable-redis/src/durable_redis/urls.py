"""``db=`` URLs of the Redis store: our own options, and masking passwords for messages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

#: Query options read by the store; every other option goes to redis-py unchanged.
STORE_OPTIONS = ("ttl", "prefix")

#: A day: long enough for any run that is still alive to renew its keys many times.
DEFAULT_TTL = 86400.0

#: ``?ttl=`` values meaning "no expiry".
_NO_EXPIRY = ("", "0", "none", "never")

#: What a masked secret is shown as.
MASK = "***"


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
    if not math.isfinite(ttl) or ttl < 0:
        raise ValueError(
            f"{where}: ttl must be positive finite seconds, or 'none' (no expiry), not {raw_ttl!r}"
        )
    return StoreUrl(connect_url, checked_ttl(ttl, where), prefix)


def store_options_in(url: str) -> list[str]:
    """The store's own options present in ``url``'s query."""
    return [key for key, _ in parse_qsl(urlsplit(url).query) if key in STORE_OPTIONS]


# -- masking -------------------------------------------------------------------------------

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")
#: An option's start: a separator, its name and ``=``.
_OPTION = re.compile(r"[?#&;]([^=?#&;]*)=")
#: Options whose values are secrets (the name ends with one of these).
_SECRET_NAMES = ("password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key")


def mask_url(url: str) -> str:
    """``url`` with its password and secret options shown as ``***``; never raises.

    Written for URLs whose passwords hold any character, unescaped ``@ : / ? # &``
    included (redis-py cannot use such a URL, and says so in an error that must not
    show it):

    - user info: everything between ``//`` and the *last* ``@`` (``unix:///a@b.sock``
      has none: a path follows the ``//``). Everything after its
      first ``:`` is masked; without a ``:`` it may be a password written alone
      (``redis://secret@host``), masked whole;
    - the value of each option whose name ends in ``password``, ``pass``, ``pwd``,
      ``secret``, ``token`` or ``api_key`` (``?password=...``), up to the next ``&``.

    Both rules apply to the whole URL and their masks are merged, so an ambiguous URL
    (an ``@`` in a query value) shows less rather than a secret; only an ``@`` in the
    value of a secret option after the netloc (``/0?password=p@ss``) ends no user info.
    """
    try:
        return _mask(url if isinstance(url, str) else str(url))  # pyright: ignore[reportUnnecessaryIsInstance]
    except Exception:  # an object whose str() fails: show nothing of it
        return MASK


class _Layout:
    """Where the parts of a URL are, as the masking rules read them."""

    __slots__ = ("at", "netloc_end", "options", "start")

    def __init__(self, url: str) -> None:
        scheme = _SCHEME.match(url)
        #: Where the authority starts (after "scheme://"; 0 without a scheme).
        self.start = start = scheme.end() if scheme else 0
        # Where urllib (so redis-py) ends the netloc: a valid URL's options come after it.
        ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
        self.netloc_end = netloc_end = min(ends, default=len(url))
        #: The secret options: (option start, value start, value end).
        self.options: list[tuple[int, int, int]] = []
        for option in _OPTION.finditer(url, start):
            if _is_secret(option.group(1)):
                end = url.find("&", option.end())
                self.options.append((option.start(), option.end(), len(url) if end < 0 else end))
        #: The "@" ending the user info, or -1. A unix:/// URL has a path, no authority.
        self.at = at = -1
        if not (scheme and scheme.group().strip().lower() == "unix://" and url[start:][:1] == "/"):
            # The last "@" ends the user info, unless it is in the value of a secret
            # option of the query (?password=p@ss), which is masked as an option.
            at = url.rfind("@", start)
            while at >= 0 and any(o >= netloc_end and v <= at < e for o, v, e in self.options):
                at = url.rfind("@", start, at)
            self.at = at


def misread_user_info(url: str) -> bool:
    """Whether urllib (so redis-py) would read part of ``url``'s password as its host,
    port or path: the user info holds a raw ``/``, ``?`` or ``#``. An ``@`` in a query
    value (``?client_name=me@host``) is not taken for one: the text between holds ``=``.
    """
    try:
        layout = _Layout(url)
    except Exception:
        return False
    return layout.at > layout.netloc_end and "=" not in url[layout.netloc_end : layout.at]


def _mask(url: str) -> str:
    layout = _Layout(url)
    start, at = layout.start, layout.at
    hidden: list[tuple[int, int]] = []
    if at >= 0:
        colon = url.find(":", start, at)
        hidden.append((start if colon < 0 else colon + 1, at))
    # An option inside the user info (a password holding "&password=") is its text.
    hidden += [(v, e) for o, v, e in layout.options if o > at]
    if not hidden:
        return url
    merged: list[list[int]] = []
    for begin, end in sorted(hidden):
        if merged and begin <= merged[-1][1]:  # overlaps or touches the one before
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    shown: list[str] = []
    position = 0
    for begin, end in merged:
        shown += (url[position:begin], MASK)
        position = end
    shown.append(url[position:])
    return "".join(shown)


def _is_secret(name: str) -> bool:
    return unquote(name).strip().lower().replace("-", "_").endswith(_SECRET_NAMES)


def _join(parts: SplitResult) -> str:
    # Not urlunsplit: it drops the "//" of unix:///path URLs, whose netloc is empty.
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"
