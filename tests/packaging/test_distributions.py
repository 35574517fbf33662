"""What the built wheels and sdists promise to users (DESIGN.md §1): one version for
all, a dependency-free core, plugins as their own top-level packages, typed, and a
metapackage that only pins its siblings."""

import importlib

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import durable
from durable import Store

# The fixtures (built, metapackage, released, code_package, plugin) and the Built
# helper they return are in conftest.py.


def test_the_core_the_sqlite_store_and_the_metapackage_are_built(built) -> None:
    assert {"python-durable", "durable-core", "durable-sqlite"} <= set(built)


def test_every_released_distribution_has_the_version_of_durable(released) -> None:
    versions = {b.name: b.version for b in released}
    assert set(versions.values()) == {durable.__version__}, versions
    for b in released:
        assert b.wheel.name.split("-")[1] == durable.__version__
        assert b.sdist.name.endswith(f"-{durable.__version__}.tar.gz")


def test_every_distribution_requires_python_3_11(built) -> None:
    assert {name: b.metadata["Requires-Python"] for name, b in built.items()} == dict.fromkeys(
        built, ">=3.11"
    )


# -- code packages ------------------------------------------------------------------


def test_the_core_has_no_dependencies(built) -> None:
    assert built["durable-core"].metadata.get_all("Requires-Dist") is None


def test_a_plugin_requires_the_core_within_one_minor_range(plugin) -> None:
    core = [r for r in plugin.requirements if r.name == "durable-core"]
    assert len(core) == 1, plugin.requirements
    version = Version(durable.__version__)
    minor = f"{version.major}.{version.minor}"
    expected = SpecifierSet(f">={minor}.0,<{version.major}.{version.minor + 1}")
    assert core[0].specifier == expected
    assert core[0].marker is None
    assert durable.__version__ in core[0].specifier


def test_the_sqlite_store_requires_aiosqlite(built) -> None:
    names = {r.name for r in built["durable-sqlite"].requirements if r.marker is None}
    assert names == {"durable-core", "aiosqlite"}


def test_no_plugin_wheel_ships_files_under_durable(plugin) -> None:
    # A plugin writing into durable/ could overwrite the core's own modules.
    assert [f for f in plugin.wheel_files if f.startswith("durable/")] == []


def test_a_wheel_ships_exactly_its_own_top_level_package(code_package) -> None:
    top_level = {
        path.split("/", 1)[0]
        for path in code_package.wheel_files
        if not path.split("/", 1)[0].endswith(".dist-info")
    }
    assert top_level == {code_package.import_name}


def test_every_package_is_typed(code_package) -> None:
    assert f"{code_package.import_name}/py.typed" in code_package.wheel_files


def test_an_sdist_holds_its_sources_and_nothing_from_elsewhere(code_package) -> None:
    files = code_package.sdist_files
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= set(files)
    assert f"src/{code_package.import_name}/py.typed" in files
    strays = [f for f in files if f.split("/", 1)[0] not in _SDIST_TOP_LEVEL]
    assert strays == []


_SDIST_TOP_LEVEL = {"src", "pyproject.toml", "README.md", "PKG-INFO", "LICENSE", ".gitignore"}


# -- entry points -------------------------------------------------------------------


def test_the_sqlite_wheel_registers_the_sqlite_scheme(built) -> None:
    stores = built["durable-sqlite"].entry_points["durable.stores"]
    assert dict(stores) == {"sqlite": "durable_sqlite:SQLiteStore"}


def test_a_plugin_entry_point_points_into_its_own_package(plugin) -> None:
    eps = plugin.entry_points
    targets = {
        f"{group}/{name}": target
        for group in ("durable.stores", "durable.integrations")
        if eps.has_section(group)
        for name, target in eps[group].items()
    }
    strays = {
        k: t for k, t in targets.items() if t.split(":")[0].split(".")[0] != plugin.import_name
    }
    assert strays == {}


def test_the_sqlite_entry_point_resolves_to_the_store_class(built) -> None:
    target = built["durable-sqlite"].entry_points["durable.stores"]["sqlite"]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name} is not importable yet: {exc}")
    store_class = getattr(module, attr)
    assert store_class is durable.SQLiteStore
    assert issubclass(store_class, Store)


# -- the metapackage ----------------------------------------------------------------


def test_the_metapackage_says_which_extra_brings_each_plugin_scheme(metapackage, built) -> None:
    """Each optional store entry point names the scheme's store as its plugin wheel
    registers it, and an extra of the metapackage that pins that plugin."""
    hints = metapackage.entry_points["durable.optional_stores"]
    extras = set(metapackage.metadata.get_all("Provides-Extra") or [])
    registered = {
        scheme: (name, target)
        for name, dist in built.items()
        if dist.entry_points.has_section("durable.stores")
        for scheme, target in dist.entry_points["durable.stores"].items()
    }
    assert {"redis", "rediss", "unix", "postgresql", "postgres"} <= set(hints)
    for scheme, value in hints.items():
        target, _, extra = value.partition(" [")
        extra = extra.rstrip("]")
        plugin, plugin_target = registered[scheme]
        assert target == plugin_target, scheme
        assert extra in extras, scheme
        pinned = {
            r.name
            for r in metapackage.requirements
            if r.marker is not None and r.marker.evaluate({"extra": extra})
        }
        assert plugin in pinned, scheme


def test_the_metapackage_wheel_holds_metadata_only(metapackage) -> None:
    assert metapackage.wheel_files
    assert all(f.split("/", 1)[0].endswith(".dist-info") for f in metapackage.wheel_files)
    assert not [f for f in metapackage.wheel_files if f.endswith(".py")]


def test_the_metapackage_pins_the_core_and_the_sqlite_store_exactly(metapackage) -> None:
    base = {str(r) for r in metapackage.requirements if r.marker is None}
    version = durable.__version__
    assert base == {f"durable-core=={version}", f"durable-sqlite=={version}"}


def test_the_metapackage_extras_pin_their_plugins_exactly(metapackage) -> None:
    version = durable.__version__
    assert set(metapackage.metadata.get_all("Provides-Extra") or []) == {
        "redis",
        "postgres",
        "pydantic-ai",
        "all",
    }
    extras = {
        extra: {
            str(r.name) + str(r.specifier)
            for r in metapackage.requirements
            if r.marker is not None and r.marker.evaluate({"extra": extra})
        }
        for extra in ("redis", "postgres", "pydantic-ai", "all")
    }
    assert extras == {
        "redis": {f"durable-redis=={version}"},
        "postgres": {f"durable-postgres=={version}"},
        "pydantic-ai": {f"durable-pydantic-ai=={version}"},
        "all": {
            f"durable-redis=={version}",
            f"durable-postgres=={version}",
            f"durable-pydantic-ai=={version}",
        },
    }


def test_every_package_of_the_repository_is_reachable_from_the_metapackage(
    metapackage, released
) -> None:
    reachable = {
        r.name
        for r in metapackage.requirements
        if r.marker is None or r.marker.evaluate({"extra": "all"})
    }
    assert {b.name for b in released if b is not metapackage} <= reachable


def test_the_metapackage_sdist_holds_only_the_root_files(metapackage) -> None:
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= set(metapackage.sdist_files)
    assert set(metapackage.sdist_files) <= {
        "pyproject.toml",
        "README.md",
        "PKG-INFO",
        "LICENSE",
        ".gitignore",
    }
