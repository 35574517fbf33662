"""Shared helpers of the PostgreSQL store suite.

``pg_server``   the server's URL (env ``DURABLE_POSTGRES_URL``, default
                ``postgresql://postgres@127.0.0.1:5432/postgres``): the test is skipped
                when it is unreachable, or fails when ``DURABLE_REQUIRE_SERVICES=1``.
``pg_url``      a throw-away database of this test session on that server
                (``durable_test_<random>``, created on first use, dropped at the end
                ``WITH (FORCE)``): its URL.
``schema``      a schema name unique to the test (the store creates it); dropped
                afterwards.
``pg_db``       the ``db=`` URL of both: ``<pg_url>?schema=<schema>``.
``spawn``       starts ``tests/postgres/worker.py <command> <args...>`` as a real
                process; killed at teardown if still running.

Administrative SQL (``admin``) runs on a connection of its own, in a thread of its
own, so that it works from sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from durable.urls import mask_url

POSTGRES_URL = os.environ.get(
    "DURABLE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("DURABLE_REQUIRE_SERVICES") == "1"
WORKER = Path(__file__).with_name("worker.py")

T = TypeVar("T")
_problem: dict[str, str | None] = {}


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says services are required (CI)."""
    if REQUIRED:
        pytest.fail(f"{reason} (DURABLE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def in_thread(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh event loop in another thread: safe inside a test's loop."""

    async def run() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def driver_dsn(url: str) -> str:
    """``url`` as asyncpg takes it: the ``postgresql://`` scheme, no ``schema=`` option."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [*((k, v) for k, v in parse_qsl(parts.query) if k != "schema"), ("schema", schema)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


async def _connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(driver_dsn(url), timeout=3)
    return conn


def admin(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on a connection of its own; its rows (empty for commands)."""

    async def run() -> list[asyncpg.Record]:
        conn = await _connect(url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    return in_thread(run)


def server_problem(url: str = POSTGRES_URL) -> str | None:
    """Why the server at ``url`` cannot be used, or None when it answers."""
    if url not in _problem:
        try:
            admin(url, "SELECT 1")
            _problem[url] = None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            _problem[url] = f"no PostgreSQL server at {mask_url(url)}: {exc!r}"
    return _problem[url]


def require_postgres() -> str:
    problem = server_problem()
    if problem is not None:
        unavailable(problem)
    return POSTGRES_URL


@pytest.fixture
def pg_server() -> str:
    """The server's URL (its maintenance database): for what needs no test database."""
    return require_postgres()


@pytest.fixture(scope="session")
def _session_database() -> Iterator[str]:
    server = require_postgres()
    name = f"durable_test_{uuid.uuid4().hex[:12]}"
    admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name)
    finally:
        admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(_session_database: str) -> str:
    """The URL of this session's throw-away database (no ``schema=``)."""
    return _session_database


def drop_schema(url: str, schema: str) -> None:
    admin(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    """A schema name of this test's own (not created); dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(pg_url, name)


@pytest.fixture
def pg_db(pg_url: str, schema: str) -> str:
    """``db=`` URL of this test: the session's database, the test's schema."""
    return with_schema(pg_url, schema)


def backends(url: str) -> list[int]:
    """Pids of the server processes connected to ``url``'s database, except admin ones."""
    database = urlsplit(url).path.lstrip("/")
    rows = admin(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'",
        database,
    )
    return [int(row["pid"]) for row in rows]


def terminate_backends(url: str) -> int:
    """``pg_terminate_backend`` every other connection to ``url``'s database; how many."""
    database = urlsplit(url).path.lstrip("/")
    rows = admin(
        url,
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        database,
    )
    return sum(1 for row in rows if row["ok"])


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn(start_script: Callable[..., subprocess.Popen[str]]) -> Spawn:
    """Start this folder's worker script with these arguments."""
    return functools.partial(start_script, WORKER)
