"""The README's "Logging" section lists every log line the library writes: its logger,
its level and its message (the format string, as in the source), with what to do
about it. A log call added to any package without a row there fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).parents[2]
LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}


def _logging_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("\n### Logging")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _loggers(tree: ast.Module) -> dict[str, str]:
    """Module-level ``name = logging.getLogger("...")`` assignments."""
    found: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "getLogger"
            and node.value.args
            and isinstance(node.value.args[0], ast.Constant)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = str(node.value.args[0].value)
    return found


def log_lines() -> list[tuple[str, str, str, str]]:
    """(where, logger, level, format string) of every log call in packages/*/src."""
    lines: list[tuple[str, str, str, str]] = []
    for path in sorted(REPO.glob("packages/*/src/**/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loggers = _loggers(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in loggers
            ):
                message = node.args[0]
                assert isinstance(message, ast.Constant), f"{path}:{node.lineno}"
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                logger = loggers[node.func.value.id]
                lines.append((where, logger, LEVELS[node.func.attr], str(message.value)))
    return lines


def test_the_scan_finds_the_take_over_warning() -> None:
    assert ("durable", "WARNING", "run %s: its owner %s is gone; taking it over") in {
        line[1:] for line in log_lines()
    }


def test_every_log_line_is_in_the_readme_with_its_logger_and_level() -> None:
    rows = [row for row in _logging_section().splitlines() if row.startswith("|")]
    missing = []
    for where, logger, level, message in log_lines():
        cell = f"`{message}`"
        if not any(
            cell in row and f"| `{logger}` |" in row and f"| {level} |" in row for row in rows
        ):
            missing.append(f"{where}: {logger} {level} {message!r}")
    assert not missing, "not in the README's Logging section:\n" + "\n".join(missing)


def test_every_row_has_advice() -> None:
    rows = [row for row in _logging_section().splitlines() if row.startswith("| `durable")]
    assert rows
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4, row
        assert len(cells[3]) > 10, row  # what a user should do about it
