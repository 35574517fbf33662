"""Shared helpers of the Redis store suite.

``redis_url``       the real server (env ``DURABLE_REDIS_URL``, default
                    ``redis://127.0.0.1:6379/9``, a database of its own). The test is
                    skipped when it is unreachable, or fails when
                    ``DURABLE_REQUIRE_SERVICES=1``.
``prefix``          a key prefix unique to the test on that server; its keys are
                    deleted afterwards.
``redis_server``    starts a private ``redis-server`` on a spare port (for fault
                    tests that stop and restart it); stopped at teardown.
``cluster_port``    starts a private three-node Redis Cluster once per session; a
                    node's port.
``spawn``           starts ``tests/redis/worker.py <command> <args...>`` as a real
                    process; killed at teardown if still running.
``make_redis_store`` (parametrized: fakeredis, the real server) builds RedisStores
                    on one database; each call is another store object on it.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from durable_redis import RedisStore
from durable_redis.urls import mask_url

REDIS_URL = os.environ.get("DURABLE_REDIS_URL", "redis://127.0.0.1:6379/9")
WORKER = Path(__file__).with_name("worker.py")
REQUIRED = os.environ.get("DURABLE_REQUIRE_SERVICES") == "1"

_reachable: dict[str, str | None] = {}


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says services are required (CI)."""
    if REQUIRED:
        pytest.fail(f"{reason} (DURABLE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def server_problem(url: str = REDIS_URL) -> str | None:
    """Why the server at ``url`` cannot be used, or None when it answers PING."""
    if url not in _reachable:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
            _reachable[url] = None
        except redis.RedisError as exc:
            _reachable[url] = f"no Redis server at {mask_url(url)}: {exc}"
        finally:
            client.close()
    return _reachable[url]


def require_redis_server() -> None:
    problem = server_problem()
    if problem is not None:
        unavailable(problem)


@pytest.fixture
def redis_url() -> str:
    require_redis_server()
    return REDIS_URL


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (``SCAN``, never ``FLUSHDB``)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"durable-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_prefix(REDIS_URL, name)


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spare_cluster_port() -> int:
    """A spare port whose cluster bus port (port + 10000) exists and is spare too."""
    while True:
        port = spare_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServer:
    """A private ``redis-server`` without persistence files of its own.

    ``stop(keep_data=True)`` shuts it down with ``SHUTDOWN SAVE`` (an RDB dump even
    though ``--save ""`` turns off periodic saves), so ``start()`` brings the data
    back; ``keep_data=False`` loses everything, as a restart without persistence does.
    """

    def __init__(self, directory: Path) -> None:
        self.port = spare_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
            raise AssertionError("unreachable")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError as exc:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise AssertionError(
                            f"redis-server on port {self.port} did not start"
                        ) from exc
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, *, keep_data: bool = True) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # No retries: redis-py would resend SHUTDOWN to the server that just went away.
        client = redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
        try:
            client.shutdown(save=keep_data, nosave=not keep_data)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def answers(port: int, command: str = "PING") -> Any:
    """The reply of a private server to one command (a fresh connection, then closed)."""
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=5)
    try:
        return client.execute_command(command)
    finally:
        client.close()


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up within {timeout} s")
        time.sleep(0.05)


class Cluster:
    """Three master nodes, no replicas, no persistence files of their own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = [spare_cluster_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            unavailable("redis-server and redis-cli are needed for the Cluster tests")
            raise AssertionError("unreachable")
        for port in self.ports:
            command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--cluster-enabled", "yes",
                       "--cluster-config-file", f"nodes-{port}.conf",
                       "--dir", str(self.directory)]  # fmt: skip
            self.procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            wait_until(lambda port=port: bool(answers(port)), f"redis-server on port {port}")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        wait_until(
            lambda: answers(self.ports[0], "CLUSTER INFO")["cluster_state"] == "ok",
            "the Redis Cluster",
        )

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private three-node Redis Cluster for the whole session: one node's port."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster.ports[0]
    finally:
        cluster.stop()


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn(start_script: Callable[..., subprocess.Popen[str]]) -> Spawn:
    """Start this folder's worker script with these arguments."""
    return functools.partial(start_script, WORKER)


StoreFactory = Callable[..., RedisStore]


@pytest.fixture(params=["fakeredis", "server"])
def make_redis_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Build RedisStores on one backing database: an in-process fakeredis server, or
    the real server under a prefix of the test's own. Each call is a new store object
    on the same data (as another process would have); ``make(ttl=...)`` passes its
    options to RedisStore."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def on_fakeredis(**options: Any) -> RedisStore:
            return RedisStore(client=fakeredis.FakeAsyncRedis(server=server), **options)

        yield on_fakeredis
        return
    require_redis_server()
    name = f"durable-test-{uuid.uuid4().hex[:12]}"

    def on_server(**options: Any) -> RedisStore:
        return RedisStore(REDIS_URL, prefix=name, **options)

    yield on_server
    delete_prefix(REDIS_URL, name)
