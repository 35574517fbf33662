"""Finding a store for ``Workflow(db=...)``.

``db`` may be a :class:`~durable.store.Store`, a URL (``memory://``,
``sqlite:///jobs.db``, ``redis://host:6379/0``, any third-party scheme) or a bare file
path, which means SQLite. A scheme is looked up in this order: explicit
:func:`register_store` calls, the built-in ``memory`` store, then the entry points of
the ``durable.stores`` group, scanned once per process. ``dialect+driver`` schemes fall
back to the part before ``+``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from collections.abc import Callable
from urllib.parse import quote

from .errors import PluginConflictError, PluginLoadError, UnknownStoreError
from .memory import InMemoryStore
from .store import Store
from .urls import mask_exception

if typing.TYPE_CHECKING:
    from importlib import metadata

STORES_GROUP = "durable.stores"
INTEGRATIONS_GROUP = "durable.integrations"
DEFAULT_DB = "durable.db"

#: Schemes a distribution offers through one of its extras, as entry points with the
#: extra named (``redis = "durable_redis:RedisStore [redis]"``): the metapackage
#: python-durable declares them, so that a URL whose plugin is missing says which
#: extra to install. Core names no plugin of its own here.
OPTIONAL_STORES_GROUP = "durable.optional_stores"
#: The seed's own store, which the default ``db`` needs: its hint stays when only
#: durable-core is installed.
SEED_HINTS: dict[str, str] = {"sqlite": "python-durable  (or: durable-sqlite)"}

StoreFactory = Callable[[str], Store]

_registered: dict[str, StoreFactory] = {}
_builtin: dict[str, StoreFactory] = {"memory": InMemoryStore.from_url}
_loaded: dict[str, StoreFactory] = {}
_entry_points: dict[str, list[metadata.EntryPoint]] | None = None
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


def register_store(scheme: str, factory: type[Store] | StoreFactory) -> None:
    """Make ``scheme://...`` URLs build stores with ``factory`` (before any entry point)."""
    _registered[scheme.lower()] = _as_factory(factory)


def unregister_store(scheme: str) -> None:
    """Undo :func:`register_store`."""
    _registered.pop(scheme.lower(), None)


def resolve_store(db: str | os.PathLike[str] | Store) -> Store:
    """Turn a ``db=`` argument into a store (not yet set up)."""
    if isinstance(db, Store):
        return db
    if isinstance(db, os.PathLike):
        db = os.fspath(db)
    if not isinstance(db, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"db= takes a Store, a URL or a file path, not {type(db).__name__}")
    match = _URL.match(db)
    if match is None:
        url, factory = f"sqlite:///{quote(db)}", store_factory("sqlite")
    else:
        url, factory = db, store_factory(match["scheme"].lower())
    try:
        return factory(url)
    except Exception as exc:
        # A plugin's error may repeat the URL: never with its password.
        mask_exception(exc, db, url)
        raise


def store_factory(scheme: str) -> StoreFactory:
    """The factory that builds stores for ``scheme``, or a clear error."""
    candidates = tuple(dict.fromkeys((scheme, scheme.split("+", 1)[0])))
    # Explicit registrations and built-ins win over every installed plugin.
    for table in (_registered, _builtin, _loaded):
        for candidate in candidates:
            if candidate in table:
                return table[candidate]
    for candidate in candidates:
        found = _store_entry_points().get(candidate)
        if found:
            return _load(candidate, found)
    raise _unknown_scheme(scheme)


def installed_schemes() -> list[str]:
    """Every scheme a ``db=`` URL can use in this environment."""
    return sorted({*_registered, *_builtin, *_store_entry_points()})


@dataclasses.dataclass(frozen=True, slots=True)
class PluginInfo:
    """One installed plugin, as ``durable stores`` lists it."""

    group: str
    name: str
    target: str
    distribution: str


def installed_plugins() -> list[PluginInfo]:
    """Every store scheme and integration that is installed, built in or registered."""
    found = [PluginInfo(STORES_GROUP, "memory", "durable.memory:InMemoryStore", "durable-core")]
    for scheme, factory in sorted(_registered.items()):
        target = f"{factory.__module__}:{getattr(factory, '__qualname__', factory)}"
        found.append(PluginInfo(STORES_GROUP, scheme, target, "register_store()"))
    for group in (STORES_GROUP, INTEGRATIONS_GROUP):
        for ep in sorted(_installed_entry_points(group), key=lambda ep: ep.name):
            found.append(PluginInfo(group, ep.name, ep.value, _distribution(ep)))
    return found


def plugin_export(name: str, module: str = "") -> tuple[bool, object]:
    """``(found, value)`` of a name an installed plugin exports through ``durable``:
    the object an entry point of ``durable.stores`` or ``durable.integrations`` names
    by attribute (``durable_sqlite:SQLiteStore`` gives ``SQLiteStore``), or a name of
    ``module`` when an entry point names that module (``durable_pydantic_ai``). The
    entry points are matched by their text, so nothing is imported for a name no
    plugin gives. A plugin whose own module is missing counts as not installed; any
    other import error is the plugin's, and raised."""
    for group in (STORES_GROUP, INTEGRATIONS_GROUP):
        for ep in _installed_entry_points(group):
            target, _, attr = (part.strip() for part in ep.value.partition(":"))
            # A seed path's name comes from its own package only, never from a plugin
            # that happens to name a class alike.
            if (attr == name and module in ("", target)) or (target == module and not attr):
                found, value = _import_attr(target, name)
                if found:
                    return True, value
    return False, None


def _import_attr(module: str, name: str) -> tuple[bool, object]:
    found, plugin = import_module(module)
    return (True, getattr(plugin, name)) if found else (False, None)


def import_module(module: str) -> tuple[bool, object]:
    """``(found, module)``: a module not installed is ``(False, None)``; a missing
    dependency of an installed one raises, as it is."""
    import importlib

    try:
        return True, importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the plugin is there, a dependency of it is not: its error, as is
        return False, None


def _store_entry_points() -> dict[str, list[metadata.EntryPoint]]:
    global _entry_points
    if _entry_points is None:
        found: dict[str, list[metadata.EntryPoint]] = {}
        for ep in _installed_entry_points(STORES_GROUP):
            found.setdefault(ep.name.lower(), []).append(ep)
        _entry_points = found
    return _entry_points


@functools.cache  # scanned once per process (~5 ms with a hundred packages installed)
def _installed_entry_points(group: str) -> metadata.EntryPoints:
    # Imported here, not at the top: importlib.metadata is ~a sixth of `import durable`.
    from importlib import metadata

    return metadata.entry_points(group=group)


def _load(scheme: str, candidates: list[metadata.EntryPoint]) -> StoreFactory:
    if len(candidates) > 1:
        names = " and ".join(_distribution(ep) for ep in candidates)
        raise PluginConflictError(
            f"the store scheme {scheme!r} is claimed by {names}; uninstall one of them"
        )
    ep = candidates[0]
    try:
        target = ep.load()
    except Exception as exc:
        raise PluginLoadError(
            f"the store plugin for {scheme!r} from the distribution {_distribution(ep)} "
            f"failed to import ({ep.value}): {exc}"
        ) from exc
    try:
        factory = _as_factory(target)
    except TypeError as exc:
        raise PluginLoadError(
            f"the store plugin for {scheme!r} from the distribution {_distribution(ep)} "
            f"is not usable: {exc}"
        ) from exc
    _loaded[scheme] = factory
    return factory


def _as_factory(target: object) -> StoreFactory:
    """A Store class builds its stores with its ``from_url``, or, without one, is called
    with the URL (``MyStore(url)``); any other callable is called with the URL."""
    if isinstance(target, type) and issubclass(target, Store):
        if any("from_url" in vars(cls) for cls in target.__mro__ if cls is not Store):
            return target.from_url
        return functools.partial(_construct, target)
    if callable(target):  # pyright: ignore[reportUnknownArgumentType]
        return typing.cast(StoreFactory, target)
    raise TypeError(f"a store factory must be a Store class or a callable, not {target!r}")


def _construct(kind: type[Store], url: str) -> Store:
    try:
        return kind(url)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    except TypeError as exc:
        raise TypeError(
            f"{kind.__qualname__} has no from_url(url) classmethod, and "
            f"{kind.__qualname__}(url) failed ({exc}); give it a from_url, or register "
            "a callable that takes the URL"
        ) from exc


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value.split(":", 1)[0]


def _unknown_scheme(scheme: str) -> UnknownStoreError:
    installed = ", ".join(installed_schemes())
    base = scheme.split("+", 1)[0]
    hint = install_hint(base)
    todo = (
        f"pip install {hint}"
        if hint
        else f"install a package that provides a {STORES_GROUP!r} entry point named {base!r}"
    )
    return UnknownStoreError(
        f"no store is installed for the URL scheme {scheme!r}; {todo}. "
        f"Installed schemes: {installed}"
    )


def install_hint(scheme: str) -> str | None:
    """What to ``pip install`` for ``scheme``: an extra an installed distribution
    offers it through (:data:`OPTIONAL_STORES_GROUP`), or the seed's own store."""
    for ep in _installed_entry_points(OPTIONAL_STORES_GROUP):
        if ep.name.lower() == scheme.lower() and ep.dist is not None and ep.extras:
            return f"{ep.dist.name}[{','.join(ep.extras)}]"
    return SEED_HINTS.get(scheme.lower())


def _reset_cache() -> None:  # pyright: ignore[reportUnusedFunction]
    """Forget the entry-point scan (tests install plugins at run time)."""
    global _entry_points
    _entry_points = None
    _loaded.clear()
    _installed_entry_points.cache_clear()
