"""The third-party example store (examples/durable-example-store), installed as a
workspace member and selected by its URL scheme, as a user of a published plugin
would select it."""

import asyncio
import hashlib
import math
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from durable import Store, StoreError, Workflow
from durable.backoff import constant
from durable.testing import StoreContract
from durable_example_store import JsonDirStore

# -- through the engine -------------------------------------------------------------


class App:
    """A workflow of two steps; a new App on the same URL stands in for a new process."""

    def __init__(self, url: str, calls: list[str], *, fail_second_step: bool = False) -> None:
        self.wf = wf = Workflow("app", db=url, default_retries=0, default_backoff=constant(0))

        @wf.task
        async def fetch(order_id: str) -> dict[str, int]:
            calls.append("fetch")
            return {"order": int(order_id), "amount": 0}

        @wf.task
        async def charge(order: dict[str, int]) -> str:
            calls.append("charge")
            if fail_second_step:
                raise ConnectionError("payment service down")
            return f"receipt-{order['order']}"

        @wf.workflow(id="order-{order_id}")
        async def process(order_id: str) -> str:
            return await charge(await fetch(order_id))

        @wf.workflow(id="approve-{order_id}")
        async def approve(order_id: str) -> object:
            return await wf.signal("approval", poll=0.05)

        self.process = process
        self.approve = approve


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"jsondir://{tmp_path}/runs"


async def test_a_run_checkpoints_to_files_and_replays_from_them(url: str, tmp_path: Path) -> None:
    calls: list[str] = []
    first = App(url, calls)
    assert isinstance(first.wf.store, JsonDirStore)
    assert await first.process("42") == "receipt-42"
    assert calls == ["fetch", "charge"]
    await first.wf.close()

    steps = await JsonDirStore(tmp_path / "runs").load_steps("order-42")
    assert steps == {"fetch": {"order": 42, "amount": 0}, "charge": "receipt-42"}

    # The run's record says it completed: a new process gets its result, runs nothing.
    second = App(url, calls)
    assert await second.process("42") == "receipt-42"
    assert calls == ["fetch", "charge"]
    record = await second.wf.get_run("order-42")
    assert record is not None
    assert (record.status, record.result) == ("completed", "receipt-42")
    await second.wf.close()


async def test_a_failed_run_resumes_after_its_last_checkpoint(url: str, tmp_path: Path) -> None:
    calls: list[str] = []
    failing = App(url, calls, fail_second_step=True)
    with pytest.raises(ConnectionError):
        await failing.process("7")
    record = await failing.wf.get_run("order-7")
    assert record is not None
    assert (record.status, record.error) == ("failed", "ConnectionError: payment service down")

    healthy = App(url, calls)
    assert await healthy.process("7") == "receipt-7"
    assert calls == ["fetch", "charge", "charge"]
    record = await healthy.wf.get_run("order-7")
    assert record is not None
    assert record.status == "completed"


async def test_a_signal_reaches_a_waiting_workflow_once(url: str) -> None:
    app = App(url, [])
    waiting = asyncio.create_task(app.approve("9"))
    assert await app.wf.complete("approve-9", "approval", {"approved": True}) is True
    assert await app.wf.complete("approve-9", "approval", {"approved": False}) is False
    assert await asyncio.wait_for(waiting, timeout=10) == {"approved": True}


# -- the store on its own -----------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> JsonDirStore:
    store = JsonDirStore(tmp_path / "runs")
    await store.setup()
    return store


AWKWARD_IDS = ["", ".", "..", "a/b", "../../etc/passwd", "A", "a", "ü-名前", "x" * 500]


async def test_any_id_is_a_safe_distinct_file(store: JsonDirStore, tmp_path: Path) -> None:
    for number, run_id in enumerate(AWKWARD_IDS):
        await store.set_step(run_id, "s", number)
    for number, run_id in enumerate(AWKWARD_IDS):
        assert await store.get_step(run_id, "s") == (True, number)
    # Everything stayed inside the store's directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.parametrize("value", [None, 0, False, "", [], {}])
async def test_falsy_values_are_found(store: JsonDirStore, value: object) -> None:
    assert await store.get_step("r", "s") == (False, None)
    await store.set_step("r", "s", value)
    assert await store.get_step("r", "s") == (True, value)
    assert await store.set_signal("r", "go", value) is True
    assert await store.get_signal("r", "go") == (True, value)


async def test_the_first_of_concurrent_signal_deliveries_wins(store: JsonDirStore) -> None:
    # Each set_signal runs in a worker thread: these race for real.
    delivered = await asyncio.gather(*(store.set_signal("r", "go", n) for n in range(20)))
    assert delivered.count(True) == 1
    assert await store.get_signal("r", "go") == (True, delivered.index(True))


async def test_files_are_private_and_no_temporary_file_is_left(
    store: JsonDirStore, tmp_path: Path
) -> None:
    await store.set_step("r", "s", 1)
    await store.set_step("r", "s", 2)
    await store.set_signal("r", "go", 1)
    await store.set_signal("r", "go", 2)
    await store.mark_run_done("r")
    paths = [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]
    assert not [p for p in paths if p.suffix == ".tmp"]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


async def test_data_outlives_the_store_object(store: JsonDirStore, tmp_path: Path) -> None:
    await store.set_step("r", "s", {"n": 1})
    await store.set_signal("r", "go", "yes")
    await store.close()
    reopened = JsonDirStore(tmp_path / "runs")
    await reopened.setup()
    assert await reopened.get_step("r", "s") == (True, {"n": 1})
    assert await reopened.get_signal("r", "go") == (True, "yes")
    assert await reopened.set_signal("r", "go", "no") is False


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("jsondir:///var/lib/app/runs", "/var/lib/app/runs"),
        ("jsondir://runs", "runs"),
        ("JSONDIR://runs/today", "runs/today"),
        ("jsondir:///srv/my%20runs", "/srv/my runs"),
    ],
)
def test_from_url(url: str, root: str) -> None:
    assert JsonDirStore.from_url(url).root == Path(root)


@pytest.mark.parametrize("url", ["jsondir://", "jsondir:/tmp/x", "memory:///tmp/x"])
def test_from_url_refuses_what_it_cannot_read(url: str) -> None:
    with pytest.raises(ValueError, match="jsondir:///path/to/dir"):
        JsonDirStore.from_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "jsondir://user:s3cret@/tmp/x",
        "jsondir://:s3cret@tmp/x",
        "jsondir://s3cret@/tmp/x",
        "jsondir://localhost:5432/tmp/x",
    ],
)
def test_from_url_refuses_credentials_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="take no user, password or port") as caught:
        JsonDirStore.from_url(url)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf])
def test_lock_timeout_must_be_finite_and_positive(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        JsonDirStore(tmp_path, lock_timeout=timeout)


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


async def test_a_stopped_process_holding_a_runs_lock_stalls_that_run_only(
    tmp_path: Path,
) -> None:
    store = JsonDirStore(tmp_path / "runs", lock_timeout=0.3)
    await store.setup()
    await store.set_step("x", "s", "before")
    # Each run has its own lock file, named like its data file.
    lock = tmp_path / "runs" / f"{hashlib.sha256(b'x').hexdigest()[:32]}.lock"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(lock), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), timeout=30) == b"locked\n"
        os.kill(child.pid, signal.SIGSTOP)  # as if stopped in the middle of a write of x

        # Another run, reads of run x and scans go on as if nothing happened.
        await asyncio.wait_for(store.set_step("y", "s", 1), timeout=2)
        assert await asyncio.wait_for(store.get_step("y", "s"), timeout=2) == (True, 1)
        assert await asyncio.wait_for(store.get_step("x", "s"), timeout=2) == (True, "before")
        await asyncio.wait_for(store.scan_runs("running"), timeout=2)

        # A write of run x gives up after lock_timeout, saying why.
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(store.set_step("x", "s", "after"), timeout=5)
        assert 0.3 <= time.monotonic() - started < 3
        message = str(caught.value)
        assert str(tmp_path / "runs") in message
        assert "'x'" in message
        assert "another process holds" in message
        assert await store.get_step("x", "s") == (True, "before")

        # A write cancelled while it waits for the lock is dropped, not done later.
        waiting = asyncio.create_task(store.set_step("x", "s", "cancelled"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        child.kill()  # a stopped process dies of SIGKILL too
        await child.wait()

    await asyncio.sleep(0.1)
    assert await store.get_step("x", "s") == (True, "before")
    # The holder gone, its lock is free again.
    await asyncio.wait_for(store.set_step("x", "s", "after"), timeout=5)
    assert await store.get_step("x", "s") == (True, "after")


async def test_a_scan_skips_a_file_deleted_while_it_lists(
    store: JsonDirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.claim_run("r", "wf", None, owner="worker", lease_seconds=30.0)
    real_glob = Path.glob

    def glob_with_a_vanished_file(path: Path, pattern: str) -> list[Path]:
        return [*real_glob(path, pattern), path / f"{'0' * 32}.json"]

    monkeypatch.setattr(Path, "glob", glob_with_a_vanished_file)
    runs, cursor = await store.scan_runs("running")
    assert [run.run_id for run in runs] == ["r"]
    assert cursor is None


# -- the conformance suite a third-party author runs --------------------------------


class TestJsonDirStoreContract(StoreContract):
    """The whole suite, with no capability off but change notification."""

    persistent = True

    async def make_store(self) -> Store:
        return JsonDirStore.from_url(f"jsondir://{self.tmp_path}/runs")
