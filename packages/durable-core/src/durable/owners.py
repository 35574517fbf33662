"""Who holds a run's lease, and whether that holder is known to be gone.

An owner id is one string, parsed from the right (a host name may contain ``:``)::

    HOST:PID:TOKEN:boot=BOOT_ID:pidns=DEV-INO

``HOST`` is ``socket.gethostname()``, ``PID`` ``os.getpid()``, ``TOKEN`` random hex (two
Workflows of one process differ), ``BOOT_ID`` the kernel's
``/proc/sys/kernel/random/boot_id`` and ``DEV-INO`` the ``st_dev`` and ``st_ino`` of
``/proc/self/ns/pid``: the PID namespace in which ``PID`` is a number. A part that
cannot be read is left empty (``boot=``, ``pidns=``), as outside Linux.

A pid means something only in its PID namespace, and a namespace's inode only within
one boot: two containers that share a host name and a database file, but not a PID
namespace, must not judge each other's live owners dead because ``os.kill(pid, 0)``
finds no such pid here. So :func:`owner_is_dead` says True (take the run over at once,
without waiting for its lease) only when

- ``HOST`` is this host, ``BOOT_ID`` this boot and ``DEV-INO`` this PID namespace, each
  known on both sides; ``PID`` is not this process, and no process ``PID`` exists; or
- outside Linux, where there are no PID namespaces to tell apart, when neither side
  knows a boot or a namespace (so both are alike), ``HOST`` is this host and ``PID``,
  not this process, does not exist: the host-and-pid rule of earlier versions.

Anything else may be alive, and its run is taken over only when its lease expires
(``lease_seconds``): a live run is never taken over. That includes

- ids of the old format ``HOST:PID:TOKEN``, written by earlier versions and still in
  databases. They do not say which namespace ``PID`` was in, so on Linux they are
  never judged dead by pid (their runs wait for the lease); outside Linux they are
  judged by host and pid, as before;
- another boot id on this host name (another machine of that name, or before a
  reboot: which one cannot be told), and one side knowing its boot or namespace while
  the other does not (a Linux process without ``/proc``);
- Windows, where ``os.kill(pid, 0)`` would not test but interrupt the process.

Earlier versions read a new id as the host ``HOST:PID:TOKEN`` with the pid
``boot=...``: never dead either, so they too wait for the lease of a new owner.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import sys
import uuid
from dataclasses import dataclass

_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_PID_NAMESPACE_FILE = "/proc/self/ns/pid"
# Where PID namespaces exist: not knowing ours there does not mean there are none.
_PID_NAMESPACES = sys.platform.startswith("linux")
_CAN_PROBE_PIDS = os.name != "nt"  # os.kill(pid, 0) sends CTRL_C_EVENT on Windows

_BOOT = re.compile(r"[0-9a-f-]+")
_PIDNS = re.compile(r"[0-9]+-[0-9]+")
_PID = re.compile(r"[1-9][0-9]{0,9}")
_MAX_PID = 2**31 - 1  # a C int: larger is no pid (os.kill would overflow)


@dataclass(frozen=True, slots=True)
class OwnerId:
    """A parsed owner id. ``boot`` and ``pidns`` are None when unknown.

    ``legacy`` marks the old ``HOST:PID:TOKEN`` format, which has neither.
    """

    host: str
    pid: int
    token: str
    boot: str | None = None
    pidns: str | None = None
    legacy: bool = False

    def __str__(self) -> str:
        head = f"{self.host}:{self.pid}:{self.token}"
        if self.legacy:
            return head
        return f"{head}:boot={self.boot or ''}:pidns={self.pidns or ''}"


@dataclass(frozen=True, slots=True)
class Here:
    """This process's host, boot and PID namespace (None: unknown)."""

    host: str
    boot: str | None
    pidns: str | None


def read_boot_id(path: str = _BOOT_ID_FILE) -> str | None:
    """The kernel's boot id, or None where it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(100).strip().lower()
    except (OSError, ValueError):
        return None
    return text if _BOOT.fullmatch(text) else None


def read_pid_namespace(path: str = _PID_NAMESPACE_FILE) -> str | None:
    """``DEV-INO`` of this process's PID namespace, or None where it cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{st.st_dev}-{st.st_ino}" if st.st_ino else None


@functools.lru_cache(maxsize=1)
def _here_for(pid: int) -> Here:
    # Keyed by pid: a forked child reads its own (it may be in another namespace).
    del pid
    return Here(socket.gethostname(), read_boot_id(), read_pid_namespace())


def here() -> Here:
    """Where this process runs, as owner ids name it."""
    return _here_for(os.getpid())


def local_owner_id(pid: int, token: str) -> str:
    """An owner id of this host, boot and PID namespace, for ``pid`` and ``token``."""
    place = here()
    return str(OwnerId(place.host, pid, token, place.boot, place.pidns))


def new_owner_id() -> str:
    """Who holds a lease: this process, on this host, boot and PID namespace."""
    return local_owner_id(os.getpid(), uuid.uuid4().hex[:12])


class _Forks:
    """How many forks made this process: 0 in the process that imported durable, then
    one more in each child (os.fork runs the hook in every child, multiprocessing's
    too). Reading it costs no system call, where os.getpid() is one on every call
    (~0.25 µs here), and an executor asks for its owner id several times per run."""

    count = 0

    @classmethod
    def one_more(cls) -> None:
        cls.count += 1


if hasattr(os, "register_at_fork"):  # no fork at all on Windows
    os.register_at_fork(after_in_child=_Forks.one_more)


def forks() -> int:
    """An id of this process among those forked from it: it changes in each child."""
    return _Forks.count


def parse_owner(owner: str | None) -> OwnerId | None:
    """The parts of an owner id of either format, or None when it is neither."""
    if not owner:
        return None
    parts = owner.rsplit(":", 4)
    if len(parts) == 5 and parts[3].startswith("boot=") and parts[4].startswith("pidns="):
        host, pid_text, token = parts[:3]
        boot, pidns = parts[3].removeprefix("boot="), parts[4].removeprefix("pidns=")
        if (boot and not _BOOT.fullmatch(boot)) or (pidns and not _PIDNS.fullmatch(pidns)):
            return None
        legacy = False
    else:
        parts = owner.rsplit(":", 2)
        if len(parts) != 3:
            return None
        host, pid_text, token = parts
        boot = pidns = ""
        legacy = True
    if not host or not token or not _PID.fullmatch(pid_text) or int(pid_text) > _MAX_PID:
        return None
    return OwnerId(host, int(pid_text), token, boot or None, pidns or None, legacy)


def _process_exists(pid: int) -> bool:
    """False only when ``pid`` is known not to exist in this PID namespace."""
    if not _CAN_PROBE_PIDS:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's process
        return True
    return True


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` was a process of this host, boot and PID namespace that is gone.

    False means "perhaps alive": the run waits for its lease (see the module docstring).
    """
    parsed = parse_owner(owner)
    if parsed is None or parsed.pid == os.getpid():
        return False
    place = here()
    if parsed.host != place.host:
        return False
    known = parsed.boot, parsed.pidns, place.boot, place.pidns
    if all(known):
        if (parsed.boot, parsed.pidns) != (place.boot, place.pidns):
            return False
    elif any(known) or _PID_NAMESPACES:
        return False
    return not _process_exists(parsed.pid)
