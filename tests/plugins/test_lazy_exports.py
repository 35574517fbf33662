"""Names that moved to plugin packages still import from ``durable``, and a missing
plugin says exactly what to ``pip install``."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import durable
from durable import DurableError, MissingPluginError, PluginError, Store

try:
    import durable_sqlite
except ImportError:
    durable_sqlite = None


@pytest.mark.parametrize(
    ("module", "name", "plugin", "requirement"),
    [
        ("durable", "RedisStore", "durable_redis", "python-durable[redis]"),
        ("durable.redis_store", "RedisStore", "durable_redis", "python-durable[redis]"),
        ("durable", "DurableAgent", "durable_pydantic_ai", "python-durable[pydantic-ai]"),
        (
            "durable.pydantic_ai",
            "durable_tool",
            "durable_pydantic_ai",
            "python-durable[pydantic-ai]",
        ),
        ("durable", "SQLiteStore", "durable_sqlite", "python-durable"),
        ("durable.store", "SQLiteStore", "durable_sqlite", "python-durable"),
    ],
)
def test_importing_a_name_of_a_missing_plugin_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, name: str, plugin: str, requirement: str
) -> None:
    # None in sys.modules makes the import fail as if the plugin were not installed,
    # whether or not it is in this environment.
    monkeypatch.setitem(sys.modules, plugin, None)
    with pytest.raises(ImportError) as caught:
        exec(f"from {module} import {name}", {})
    assert isinstance(caught.value, MissingPluginError)
    assert isinstance(caught.value, PluginError)
    assert isinstance(caught.value, DurableError)
    assert f'pip install "{requirement}"' in str(caught.value)
    assert caught.value.__cause__ is None  # the hint is the whole story


def test_redis_store_without_durable_redis_installed() -> None:
    if importlib.util.find_spec("durable_redis") is not None:
        pytest.skip("durable-redis is installed here; the test above simulates its absence")
    with pytest.raises(ImportError, match=r'pip install "python-durable\[redis\]"'):
        from durable import RedisStore  # noqa: F401


@pytest.mark.skipif(durable_sqlite is None, reason="durable_sqlite is not importable yet")
def test_sqlite_store_imports_from_durable_when_durable_sqlite_is_installed() -> None:
    from durable import SQLiteStore
    from durable.store import SQLiteStore as SeedPathSQLiteStore

    assert SQLiteStore is durable_sqlite.SQLiteStore
    assert SeedPathSQLiteStore is SQLiteStore
    assert issubclass(SQLiteStore, Store)


def test_an_unknown_name_is_an_attribute_error_not_a_plugin_hint() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = durable.NoSuchThing
    with pytest.raises(ImportError) as caught:
        exec("from durable import NoSuchThing", {})
    assert not isinstance(caught.value, PluginError)


def test_an_import_error_inside_an_installed_plugin_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # durable-redis is installed but its own dependency is missing: the error must
    # name that dependency, not claim durable-redis itself is missing.
    (tmp_path / "durable_redis.py").write_text("import redis_client_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "durable_redis", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        exec("from durable import RedisStore", {})
    assert caught.value.name == "redis_client_not_installed"
    assert not isinstance(caught.value, MissingPluginError)


def test_import_durable_loads_no_plugin_and_no_entry_point_machinery() -> None:
    # `import durable` stays cheap: importlib.metadata (email, zipfile, ...) alone was
    # ~15-30% of it. Stores are looked up, and their packages imported, on first use.
    code = (
        "import sys, durable; "
        "print(sorted(m for m in ('importlib.metadata', 'durable_sqlite', 'durable_redis', "
        "'aiosqlite', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_plugins_entry_point_is_what_makes_its_name_importable_from_durable() -> None:
    # Core keeps no table of installed packages: the example store, a third party,
    # exports its class through its durable.stores entry point like ours do.
    from durable import JsonDirStore  # type: ignore[attr-defined]
    from durable_example_store import JsonDirStore as Direct

    assert JsonDirStore is Direct


def test_an_unknown_name_imports_no_plugin() -> None:
    code = (
        "import sys, durable\n"
        "for name in ('NoSuchThing', '_private', 'durable_toolz'):\n"
        "    try: getattr(durable, name)\n"
        "    except AttributeError: pass\n"
        "print(sorted(m for m in ('durable_sqlite', 'durable_redis', 'durable_pydantic_ai', "
        "'pydantic_ai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
