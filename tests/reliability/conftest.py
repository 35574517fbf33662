"""Shared helpers of the reliability suite.

``spawn``   starts ``tests/reliability/worker.py <command> <args...>`` as a real process
            (the suite's ``start_script``: output piped, killed at teardown if running).
``finish``  waits for a spawned process and returns its stdout (asserting exit 0).
``raw``     a plain ``sqlite3`` connection on a path (closed at teardown).
``source``  parametrized over ``memory`` and ``sqlite``: a callable returning a store over
            one set of data (the same InMemoryStore each time; a new SQLiteStore on one
            file each call, like a restarted process).
``RedisServer``  a private ``redis-server`` on a spare port that persists every write
            (AOF, fsync always); skips (or fails, DURABLE_REQUIRE_SERVICES=1) without one.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from durable import InMemoryStore, Store
from durable_sqlite import SQLiteStore

WORKER = Path(__file__).with_name("worker.py")

Spawn = Callable[..., "subprocess.Popen[str]"]
StoreSource = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSource]:
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda: store
    else:
        yield lambda: SQLiteStore(tmp_path / "store.db")


@pytest.fixture
def spawn(start_script: Spawn) -> Spawn:
    return functools.partial(start_script, WORKER)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited {proc.returncode}:\n{err[-3000:]}"
    return out


@pytest.fixture
def raw() -> Iterator[Callable[..., sqlite3.Connection]]:
    opened: list[sqlite3.Connection] = []

    def connect(path: Path | str) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), isolation_level=None)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private redis-server that persists every write (AOF, fsync always)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = spare_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("DURABLE_REQUIRE_SERVICES") == "1":
                pytest.fail("redis-server is not on PATH (DURABLE_REQUIRE_SERVICES=1)")
            pytest.skip("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def client_kill(self, kind: str) -> int:
        """Drop every connection of ``kind`` (normal, pubsub) but this one; how many."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes"))
        finally:
            client.close()
