"""A python-durable store that keeps each run as one JSON file in a directory.

    from durable import Workflow

    wf = Workflow("app", db="jsondir:///var/lib/app/runs")

This package is the example for authors of third-party stores. It subclasses
:class:`durable.DataStore` and implements its eight data primitives; durable's core
supplies every rule of a run on top of them (claims, leases, take-overs, fencing,
cancel, reopen, signals first-write-wins). It registers the ``jsondir`` URL scheme
through the ``durable.stores`` entry point in its ``pyproject.toml``.

Each run is the file ``<root>/<hash of the run id>.json``: ``{"run": <record or
null>, "steps": [...], "signals": [...]}``. A write (compare-and-set) or delete holds
an exclusive ``flock`` on the run's own ``<hash>.lock`` while it reads and rewrites
the file, which makes it atomic across the processes of one machine; ``flock`` is
unreliable on network file systems, so keep the directory on a local disk. The lock is
polled, never waited on in a thread: a process stopped while it holds one (SIGSTOP, a
debugger) stalls that run only, and after ``lock_timeout`` seconds a write of that run
raises :class:`~durable.StoreError`. Reads take no lock: a file is only ever replaced
whole, by a rename, so a reader sees the old file or the new one, never a mix. Lock
files stay when a run is deleted (removing one could let two writers lock two files).
"""

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, cast
from urllib.parse import unquote

from durable import DataStore, RunData, RunRecord, RunStatus, SignalRecord, StepRecord, StoreError
from durable.datastore import signal_from_json, signal_to_json, step_from_json, step_to_json

__all__ = ["SCHEME", "JsonDirStore"]
__version__ = "0.2.0"

SCHEME = "jsondir"
T = TypeVar("T")


class JsonDirStore(DataStore):
    """Runs as JSON files under ``root`` (``db="jsondir:///path/to/dir"``).

    A file is replaced whole (written aside, flushed, renamed), so a crash leaves the
    old run or the new one. Reads, writes and fsyncs run in a worker thread: an
    ``fsync`` can take milliseconds, and the event loop must not wait for it. Only a
    run's lock is tried on the event loop (an open and a non-blocking ``flock``).
    ``lock_timeout`` is how long a write waits for a run's lock before it gives up.
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 10.0) -> None:
        if not 0 < lock_timeout < float("inf"):  # NaN fails too
            raise ValueError(f"lock_timeout must be finite seconds > 0, got {lock_timeout!r}")
        self.root, self.lock_timeout = Path(root), lock_timeout

    @classmethod
    def from_url(cls, url: str) -> Self:
        """``jsondir:///abs/dir`` is the absolute path ``/abs/dir``; ``jsondir://rel/dir``
        is relative to the working directory."""
        scheme, sep, path = url.partition("://")
        if scheme.lower() != SCHEME or not sep or not path:
            raise ValueError(f"expected a URL like {SCHEME}:///path/to/dir, got {url!r}")
        if {"@", ":"} & set(path.partition("/")[0]):  # never echo a URL that has a password
            raise ValueError(f"{SCHEME} URLs take no user, password or port")
        return cls(unquote(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    async def setup(self) -> None:
        # Checkpoints may hold private data: only the owner may read them.
        await asyncio.to_thread(self.root.mkdir, mode=0o700, parents=True, exist_ok=True)

    # -- the eight primitives --------------------------------------------------------

    async def read_run(self, run_id: str) -> RunData | None:
        doc = await asyncio.to_thread(self._load, run_id)
        return None if doc["run"] is None else RunData.from_json(doc["run"])

    async def write_run(self, data: RunData, *, expected: int | None) -> bool:
        def write() -> bool:
            doc = self._load(data.record.run_id)
            if (doc["run"]["version"] if doc["run"] else None) != expected:
                return False  # somebody wrote since the caller read: compare-and-set fails
            self._save(data.record.run_id, {**doc, "run": data.to_json()})
            return True

        return await self._locked(data.record.run_id, write)

    async def read_steps(self, run_id: str) -> Sequence[StepRecord]:
        return [step_from_json(s) for s in (await asyncio.to_thread(self._load, run_id))["steps"]]

    async def write_step(self, run_id: str, step: StepRecord, *, expected: int | None) -> bool:
        def write() -> bool:
            doc = self._load(run_id)
            if expected is not None and expected != (doc["run"]["version"] if doc["run"] else None):
                return False  # the run changed hands (or state) since the caller read it
            steps = [s for s in doc["steps"] if s["step_id"] != step.step_id]
            self._save(run_id, {**doc, "steps": [*steps, step_to_json(step)]})
            return True

        return await self._locked(run_id, write)

    async def read_signals(self, run_id: str) -> Sequence[SignalRecord]:
        return [
            signal_from_json(s) for s in (await asyncio.to_thread(self._load, run_id))["signals"]
        ]

    async def add_signal(self, run_id: str, signal: SignalRecord) -> bool:
        def add() -> bool:
            doc = self._load(run_id)
            if any(s["name"] == signal.name for s in doc["signals"]):
                return False  # first write wins
            self._save(run_id, {**doc, "signals": [*doc["signals"], signal_to_json(signal)]})
            return True

        return await self._locked(run_id, add)

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        # No lock: a file is only ever replaced whole, so each read sees an old or a new run.
        docs = await asyncio.to_thread(lambda: [_read(path) for path in self.root.glob("*.json")])
        runs = [RunData.from_json(doc["run"]).record for doc in docs if doc["run"]]
        after = tuple(json.loads(cursor or "[]"))  # (): before every run
        page = sorted((r for r in runs if r.status == status and _order(r) > after), key=_order)
        return page[:limit], json.dumps(_order(page[limit - 1])) if len(page) > limit else None

    async def delete_run(self, run_id: str) -> None:
        await self._locked(run_id, lambda: self._path(run_id).unlink(missing_ok=True))

    # -- files -----------------------------------------------------------------------

    async def _locked(self, run_id: str, operation: Callable[[], T]) -> T:
        """Run ``operation`` in a worker thread, holding the run's lock until it ends.

        The lock is tried without blocking (an open of a local file and a ``flock``,
        both quick), between sleeps of 1 ms doubling to 50 ms, for ``lock_timeout``
        seconds: a blocking ``flock`` in a thread could not be cancelled, and would wait
        for a stopped holder forever. Nothing is held while waiting, so a cancelled
        caller just stops; once locked, the thread owns the lock and releases it when
        ``operation`` has ended, even if the caller was cancelled meanwhile.
        """
        deadline, pause = time.monotonic() + self.lock_timeout, 0.001
        while (fd := _lock(self._path(run_id, ".lock"))) is None and time.monotonic() < deadline:
            await asyncio.sleep(pause)  # no Event to wait on: the holder is another process
            pause = min(2 * pause, 0.05)
        if fd is not None:  # no await between locking and handing the lock to the thread
            return await asyncio.to_thread(_then_close, fd, operation)
        raise StoreError(f"{self!r}: another process holds the lock of run {run_id!r} (stopped?)")

    # Run ids may hold any character ("/", "..", "", "A" next to "a" on a
    # case-insensitive disk), so file names are hashes; the files carry the real ids.
    def _path(self, run_id: str, suffix: str = ".json") -> Path:
        return self.root / f"{hashlib.sha256(run_id.encode()).hexdigest()[:32]}{suffix}"

    def _load(self, run_id: str) -> dict[str, Any]:
        return _read(self._path(run_id))

    def _save(self, run_id: str, doc: dict[str, Any]) -> None:
        """Write aside (owner-only, flushed to disk), then rename over the old file."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(run_id))
        finally:
            Path(tmp).unlink(missing_ok=True)
        # The new name is durable once its directory is synced too.
        _then_close(directory := os.open(self.root, os.O_RDONLY), lambda: os.fsync(directory))


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError):  # none yet, or deleted since listed
        return cast(dict[str, Any], json.loads(path.read_text("utf-8")))
    return {"run": None, "steps": [], "signals": []}


def _lock(path: Path) -> int | None:
    """A file descriptor holding the lock of ``path``; None while another one holds it.

    Each open of the file is its own lock, so coroutines of one process exclude each
    other too. The lock belongs to the open file, not to a descriptor: the duplicate
    returned keeps it after ``file`` closes, and closing the duplicate releases it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with open(fd, "rb") as file, contextlib.suppress(BlockingIOError):  # held elsewhere: None
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.dup(file.fileno())
    return None


def _then_close(fd: int, operation: Callable[[], T]) -> T:
    try:
        return operation()
    finally:
        os.close(fd)  # for a lock: released only once the operation is done


def _order(record: RunRecord) -> tuple[float, str]:
    return (record.created_at.timestamp() if record.created_at else 0.0), record.run_id
