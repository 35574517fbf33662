"""JSON text for the store's columns: ``json.dumps``'s output, without its set-up per call.

``json.dumps(value)`` builds a C encoder on every call: ~2 of the ~2.5 µs it takes for a
step's small result here, paid on every checkpoint, claim and outcome. The encoder built
once below writes the same text (same separators, ASCII escapes, ``NaN`` allowed). It
finds reference cycles by recursion depth (``RecursionError``) instead of by a set of
ids (``ValueError``); the engine's values come from ``durable.serialization.to_json``,
which has none, and either way nothing is written.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any


def _no_json_form(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # None without CPython's _json
    if make is None:
        return None
    built: Callable[[Any, int], list[str]] = make(
        None,  # no id set: see above
        _no_json_form,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
    return built


_ENCODE = _c_encoder()


def dumps(value: Any) -> str:
    """``json.dumps(value)``, the same text."""
    if _ENCODE is None or isinstance(value, str):  # a str alone: as JSONEncoder.encode does
        return json.dumps(value)
    return "".join(_ENCODE(value, 0))


# The C scanner json.loads ends in, without the Python around it (~2 of the ~2.1 µs it
# takes for a run's inputs here). Text it does not take whole (white space, a BOM, extra
# data, no value) goes to json.loads, which decodes it or raises as it always did.
def _c_scanner() -> Callable[[str, int], tuple[Any, int]]:
    scan: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 - untyped in typeshed
    return scan


_scan_once = _c_scanner()


def loads(text: str) -> Any:
    """``json.loads(text)``, the same value (or error)."""
    if type(text) is not str:  # bytes, say: json.loads decodes them
        return json.loads(text)
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value
