"""A ``--db`` that names no usable store (an unknown scheme, a bad port, an unknown
parameter) is exit 3 with one line on stderr: no traceback, no password."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Cli

PASSWORD = "hunter2-s3cret"

BAD = [
    f"nosuch://app:{PASSWORD}@somewhere/0",
    f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://:{PASSWORD}@127.0.0.1:99999/0",
    # redis-py takes query parameters as connection arguments, and refuses an unknown
    # one (a TypeError) only when the first connection is made.
    f"redis://:{PASSWORD}@127.0.0.1:1/0?bogus=1",
    f"rediss://:{PASSWORD}@127.0.0.1:1/0?lease_seconds=5",
    f"postgresql://app:{PASSWORD}@127.0.0.1:notaport/db",
    f"postgresql://app:{PASSWORD}@127.0.0.1:70000/db",
    f"sqlite:///jobs.db?bogus=1&password={PASSWORD}",
    f"sqlite://app:{PASSWORD}@host/jobs.db",
    f"sqlite:///jobs.db?mode=RO&password={PASSWORD}",
]


@pytest.mark.parametrize("db", BAD)
@pytest.mark.parametrize(
    "command",
    [["runs", "list"], ["runs", "show", "r1"], ["runs", "cancel", "r1"], ["signal", "r1", "s"]],
)
def test_a_bad_db_is_exit_3_with_one_line(cli: Cli, tmp_path: Path, db: str, command) -> None:
    done = cli(*command, "--db", db, cwd=tmp_path)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("durable: ")
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr
    assert "***" in done.stderr or "nosuch" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_error_message_with_a_newline_stays_one_line(cli: Cli, tmp_path: Path) -> None:
    done = cli("runs", "cancel", "r1", "--db", "sqlite:///jobs.db?bo%0Agus=1%0D", cwd=tmp_path)
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "\r" not in done.stderr
