"""The third-party example store (examples/durable-example-store), installed as a
workspace member and selected by its URL scheme, as a user of a published plugin
would select it."""

import asyncio
import stat
from pathlib import Path

import pytest

from durable import Store, Workflow
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


# -- the conformance suite a third-party author runs --------------------------------


class TestJsonDirStoreContract(StoreContract):
    """The whole suite, with no capability off but change notification."""

    persistent = True

    async def make_store(self) -> Store:
        return JsonDirStore.from_url(f"jsondir://{self.tmp_path}/runs")
