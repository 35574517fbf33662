"""Owner ids: their format, and when an owner is judged dead by pid (issue #14).

An owner is dead only when it is of this host, this boot and this PID namespace, and
its pid, not ours, does not exist; anything else waits for the lease.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from durable import owners
from durable.owners import (
    Here,
    OwnerId,
    local_owner_id,
    new_owner_id,
    owner_is_dead,
    parse_owner,
)

OTHER_BOOT = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process that runs for the test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def knows_namespace() -> Here:
    """Where we run, when boot and PID namespace are known here (else skip)."""
    place = owners.here()
    if place.boot is None or place.pidns is None:
        pytest.skip("this system has no readable boot id or PID namespace")
    return place


def fake_here(monkeypatch: pytest.MonkeyPatch, place: Here, *, namespaces: bool) -> None:
    monkeypatch.setattr(owners, "here", lambda: place)
    monkeypatch.setattr(owners, "_PID_NAMESPACES", namespaces)


# -- format -------------------------------------------------------------------------


def test_a_new_owner_id_names_this_process_boot_and_namespace() -> None:
    owner = new_owner_id()
    parsed = parse_owner(owner)
    assert parsed is not None
    assert parsed.host == socket.gethostname()
    assert parsed.pid == os.getpid()
    assert len(parsed.token) == 12
    assert parsed.boot == owners.read_boot_id()
    assert parsed.pidns == owners.read_pid_namespace()
    assert not parsed.legacy
    assert str(parsed) == owner
    assert owner.startswith(f"{socket.gethostname()}:{os.getpid()}:")


def test_new_owner_ids_differ() -> None:
    assert new_owner_id() != new_owner_id()


def test_on_linux_the_boot_and_namespace_are_read() -> None:
    if not sys.platform.startswith("linux") or not os.path.exists("/proc/self/ns/pid"):
        pytest.skip("not Linux with /proc")
    place = owners.here()
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert place.boot == f.read().strip()
    st = os.stat("/proc/self/ns/pid")
    assert place.pidns == f"{st.st_dev}-{st.st_ino}"


@pytest.mark.parametrize("host", ["web-1", "web:1", "fe80::1", "a:1:b:2"])
def test_ids_parse_whatever_the_host_name(host: str) -> None:
    full = OwnerId(host, 42, "abc123", OTHER_BOOT, "4-4026531836")
    assert parse_owner(str(full)) == full
    assert str(full) == f"{host}:42:abc123:boot={OTHER_BOOT}:pidns=4-4026531836"
    unknown = OwnerId(host, 42, "abc123")
    assert str(unknown) == f"{host}:42:abc123:boot=:pidns="
    assert parse_owner(str(unknown)) == unknown


@pytest.mark.parametrize("host", ["web-1", "web:1", "a:1:b:2"])
def test_old_ids_still_parse(host: str) -> None:
    assert parse_owner(f"{host}:1234:abc123") == OwnerId(host, 1234, "abc123", legacy=True)
    assert str(OwnerId(host, 1234, "abc123", legacy=True)) == f"{host}:1234:abc123"


@pytest.mark.parametrize(
    "owner",
    [
        None,
        "",
        "host",
        "host:123",
        ":123:tok",
        "host:123:",
        "host:pid:tok",
        "host:0:tok",
        "host:-5:tok",
        "host:0123:tok",
        f"host:{2**40}:tok",
        "host:12:tok:boot=NOT A BOOT ID:pidns=",
        "host:12:tok:boot=:pidns=4:5",
        "host:12:tok:boot=:pidns=x-y",
        "host:12:tok:pidns=:boot=",
    ],
)
def test_what_is_no_owner_id_parses_as_none_and_is_not_dead(owner: str | None) -> None:
    assert parse_owner(owner) is None
    assert owner_is_dead(owner) is False


def test_earlier_versions_never_read_a_new_id_as_a_local_pid() -> None:
    """The parse of the versions before: a host that is not ours, a pid that is none."""
    host, _, pid_text = new_owner_id().rpartition(":")[0].rpartition(":")
    assert host != socket.gethostname()
    assert not pid_text.isdigit()


# -- who is dead --------------------------------------------------------------------


def test_a_gone_process_of_this_namespace_is_dead(knows_namespace: Here, dead_pid: int) -> None:
    assert owner_is_dead(local_owner_id(dead_pid, "abc123")) is True


def test_a_live_process_of_this_namespace_is_not_dead(knows_namespace: Here, live_pid: int) -> None:
    assert owner_is_dead(local_owner_id(live_pid, "abc123")) is False


def test_our_own_pid_is_not_dead() -> None:
    assert owner_is_dead(new_owner_id()) is False
    assert owner_is_dead(local_owner_id(os.getpid(), "other-workflow")) is False
    assert owner_is_dead(f"{socket.gethostname()}:{os.getpid()}:abc123") is False


def test_a_gone_pid_of_another_boot_is_not_dead(knows_namespace: Here, dead_pid: int) -> None:
    owner = OwnerId(knows_namespace.host, dead_pid, "abc123", OTHER_BOOT, knows_namespace.pidns)
    assert owner_is_dead(str(owner)) is False


def test_a_gone_pid_of_another_namespace_is_not_dead(knows_namespace: Here, dead_pid: int) -> None:
    owner = OwnerId(knows_namespace.host, dead_pid, "abc123", knows_namespace.boot, "4-1")
    assert owner_is_dead(str(owner)) is False


def test_a_gone_pid_of_another_host_is_not_dead(knows_namespace: Here, dead_pid: int) -> None:
    owner = OwnerId("elsewhere", dead_pid, "abc123", knows_namespace.boot, knows_namespace.pidns)
    assert owner_is_dead(str(owner)) is False


def test_an_old_id_is_not_judged_dead_where_namespaces_exist(
    monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    old = f"{socket.gethostname()}:{dead_pid}:abc123"
    place = Here(socket.gethostname(), OTHER_BOOT, "4-4026531836")
    fake_here(monkeypatch, place, namespaces=True)
    assert owner_is_dead(old) is False  # which namespace was the pid in? the lease says
    fake_here(monkeypatch, Here(place.host, None, None), namespaces=True)
    assert owner_is_dead(old) is False  # Linux without /proc: still unknown


def test_an_owner_that_does_not_know_its_namespace_is_not_dead_to_one_that_does(
    knows_namespace: Here, dead_pid: int
) -> None:
    assert owner_is_dead(str(OwnerId(knows_namespace.host, dead_pid, "abc123"))) is False
    half = OwnerId(knows_namespace.host, dead_pid, "abc123", knows_namespace.boot, None)
    assert owner_is_dead(str(half)) is False


def test_where_we_do_not_know_our_namespace_no_owner_that_does_is_dead(
    monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    host = socket.gethostname()
    fake_here(monkeypatch, Here(host, None, None), namespaces=False)
    owner = OwnerId(host, dead_pid, "abc123", OTHER_BOOT, "4-4026531836")
    assert owner_is_dead(str(owner)) is False


def test_without_namespaces_host_and_pid_decide_as_before(
    monkeypatch: pytest.MonkeyPatch, dead_pid: int, live_pid: int
) -> None:
    """Outside Linux neither side knows a boot or a namespace: host and pid decide."""
    host = socket.gethostname()
    fake_here(monkeypatch, Here(host, None, None), namespaces=False)
    assert owner_is_dead(str(OwnerId(host, dead_pid, "abc123"))) is True
    assert owner_is_dead(f"{host}:{dead_pid}:abc123") is True  # an old id too
    assert owner_is_dead(str(OwnerId(host, live_pid, "abc123"))) is False
    assert owner_is_dead(str(OwnerId("elsewhere", dead_pid, "abc123"))) is False


def test_pids_are_not_probed_where_that_would_signal_them(
    monkeypatch: pytest.MonkeyPatch, dead_pid: int
) -> None:
    """On Windows ``os.kill(pid, 0)`` interrupts the process: no owner is judged by pid."""
    host = socket.gethostname()
    fake_here(monkeypatch, Here(host, None, None), namespaces=False)
    monkeypatch.setattr(owners, "_CAN_PROBE_PIDS", False)

    def kill(pid: int, signal: int) -> None:
        pytest.fail(f"os.kill({pid}, {signal}) was called")

    monkeypatch.setattr(os, "kill", kill)
    assert owner_is_dead(str(OwnerId(host, dead_pid, "abc123"))) is False


def test_an_unreadable_boot_id_or_namespace_is_unknown(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "missing")
    assert owners.read_boot_id(missing) is None
    assert owners.read_pid_namespace(missing) is None
    garbage = os.path.join(tmp_path, "garbage")
    with open(garbage, "w") as f:
        f.write("not:a boot id\n")
    assert owners.read_boot_id(garbage) is None
