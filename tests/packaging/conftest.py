"""Builds every distribution of the repository once per test session.

Packages are discovered by globbing ``packages/*/pyproject.toml``, so a new package is
covered without touching these tests. Each is built the way ``python -m build`` does
by default (the sdist, then the wheel from that sdist, which proves the sdist is
complete), without build isolation: hatchling is installed in the test environment,
and isolation would cost a fresh virtualenv and an index lookup per package.
"""

import configparser
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = sorted(path.parent for path in REPO.glob("packages/*/pyproject.toml"))
EXAMPLE_DIR = REPO / "examples" / "durable-example-store"


def project_name(source: Path) -> str:
    with (source / "pyproject.toml").open("rb") as f:
        name: str = tomllib.load(f)["project"]["name"]
    return name


METAPACKAGE = project_name(REPO)
#: Distributions released together, at one version.
RELEASED = [METAPACKAGE, *(project_name(path) for path in PACKAGE_DIRS)]
#: Distributions that ship code: the repository's packages and the third-party example.
CODE = [*RELEASED[1:], project_name(EXAMPLE_DIR)]
PLUGINS = [name for name in CODE if name != "durable-core"]


@dataclass(frozen=True)
class Built:
    """One project's built wheel and sdist, opened for inspection."""

    name: str
    source: Path
    wheel: Path
    sdist: Path

    @property
    def import_name(self) -> str:
        return "durable" if self.name == "durable-core" else self.name.replace("-", "_")

    @cached_property
    def wheel_files(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.namelist()

    @cached_property
    def sdist_files(self) -> list[str]:
        """Paths inside the sdist, without its top-level ``name-version/`` folder."""
        with tarfile.open(self.sdist) as sdist:
            return [
                member.name.split("/", 1)[1]
                for member in sdist.getmembers()
                if member.isfile() and "/" in member.name
            ]

    def _dist_info_file(self, name: str) -> bytes | None:
        with zipfile.ZipFile(self.wheel) as wheel:
            for path in wheel.namelist():
                folder, _, filename = path.partition("/")
                if folder.endswith(".dist-info") and filename == name:
                    return wheel.read(path)
        return None

    @cached_property
    def metadata(self) -> Message:
        raw = self._dist_info_file("METADATA")
        assert raw is not None, f"{self.wheel.name} has no METADATA"
        return BytesParser().parsebytes(raw)

    @property
    def version(self) -> str:
        return str(self.metadata["Version"])

    @property
    def requirements(self) -> list[Requirement]:
        return [Requirement(line) for line in self.metadata.get_all("Requires-Dist") or []]

    @cached_property
    def entry_points(self) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep case
        raw = self._dist_info_file("entry_points.txt")
        if raw is not None:
            parser.read_string(raw.decode())
        return parser


def _build(source: Path, out: Path) -> Built:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building {source} failed:\n{result.stdout}\n{result.stderr}")
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Built(project_name(source), source, wheel, sdist)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Every project's artifacts by distribution name."""
    out = tmp_path_factory.mktemp("dist")
    sources = [REPO, *PACKAGE_DIRS, EXAMPLE_DIR]
    # Each build is mostly a child process waiting on its own: run them side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        builds = list(pool.map(lambda src: _build(src, out / src.name), sources))
    return {b.name: b for b in builds}


@pytest.fixture
def metapackage(built: dict[str, Built]) -> Built:
    return built[METAPACKAGE]


@pytest.fixture
def released(built: dict[str, Built]) -> list[Built]:
    return [built[name] for name in RELEASED]


@pytest.fixture(params=CODE)
def code_package(request: pytest.FixtureRequest, built: dict[str, Built]) -> Built:
    """Each distribution that ships code, the third-party example included."""
    return built[request.param]


@pytest.fixture(params=PLUGINS)
def plugin(request: pytest.FixtureRequest, built: dict[str, Built]) -> Built:
    """Each distribution that ships code other than durable-core."""
    return built[request.param]
