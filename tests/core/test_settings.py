"""Bad settings are refused where they are given, with the setting, the value and the
allowed range in the message (issue #14)."""

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from durable import DurableError, InMemoryStore, SignalTimeoutError, Workflow
from durable.backoff import constant, exponential, linear
from durable.cli import main as cli_main
from durable.settings import (
    SettingError,
    SettingTypeError,
    finite_seconds,
    fraction,
    non_negative_int,
    non_negative_seconds,
    positive_int,
    positive_seconds,
)
from durable.task import Task

NAN, INF = math.nan, math.inf


def refused(
    call: Callable[[], Any], *words: str, error: type[Exception] = SettingError
) -> SettingError:
    """Run ``call``, which must raise ``error``; every word must be in its message."""
    with pytest.raises(error) as info:
        call()
    exc = info.value
    assert isinstance(exc, ValueError)  # every refusal is a ValueError ...
    assert isinstance(exc, DurableError)  # ... and one of durable's errors
    for word in words:
        assert word in str(exc), (word, str(exc))
    assert isinstance(exc, SettingError)
    return exc


# -- Workflow(...) --------------------------------------------------------------------


def test_a_nan_lease_is_refused() -> None:
    # The heartbeat renews every lease_seconds / 3: a nan lease made it spin at 100 % CPU.
    refused(lambda: Workflow("app", db=InMemoryStore(), lease_seconds=NAN), "lease_seconds", "nan")


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, NAN, INF, -INF, 1e-9, 0.099, 1e300])
def test_a_lease_must_be_from_a_tenth_of_a_second_to_a_year(value: float) -> None:
    # A lease of 1e-9 s renewed itself 24,000 times a second; 1e300 never runs out.
    exc = refused(
        lambda: Workflow("app", db=InMemoryStore(), lease_seconds=value),
        "lease_seconds",
        repr(value),
        "from 0.1 to 3.1536e+07",
    )
    assert not isinstance(exc, TypeError)


@pytest.mark.parametrize("value", [True, "30", None])
def test_a_lease_of_the_wrong_type_is_refused(value: Any) -> None:
    exc = refused(
        lambda: Workflow("app", db=InMemoryStore(), lease_seconds=value),
        "lease_seconds",
        repr(value),
        error=SettingTypeError,
    )
    assert isinstance(exc, TypeError)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("default_retries", -1),
        ("default_retries", True),
        ("default_retries", False),
        ("default_retries", 1.0),
        ("default_retries", NAN),
        ("default_retries", "3"),
        ("max_recoveries", -1),
        ("max_recoveries", True),
        ("max_recoveries", 2.5),
        ("max_recoveries", INF),
    ],
)
def test_counts_must_be_ints_of_0_or_more(setting: str, value: Any) -> None:
    refused(
        lambda: Workflow("app", db=InMemoryStore(), **{setting: value}),
        setting,
        repr(value),
        "an int of 0 or more",
    )


def test_the_default_backoff_must_be_callable() -> None:
    refused(
        lambda: Workflow("app", db=InMemoryStore(), default_backoff=5),  # type: ignore[arg-type]
        "default_backoff",
        "callable",
    )


def test_a_bad_setting_is_refused_before_a_store_is_made(tmp_path: Any) -> None:
    path = tmp_path / "never.db"
    refused(lambda: Workflow("app", db=str(path), lease_seconds=-1), "lease_seconds")
    assert not path.exists()


def test_the_edges_of_the_ranges_are_accepted() -> None:
    wf = Workflow("app", db=InMemoryStore(), default_retries=0, lease_seconds=0.1, max_recoveries=0)
    assert wf.default_retries == 0
    Workflow("app", db=InMemoryStore(), lease_seconds=365 * 24 * 3600)  # a year


# -- @wf.task(...) --------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, -100, True, 1.5, NAN, "2"])
def test_task_retries_must_be_an_int_of_0_or_more(value: Any) -> None:
    wf = Workflow("app", db=InMemoryStore())

    def decorate() -> Any:
        @wf.task(retries=value)
        async def step() -> None:
            return None

        return step

    refused(decorate, "retries", repr(value), "an int of 0 or more")


def test_task_backoff_must_be_callable() -> None:
    wf = Workflow("app", db=InMemoryStore())
    refused(lambda: wf.task(backoff=3), "backoff", "callable")  # type: ignore[call-overload]


def test_a_task_made_directly_checks_its_retries() -> None:
    async def step() -> None:
        return None

    refused(lambda: Task(step, name="step", retries=-1, backoff=constant(0)), "'step'", "-1")


async def test_task_retries_of_0_run_once(wf: Workflow) -> None:
    calls = 0

    @wf.task(retries=0)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await flaky()
    assert calls == 1


# -- backoff strategies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: exponential(base=-1), ["base", "-1"]),
        (lambda: exponential(base=NAN), ["base", "nan"]),
        (lambda: exponential(base=INF), ["base", "inf"]),
        (lambda: exponential(max=-1), ["max", "-1"]),
        (lambda: exponential(max=NAN), ["max", "nan"]),
        (lambda: exponential(jitter=-0.1), ["jitter", "-0.1", "0 <= value <= 1"]),
        (lambda: exponential(jitter=1.5), ["jitter", "1.5"]),
        (lambda: exponential(jitter=NAN), ["jitter", "nan"]),
        (lambda: linear(start=-1), ["start", "-1"]),
        (lambda: linear(step=-2), ["step", "-2"]),
        (lambda: linear(step=NAN), ["step", "nan"]),
        (lambda: linear(start=INF), ["start", "inf"]),
        (lambda: constant(-1), ["seconds", "-1"]),
        (lambda: constant(NAN), ["seconds", "nan"]),
        (lambda: constant(INF), ["seconds", "inf"]),
        (lambda: constant(5, jitter=2), ["jitter", "2"]),
        (lambda: constant(True), ["seconds", "True"]),
    ],
)
def test_bad_backoff_parameters_are_refused(make: Callable[[], Any], words: list[str]) -> None:
    refused(make, *words)


def test_backoff_edges_are_accepted() -> None:
    assert exponential(max=INF)(3) == 16  # no cap
    assert exponential(base=0)(3) == 0
    assert constant(0, jitter=1)(0) == 0
    assert linear(start=0, step=0)(9) == 0


def test_a_float_base_does_not_overflow_after_many_retries() -> None:
    # 2.0 ** 5001 raised OverflowError: the cap applies instead.
    assert exponential(base=2.0, max=60)(5000) == 60


# -- durable waits ----------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [NAN, INF, -INF])
async def test_a_sleep_of_nan_or_inf_is_refused(wf: Workflow, seconds: float) -> None:
    @wf.workflow(id="r")
    async def flow() -> None:
        await wf.sleep(seconds)

    with pytest.raises(SettingError) as info:
        await asyncio.wait_for(flow(), 2)
    assert "wf.sleep" in str(info.value)
    assert repr(seconds) in str(info.value)
    # Refused before a step was taken: nothing is checkpointed for the sleep.
    assert await wf.store.load_steps("r") == {}


async def test_a_negative_sleep_is_already_due(wf: Workflow) -> None:
    @wf.workflow(id="r")
    async def flow() -> str:
        await wf.sleep(-5)
        return "woke"

    started = time.monotonic()
    assert await asyncio.wait_for(flow(), 2) == "woke"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("timeout", [NAN, INF, -INF])
async def test_a_signal_timeout_of_nan_or_inf_is_refused(wf: Workflow, timeout: float) -> None:
    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("approval", poll=0.05, timeout=timeout)

    with pytest.raises(SettingError) as info:
        await asyncio.wait_for(flow(), 2)
    assert "timeout" in str(info.value)
    assert repr(timeout) in str(info.value)
    assert await wf.store.load_steps("r") == {}  # no deadline was checkpointed


@pytest.mark.parametrize("poll", [0, -1, NAN, INF])
async def test_a_bad_signal_poll_is_refused(wf: Workflow, poll: float) -> None:
    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("approval", poll=poll)

    with pytest.raises(SettingError) as info:
        await asyncio.wait_for(flow(), 2)
    assert "poll" in str(info.value)
    assert repr(poll) in str(info.value)


async def test_a_negative_signal_timeout_has_already_expired(wf: Workflow) -> None:
    @wf.workflow(id="order-{n}")
    async def flow(n: int) -> Any:
        return await wf.signal("approval", poll=0.05, timeout=-1)

    with pytest.raises(SignalTimeoutError):
        await asyncio.wait_for(flow(1), 2)
    # A payload delivered before the wait is still taken.
    await wf.complete("order-2", "approval", "yes")
    assert await asyncio.wait_for(flow(2), 2) == "yes"


# -- worker, listing, retention -----------------------------------------------------------


@pytest.mark.parametrize("poll", [0, -1, NAN, INF, True])
def test_a_bad_worker_poll_is_refused_where_it_is_given(poll: Any) -> None:
    wf = Workflow("app", db=InMemoryStore())
    # At wf.worker(...), not at `async with`.
    refused(lambda: wf.worker(poll=poll), "poll", repr(poll))


async def test_a_negative_list_limit_is_refused(wf: Workflow) -> None:
    with pytest.raises(SettingError, match="limit"):
        await wf.list_runs(limit=-1)
    assert list(await wf.list_runs(limit=0)) == []


async def test_a_negative_retention_age_is_refused(wf: Workflow) -> None:
    with pytest.raises(SettingError, match="older_than"):
        await wf.delete_runs(older_than=dt.timedelta(days=-1))
    with pytest.raises(SettingTypeError, match="older_than"):
        await wf.delete_runs(older_than="7d")  # type: ignore[arg-type]
    assert await wf.delete_runs(older_than=dt.timedelta(0)) == 0


def test_the_cli_refuses_a_negative_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["runs", "list", "--limit", "-1", "--db", "memory://"])
    assert info.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_a_bad_sqlite_busy_timeout_in_the_url_is_refused() -> None:
    sqlite = pytest.importorskip("durable_sqlite")
    for value in ("nan", "-1", "inf", "soon"):
        with pytest.raises(ValueError, match="busy_timeout") as info:
            sqlite.SQLiteStore.from_url(f"sqlite:///x.db?busy_timeout={value}")
        assert value in str(info.value)


# -- the checks themselves ------------------------------------------------------------


def test_the_checks_return_the_value() -> None:
    assert positive_seconds("s", 2) == 2.0
    assert isinstance(positive_seconds("s", 2), float)
    assert non_negative_seconds("s", 0) == 0.0
    assert non_negative_seconds("s", INF, allow_inf=True) == INF
    assert finite_seconds("s", -3) == -3.0
    assert fraction("f", 1) == 1.0
    assert non_negative_int("n", 0) == 0
    assert positive_int("n", 1) == 1


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (positive_seconds, 0),
        (non_negative_seconds, -0.1),
        (non_negative_seconds, INF),
        (finite_seconds, NAN),
        (fraction, 1.01),
        (non_negative_int, -1),
        (positive_int, 0),
    ],
)
def test_each_check_names_the_setting_and_the_value(
    check: Callable[[str, Any], Any], value: Any
) -> None:
    refused(lambda: check("my_setting", value), "my_setting", repr(value))


def test_non_negative_seconds_with_inf_still_refuses_nan() -> None:
    refused(lambda: non_negative_seconds("cap", NAN, allow_inf=True), "cap", "nan")
