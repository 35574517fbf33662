"""Fixtures of the plugin-resolution suite.

Every test starts from an empty entry-point cache and no explicit registrations, and
leaves none behind. ``install_dist`` puts a fake distribution on ``sys.path``: a real
``.dist-info`` directory, found by ``importlib.metadata`` like an installed package,
so the tests exercise the same discovery path as ``pip install`` does.
"""

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from durable import plugins


@pytest.fixture(autouse=True)
def clean_plugin_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(plugins, "_registered", {})
    plugins._reset_cache()
    yield
    plugins._reset_cache()


InstallDist = Callable[..., Path]


@pytest.fixture
def install_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallDist]:
    """``install_dist(name, version, stores={scheme: "module:attr"}, modules={name: source},
    site="site", groups={group: {name: value}})`` writes a distribution into
    ``tmp_path/site`` and puts that on sys.path.
    """
    on_path: set[Path] = set()
    modules_written: set[str] = set()

    def install(
        name: str,
        version: str,
        *,
        stores: dict[str, str],
        modules: dict[str, str] | None = None,
        site: str = "site",
        groups: dict[str, dict[str, str]] | None = None,
    ) -> Path:
        root = tmp_path / site
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        sections = {plugins.STORES_GROUP: stores, **(groups or {})}
        (info / "entry_points.txt").write_text(
            "".join(
                f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in names.items())
                for group, names in sections.items()
            )
        )
        for module, source in (modules or {}).items():
            (root / f"{module}.py").write_text(source)
            modules_written.add(module)
        if root not in on_path:
            monkeypatch.syspath_prepend(str(root))
            on_path.add(root)
        importlib.invalidate_caches()
        return info

    yield install
    # The next test's module of the same name lives in another tmp_path.
    for module in modules_written:
        sys.modules.pop(module, None)
