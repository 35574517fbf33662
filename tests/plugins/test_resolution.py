"""How ``Workflow(db=...)`` finds a store: explicit registrations, the built-in
``memory`` store, then ``durable.stores`` entry points; ``dialect+driver`` falls back
to ``dialect``; failures say what is wrong and what to install."""

import contextlib
import importlib
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from durable import (
    DurableError,
    InMemoryStore,
    PluginConflictError,
    PluginError,
    PluginLoadError,
    Store,
    UnknownStoreError,
    Workflow,
    plugins,
    register_store,
)
from durable.plugins import installed_schemes, store_factory, unregister_store
from durable_example_store import JsonDirStore

REPO = Path(__file__).resolve().parents[2]


def sqlite_store_class() -> Any:
    try:
        return importlib.import_module("durable_sqlite").SQLiteStore
    except (ImportError, AttributeError):
        return None


InstallDist = Callable[..., Path]  # the install_dist fixture of conftest.py
SQLiteStore = sqlite_store_class()
needs_sqlite = pytest.mark.skipif(
    SQLiteStore is None, reason="durable_sqlite.SQLiteStore is not importable yet"
)


class Recorder:
    """A store factory that remembers the URLs it was called with."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> Store:
        self.urls.append(url)
        return InMemoryStore()


# A module of a fake plugin: ``make(url)`` builds an InMemoryStore and records the URL.
RECORDING_PLUGIN = """
from durable import InMemoryStore

urls = []

def make(url):
    urls.append(url)
    return InMemoryStore()
"""


# -- built-ins and installed plugins ------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "memory://anything", "MEMORY://"])
def test_memory_url_builds_an_in_memory_store(url: str) -> None:
    assert type(Workflow("app", db=url).store) is InMemoryStore


def test_a_store_instance_is_used_as_given() -> None:
    store = InMemoryStore()
    assert Workflow("app", db=store).store is store


def test_jsondir_url_selects_the_example_store_from_its_entry_point(tmp_path: Path) -> None:
    store = Workflow("app", db=f"jsondir://{tmp_path}/runs").store
    assert isinstance(store, JsonDirStore)
    assert store.root == tmp_path / "runs"


def test_installed_schemes_lists_builtins_and_entry_points() -> None:
    schemes = installed_schemes()
    assert {"memory", "jsondir"} <= set(schemes)
    assert schemes == sorted(schemes)


@needs_sqlite
@pytest.mark.parametrize(
    ("db", "path"),
    [
        ("jobs.db", "jobs.db"),
        ("data/jobs.db", "data/jobs.db"),
        ("sqlite:///jobs.db", "jobs.db"),
        ("/var/tmp/jobs.db", "/var/tmp/jobs.db"),
        ("sqlite:////var/tmp/jobs.db", "/var/tmp/jobs.db"),
        (Path("data/jobs.db"), "data/jobs.db"),
    ],
)
def test_bare_paths_and_sqlite_urls_resolve_to_the_sqlite_store(db: str | Path, path: str) -> None:
    store = Workflow("app", db=db).store
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path(path)


@needs_sqlite
def test_the_default_db_is_durable_db_in_the_working_directory() -> None:
    store = Workflow("app").store
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path("durable.db")


def test_db_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="db="):
        Workflow("app", db=42)  # type: ignore[arg-type]


# -- unknown schemes ----------------------------------------------------------------


def test_unknown_scheme_lists_the_installed_schemes_and_how_to_add_one() -> None:
    with pytest.raises(UnknownStoreError) as caught:
        Workflow("app", db="nosuch://host/db")
    message = str(caught.value)
    assert "'nosuch'" in message
    assert f"Installed schemes: {', '.join(installed_schemes())}" in message
    assert "'durable.stores'" in message
    assert isinstance(caught.value, PluginError)
    assert isinstance(caught.value, DurableError)
    assert isinstance(caught.value, ValueError)


@pytest.fixture
def without_redis_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide a durable-redis that may be installed, to see what users without it see."""
    real = metadata.entry_points

    def entry_points(**params: Any) -> metadata.EntryPoints:
        found = real(**params)
        return metadata.EntryPoints(
            ep for ep in found if ep.dist is None or ep.dist.name != "durable-redis"
        )

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture
def without_postgres_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide durable-postgres, to see what users without it see."""
    real = metadata.entry_points

    def entry_points(**params: Any) -> metadata.EntryPoints:
        found = real(**params)
        return metadata.EntryPoints(
            ep for ep in found if ep.dist is None or ep.dist.name != "durable-postgres"
        )

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture
def metapackage_installed(install_dist: InstallDist) -> None:
    """The metapackage's metadata as pip installs it: its entry points, read from the
    repository's pyproject.toml (hatch's test environment does not install it)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    hints = project["entry-points"][plugins.OPTIONAL_STORES_GROUP]
    install_dist(
        "python-durable",
        project["version"],
        stores={},
        groups={plugins.OPTIONAL_STORES_GROUP: hints},
    )


@pytest.mark.usefixtures("without_redis_plugin", "metapackage_installed")
@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@localhost:6379/0",
        "rediss://:s3cret@cache.example:6380/1",
        "redis+cluster://:s3cret@node1:7000",
        "unix:///run/redis.sock",
    ],
)
def test_redis_url_without_durable_redis_says_what_to_install(url: str) -> None:
    with pytest.raises(UnknownStoreError) as caught:
        Workflow("app", db=url)
    message = str(caught.value)
    assert "pip install python-durable[redis]" in message
    assert "memory" in message  # the installed schemes are listed
    assert "s3cret" not in message  # a password never reaches an error message


@pytest.mark.usefixtures("without_postgres_plugin", "metapackage_installed")
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret@db.internal:5432/app",
        "postgres://app:s3cret@db.internal/app",
        "postgresql+asyncpg://app:s3cret@db.internal/app",
    ],
)
def test_postgres_url_without_durable_postgres_says_what_to_install(url: str) -> None:
    with pytest.raises(UnknownStoreError) as caught:
        Workflow("app", db=url)
    message = str(caught.value)
    assert "pip install python-durable[postgres]" in message
    assert "s3cret" not in message


def test_the_install_hint_comes_from_the_entry_point_of_an_extra(
    install_dist: InstallDist,
) -> None:
    """Core names no plugin: any distribution may say which of its extras brings a
    scheme (``durable.optional_stores``)."""
    install_dist(
        "acme-meta",
        "1.0",
        stores={},
        groups={plugins.OPTIONAL_STORES_GROUP: {"acmedb": "acme_store:AcmeStore [acme, fast]"}},
    )
    with pytest.raises(UnknownStoreError, match=r"pip install acme-meta\[acme,fast\]"):
        Workflow("app", db="acmedb://host/x")


@pytest.mark.usefixtures("without_redis_plugin")
def test_without_the_metapackage_a_missing_plugin_gets_the_generic_advice() -> None:
    with pytest.raises(UnknownStoreError) as caught:
        Workflow("app", db="redis://localhost:6379/0")
    assert "entry point named 'redis'" in str(caught.value)


# -- explicit registration ----------------------------------------------------------


def test_register_store_wins_over_an_entry_point(tmp_path: Path) -> None:
    url = f"jsondir://{tmp_path}"
    recorder = Recorder()
    register_store("jsondir", recorder)
    assert type(Workflow("app", db=url).store) is InMemoryStore
    assert recorder.urls == [url]

    unregister_store("jsondir")
    assert isinstance(Workflow("app", db=url).store, JsonDirStore)


def test_register_store_wins_over_the_builtin_memory_store() -> None:
    recorder = Recorder()
    register_store("memory", recorder)
    Workflow("app", db="memory://")
    assert recorder.urls == ["memory://"]


def test_register_store_accepts_a_store_class_and_uses_its_from_url() -> None:
    urls: list[str] = []

    class UrlStore(InMemoryStore):
        @classmethod
        def from_url(cls, url: str) -> "UrlStore":
            urls.append(url)
            return cls()

    register_store("urlstore", UrlStore)
    assert type(Workflow("app", db="urlstore://h/0").store) is UrlStore
    assert urls == ["urlstore://h/0"]


def test_register_store_builds_a_class_without_from_url_from_the_url() -> None:
    class PathStore(Store):
        def __init__(self, url: str) -> None:
            self.url = url

    PathStore.__abstractmethods__ = frozenset()  # the seed's methods do not matter here
    register_store("pathstore", PathStore)
    store = Workflow("app", db="pathstore:///var/x").store
    assert type(store) is PathStore
    assert store.url == "pathstore:///var/x"


def test_register_store_with_a_class_that_cannot_take_the_url_says_how_to_fix_it() -> None:
    class NoUrlStore(Store):
        def __init__(self) -> None:
            pass

    NoUrlStore.__abstractmethods__ = frozenset()  # the seed's methods do not matter here
    register_store("nourl", NoUrlStore)
    with pytest.raises(TypeError, match=r"NoUrlStore has no from_url\(url\) classmethod"):
        Workflow("app", db="nourl://x")


def test_registered_schemes_are_case_insensitive() -> None:
    recorder = Recorder()
    register_store("XDB", recorder)
    Workflow("app", db="xdb://h")
    Workflow("app", db="XDB://h")
    assert recorder.urls == ["xdb://h", "XDB://h"]
    assert "xdb" in installed_schemes()


# -- dialect+driver -----------------------------------------------------------------


def test_dialect_plus_driver_falls_back_to_the_dialect_with_the_full_url() -> None:
    recorder = Recorder()
    register_store("xdb", recorder)
    Workflow("app", db="xdb+asyncdriver://host/db")
    assert recorder.urls == ["xdb+asyncdriver://host/db"]


def test_an_exact_dialect_plus_driver_registration_wins_over_the_dialect() -> None:
    dialect, exact = Recorder(), Recorder()
    register_store("xdb", dialect)
    register_store("xdb+fast", exact)
    Workflow("app", db="xdb+fast://host/db")
    Workflow("app", db="xdb+slow://host/db")
    assert exact.urls == ["xdb+fast://host/db"]
    assert dialect.urls == ["xdb+slow://host/db"]


def test_dialect_plus_driver_falls_back_to_an_entry_point(install_dist: InstallDist) -> None:
    install_dist(
        "durable-recorder",
        "1.0",
        stores={"recdb": "durable_recorder_plugin:make"},
        modules={"durable_recorder_plugin": RECORDING_PLUGIN},
    )
    Workflow("app", db="recdb+driver://host/db")
    assert importlib.import_module("durable_recorder_plugin").urls == ["recdb+driver://host/db"]


# -- entry points: callables, caching, broken and conflicting plugins ---------------


def test_an_entry_point_may_name_a_plain_callable(install_dist: InstallDist) -> None:
    install_dist(
        "durable-recorder",
        "1.0",
        stores={"recdb": "durable_recorder_plugin:make"},
        modules={"durable_recorder_plugin": RECORDING_PLUGIN},
    )
    assert type(Workflow("app", db="recdb://x").store) is InMemoryStore
    assert importlib.import_module("durable_recorder_plugin").urls == ["recdb://x"]


def test_entry_points_are_scanned_once_until_the_cache_is_reset(
    install_dist: InstallDist, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scans: list[object] = []
    real = metadata.entry_points

    def counting(**params: Any) -> metadata.EntryPoints:
        scans.append(params)
        return real(**params)

    monkeypatch.setattr(metadata, "entry_points", counting)
    for url in ("memory://", f"jsondir://{tmp_path}", f"jsondir://{tmp_path}/b", "nope+x://"):
        with contextlib.suppress(UnknownStoreError):
            Workflow("app", db=url)
    # Each group once: the stores, and (for the unknown scheme's hint) the optional ones.
    assert scans == [{"group": plugins.STORES_GROUP}, {"group": plugins.OPTIONAL_STORES_GROUP}]

    # A plugin installed after the scan is not seen until the cache is reset.
    install_dist(
        "durable-recorder",
        "1.0",
        stores={"recdb": "durable_recorder_plugin:make"},
        modules={"durable_recorder_plugin": RECORDING_PLUGIN},
    )
    with pytest.raises(UnknownStoreError):
        store_factory("recdb")
    plugins._reset_cache()
    store_factory("recdb")
    assert len(scans) == 3  # the stores' group again, after the reset


@pytest.mark.parametrize(
    ("modules", "target", "cause"),
    [
        (
            {"durable_broken_plugin": "raise RuntimeError('libbroken.so not found')\n"},
            "durable_broken_plugin:BrokenStore",
            RuntimeError,
        ),
        ({}, "durable_absent_plugin:AbsentStore", ModuleNotFoundError),
    ],
    ids=["raises-on-import", "module-missing"],
)
def test_a_plugin_that_fails_to_import_names_its_distribution(
    install_dist: InstallDist,
    modules: dict[str, str],
    target: str,
    cause: type[Exception],
) -> None:
    install_dist("durable-broken", "1.2.3", stores={"broken": target}, modules=modules)
    with pytest.raises(PluginLoadError) as caught:
        Workflow("app", db="broken://host")
    message = str(caught.value)
    assert "durable-broken 1.2.3" in message
    assert "'broken'" in message
    assert isinstance(caught.value.__cause__, cause)
    assert isinstance(caught.value, ImportError)

    # One broken plugin does not break the others, nor the list of schemes.
    assert type(Workflow("app", db="memory://").store) is InMemoryStore
    assert "broken" in installed_schemes()


def test_two_distributions_claiming_one_scheme_is_an_error_naming_both(
    install_dist: InstallDist,
) -> None:
    install_dist("durable-twin-one", "1.0", stores={"twin": "durable_twin_one:make"})
    install_dist("durable-twin-two", "2.0", stores={"twin": "durable_twin_two:make"})
    with pytest.raises(PluginConflictError) as caught:
        Workflow("app", db="twin://host")
    assert "durable-twin-one 1.0" in str(caught.value)
    assert "durable-twin-two 2.0" in str(caught.value)


def test_a_conflict_with_an_installed_plugin_names_both(
    install_dist: InstallDist, tmp_path: Path
) -> None:
    install_dist("durable-jsondir-fork", "0.9", stores={"jsondir": "durable_fork:Store"})
    with pytest.raises(PluginConflictError) as caught:
        Workflow("app", db=f"jsondir://{tmp_path}")
    assert "durable-example-store" in str(caught.value)
    assert "durable-jsondir-fork 0.9" in str(caught.value)


def test_register_store_settles_a_conflict(install_dist: InstallDist) -> None:
    install_dist("durable-twin-one", "1.0", stores={"twin": "durable_twin_one:make"})
    install_dist("durable-twin-two", "2.0", stores={"twin": "durable_twin_two:make"})
    recorder = Recorder()
    register_store("twin", recorder)
    Workflow("app", db="twin://host")
    assert recorder.urls == ["twin://host"]


def test_one_distribution_seen_on_two_paths_is_not_a_conflict(
    install_dist: InstallDist,
) -> None:
    for site in ("site-a", "site-b"):
        install_dist(
            "durable-recorder",
            "1.0",
            stores={"recdb": "durable_recorder_plugin:make"},
            modules={"durable_recorder_plugin": RECORDING_PLUGIN},
            site=site,
        )
    assert type(Workflow("app", db="recdb://x").store) is InMemoryStore
