"""The README's "Your own store" section runs as written: its usage example on the
example store, and its conformance module (the whole suite) on the example store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"
EXAMPLE_STORE = Path(__file__).parents[2] / "examples" / "durable-example-store" / "src"


def section_blocks() -> list[str]:
    text = README.read_text("utf-8")
    section = text[text.index("### Your own store") :]
    section = section[: section.index("\n## ")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_shows_the_example_stores_own_compare_and_set() -> None:
    snippet = section_blocks()[0]
    source = (EXAMPLE_STORE / "durable_example_store" / "__init__.py").read_text("utf-8")
    assert snippet.strip() in source


def test_the_usage_example_runs(tmp_path: Path) -> None:
    usage = section_blocks()[1]
    done = subprocess.run(
        [sys.executable, "-c", usage], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "receipt-42"


def test_the_conformance_module_passes(tmp_path: Path) -> None:
    contract = section_blocks()[2]
    (tmp_path / "test_my_store.py").write_text(contract, "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         str(tmp_path / "test_my_store.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "failed" not in summary, summary
