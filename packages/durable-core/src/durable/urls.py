"""Masking the secrets in store URLs before they reach a message, a log line or a repr.

:func:`mask_url` is the one rule every package of durable uses. Two kinds of span are
shown as ``***``:

- the password of the user info. Everything between the scheme's ``//`` and the
  *last* ``@`` is user info, so a password may hold ``@ : / ? # %``, spaces or any
  other character; all of it after its first ``:`` is masked. A user info without
  ``:`` may be a password written alone (``redis://secret@host``) and is masked
  whole, and so is one whose user part holds an ``@`` (it may be such a password,
  followed by an ``@`` of the path or query). Only a scheme naming a file (``file``,
  ``sqlite``, ``sqlite3``, ``unix``) has no user info after ``///``
  (``sqlite:///a@b.db``: there the ``@`` belongs to the path); ``redis:///pw@host``
  is masked. Any text before ``://`` is a scheme (``my_db://``, ``b'redis://``).
- the value of each option whose name ends in ``password``, ``passwd``, ``pass``,
  ``pwd``, ``secret``, ``token``, ``apikey`` or ``api_key`` (``?password=...``,
  ``#token=...``, ``&client_secret=...``), up to the next ``&``, for any scheme and
  for a bare path too.

The two rules are applied to the whole URL and their spans merged: an ambiguous URL
shows less, never a piece of a secret. An ``@`` in a query value still ends the user
info (``redis://:a?password=b@h`` may be the password ``a?password=b``) while the
value is masked as an option (it may be the secret ``b@h``): both readings are
hidden, and so is what lies between (the host, when a query secret holds an ``@``).
Masking is idempotent and never raises: whatever it is given, it returns a string.

>>> mask_url("redis://app:p#a/ss?@cache:6379/0")
'redis://app:***@cache:6379/0'
>>> mask_url("redis://host/0?password=p@ss")
'redis://***'
>>> mask_url("sqlite:///jobs.db?password=hunter2&durability=full")
'sqlite:///jobs.db?password=***&durability=full'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

#: What a masked secret is shown as.
MASK = "***"

#: A URL's scheme and ``://``: any name without a space or ``: / ? # @`` (a scheme
#: no store has, ``my_db://``, or the ``b'redis://`` of a bytes repr, is masked too).
_SCHEME = re.compile(r"\s*([^\s:/?#@]*)://")
#: Schemes naming a file: what follows their ``///`` is a path, not a user info.
_FILE_SCHEMES = frozenset({"file", "sqlite", "sqlite3", "unix"})
#: A URL inside a longer text (a repr, an error message): up to a space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*")
#: An option's start: a separator, its name and ``=``.
_OPTION = re.compile(r"[?#&;]([^=?#&;]*)=")
_SECRET_NAMES = ("password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key")


def mask_url(url: str) -> str:
    """``url`` with every password and secret option shown as ``***``; never raises."""
    try:
        text = url if isinstance(url, str) else str(url)  # pyright: ignore[reportUnnecessaryIsInstance]
        return _mask(text, [])
    except Exception:  # a str subclass or an object whose str() fails: show nothing
        return MASK


def url_secrets(url: str) -> list[str]:
    """The pieces of ``url`` that :func:`mask_url` hides (passwords, secret options),
    as written in it; never raises."""
    found: list[str] = []
    try:
        _mask(url, found)
    except Exception:
        return []
    return [secret for secret in found if secret]


def _mask(url: str, secrets: list[str]) -> str:
    """Mask both rules' spans of ``url`` (merged: an ambiguous URL shows less)."""
    options = _option_spans(url)
    spans = [*_userinfo_spans(url, options), *options]
    if not spans:
        return url
    secrets.extend(url[start:end] for start, end in spans)
    parts: list[str] = []
    shown_up_to = 0
    for start, end in _merged(spans):
        parts.append(url[shown_up_to:start] + MASK)
        shown_up_to = end
    parts.append(url[shown_up_to:])
    return "".join(parts)


def _userinfo_spans(url: str, options: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The password of the user info: from its first ``:`` to the last ``@`` (even one
    in a query value: the value is masked as an option as well), or all of it when it
    has no ``:``, when its user part holds an ``@`` (which may be a lone password
    followed by an ``@`` of the path or query) or when that ``:`` is in the value of a
    secret option (masked, it would not split the masked URL the same way)."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return []
    start = scheme.end()
    at = url.rfind("@", start)
    if at < 0 or (url.startswith("/", start) and _names_a_file(scheme.group(1))):
        return []  # no user info, or a path ("sqlite:///a@b.db")
    colon = url.find(":", start, at)
    if colon < 0 or "@" in url[start:colon] or any(v <= colon < e for v, e in options):
        return [(start, at)]
    return [(colon + 1, at)]


def _names_a_file(scheme: str) -> bool:
    return not _FILE_SCHEMES.isdisjoint(scheme.lower().split("+"))


def _option_spans(url: str) -> list[tuple[int, int]]:
    """The values of secret options (``?password=``, ``&token=``, ``#secret=`` ...),
    each up to the next ``&``: a raw ``? # ; @`` in a value is masked with it."""
    spans: list[tuple[int, int]] = []
    for option in _OPTION.finditer(url):
        if _is_secret(option.group(1)):
            end = url.find("&", option.end())
            spans.append((option.end(), len(url) if end < 0 else end))
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans as one (an empty span still shows a mask)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _is_secret(name: str) -> bool:
    return unquote(name).strip().lower().replace("-", "_").endswith(_SECRET_NAMES)


def _spellings(secret: str) -> set[str]:
    """``secret`` as written, decoded and percent-encoded: how a store may repeat it."""
    decoded = unquote(secret)
    return {
        secret,
        decoded,
        quote(decoded, safe=""),
        quote(decoded, safe="/:@"),
        repr(secret)[1:-1],
    }


def mask_urls_in(text: str, *urls: object) -> str:
    """``text`` with each of ``urls`` (the strings among them) and every other
    ``scheme://...`` in it masked; never raises.

    Give the URLs that may be in the text (``db=`` as given, ``store.url``): a URL
    holding spaces or quotes is found whole only that way, and also where it is
    quoted by ``repr``. Their secrets are then masked where they still show, which
    they do where a store rewrote its URL (``@`` as ``%40``): those of 3 characters
    or more anywhere, shorter ones inside a ``scheme://...`` that showed no secret.
    """
    try:
        known = [url for url in urls if isinstance(url, str) and url]
        for url in known:
            masked = mask_url(url)
            text = text.replace(url, masked)
            quoted, masked_quoted = repr(url)[1:-1], repr(masked)[1:-1]
            if quoted != url:
                text = text.replace(quoted, masked_quoted)
        if "://" in text:
            short = _by_length(_secrets_of(known, 1) - _secrets_of(known, 3))
            text = _URL_IN_TEXT.sub(lambda m: _mask_token(m.group(), short), text)
        for secret in _by_length(_secrets_of(known, 3)):
            text = text.replace(secret, MASK)
        return text
    except Exception:
        return MASK


def _mask_token(token: str, short_secrets: list[str]) -> str:
    masked = mask_url(token)
    if masked != token:  # its user info or options were found: masked by the rule
        return masked
    for secret in short_secrets:  # a rewritten URL: hide what is left of a secret
        masked = masked.replace(secret, MASK)
    return masked


def _by_length(secrets: set[str]) -> list[str]:
    """Longest first, so that a secret is masked whole before a piece of it."""
    return sorted(secrets, key=lambda secret: (-len(secret), secret))


def shows_a_secret(text: str, *urls: object) -> bool:
    """Whether ``text`` holds a secret of one of ``urls``, however short, in any of
    the spellings a store may repeat it in; never raises (True when unsure)."""
    try:
        known = [url for url in urls if isinstance(url, str) and url]
        return any(secret in text for secret in _secrets_of(known, 1))
    except Exception:
        return True


def _secrets_of(urls: list[str], min_length: int) -> set[str]:
    return {
        spelling
        for url in urls
        for secret in url_secrets(url)
        for spelling in _spellings(secret)
        if len(spelling) >= min_length and spelling != MASK
    }


def mask_exception(exc: BaseException, *urls: object) -> None:
    """Mask the URLs in the messages (``args`` and notes) of ``exc`` and of the
    exceptions it was raised from, in place, so that a traceback shows no password.
    Never raises."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _mask_one(current, urls)
        current = current.__cause__ or current.__context__


def _mask_one(exc: BaseException, urls: tuple[object, ...]) -> None:
    try:
        args = tuple(mask_urls_in(a, *urls) if isinstance(a, str) else a for a in exc.args)
        if args != exc.args:
            exc.args = args
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [
                mask_urls_in(note, *urls) if isinstance(note, str) else note
                for note in notes  # pyright: ignore[reportUnknownVariableType]
            ]
    except Exception:  # an exception whose args cannot be set: leave it
        return


def masked_store_repr(store: object, db_text: str | None = None) -> str:
    """``repr(store)`` with its URL (``store.url``, or ``db_text``: the ``db=`` it was
    made from) masked; only the masked URL when the store wrote its URL in a way that
    still shows a piece of a password."""
    url: object = getattr(store, "url", None)
    shown = mask_urls_in(repr(store), db_text, url)
    if not shows_a_secret(shown, db_text, url):
        return shown
    given = db_text if db_text is not None else url
    where = mask_url(given) if isinstance(given, str) else "..."
    return f"{type(store).__name__}({where!r})"


class UrlMaskingFilter(logging.Filter):
    """A logging filter that masks the URLs in a record's message (and traceback).

    durable's own logger (``"durable"``) has one; add one to a handler to cover the
    records of every logger it handles.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            masked = mask_urls_in(message)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                text = logging.Formatter().formatException(record.exc_info)
                if (masked_text := mask_urls_in(text)) != text:
                    record.exc_text = masked_text
        except Exception:  # never lose a record over masking it
            pass
        return True


__all__ = [
    "MASK",
    "UrlMaskingFilter",
    "mask_exception",
    "mask_url",
    "mask_urls_in",
    "shows_a_secret",
    "url_secrets",
]
