"""A python-durable store that keeps each run as one JSON file in a directory.

    from durable import Workflow

    wf = Workflow("app", db="jsondir:///var/lib/app/runs")

This package is the example for authors of third-party stores. It subclasses
:class:`durable.DataStore` and implements its eight data primitives; durable's core
supplies every rule of a run on top of them (claims, leases, take-overs, fencing,
cancel, reopen, signals first-write-wins). It registers the ``jsondir`` URL scheme
through the ``durable.stores`` entry point in its ``pyproject.toml``.

Each run is the file ``<root>/<hash of the run id>.json``: ``{"run": <record or
null>, "steps": [...], "signals": [...]}``. Every primitive holds an exclusive lock
on ``<root>/.lock`` (``flock``) while it reads or rewrites a file, which makes each
compare-and-set atomic across the processes of one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from durable import DataStore, RunData, RunRecord, RunStatus, SignalRecord, StepRecord
from durable.datastore import signal_from_json, signal_to_json, step_from_json, step_to_json

__all__ = ["SCHEME", "JsonDirStore"]
__version__ = "0.2.0"

SCHEME = "jsondir"
T = TypeVar("T")


class JsonDirStore(DataStore):
    """Runs as JSON files under ``root`` (``db="jsondir:///path/to/dir"``).

    A file is replaced whole (written aside, flushed, renamed), so a crash leaves the
    old run or the new one. File I/O runs in a worker thread: an ``fsync`` can take
    milliseconds, and the event loop must not wait for it.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def from_url(cls, url: str) -> JsonDirStore:
        """``jsondir:///abs/dir`` is the absolute path ``/abs/dir``; ``jsondir://rel/dir``
        is relative to the working directory."""
        scheme, sep, path = url.partition("://")
        if scheme.lower() != SCHEME or not sep or not path:
            raise ValueError(f"expected a URL like {SCHEME}:///path/to/dir, got {url!r}")
        return cls(unquote(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    async def setup(self) -> None:
        # Checkpoints may hold private data: only the owner may read them.
        await asyncio.to_thread(self.root.mkdir, mode=0o700, parents=True, exist_ok=True)

    # -- the eight primitives --------------------------------------------------------

    async def read_run(self, run_id: str) -> RunData | None:
        doc = await self._locked(lambda: self._load(run_id))
        return None if doc["run"] is None else RunData.from_json(doc["run"])

    async def write_run(self, data: RunData, *, expected: int | None) -> bool:
        def write() -> bool:
            doc = self._load(data.record.run_id)
            if (doc["run"]["version"] if doc["run"] else None) != expected:
                return False  # somebody wrote since the caller read: compare-and-set fails
            self._save(data.record.run_id, {**doc, "run": data.to_json()})
            return True

        return await self._locked(write)

    async def read_steps(self, run_id: str) -> Sequence[StepRecord]:
        doc = await self._locked(lambda: self._load(run_id))
        return [step_from_json(step) for step in doc["steps"]]

    async def write_step(self, run_id: str, step: StepRecord, *, expected: int | None) -> bool:
        def write() -> bool:
            doc = self._load(run_id)
            version = doc["run"]["version"] if doc["run"] else None
            if expected is not None and version != expected:
                return False  # the run changed hands (or state) since the caller read it
            steps = [s for s in doc["steps"] if s["step_id"] != step.step_id]
            self._save(run_id, {**doc, "steps": [*steps, step_to_json(step)]})
            return True

        return await self._locked(write)

    async def read_signals(self, run_id: str) -> Sequence[SignalRecord]:
        doc = await self._locked(lambda: self._load(run_id))
        return [signal_from_json(signal) for signal in doc["signals"]]

    async def add_signal(self, run_id: str, signal: SignalRecord) -> bool:
        def add() -> bool:
            doc = self._load(run_id)
            if any(s["name"] == signal.name for s in doc["signals"]):
                return False  # first write wins
            self._save(run_id, {**doc, "signals": [*doc["signals"], signal_to_json(signal)]})
            return True

        return await self._locked(add)

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        def scan() -> list[RunRecord]:
            docs = (json.loads(path.read_text("utf-8")) for path in self._files())
            return [
                RunData.from_json(doc["run"]).record
                for doc in docs
                if doc["run"] and doc["run"]["record"]["status"] == status
            ]

        after = None if cursor is None else tuple(json.loads(cursor))
        runs = sorted(await self._locked(scan), key=_created_key)
        page = [run for run in runs if after is None or _created_key(run) > after][:limit]
        return page, json.dumps(_created_key(page[-1])) if len(page) == limit else None

    async def delete_run(self, run_id: str) -> None:
        await self._locked(lambda: self._path(run_id).unlink(missing_ok=True))

    # -- files -----------------------------------------------------------------------

    async def _locked(self, operation: Callable[[], T]) -> T:
        def run() -> T:
            with _flock(self.root / ".lock"):
                return operation()

        return await asyncio.to_thread(run)

    # Run ids may hold any character ("/", "..", "", "A" next to "a" on a
    # case-insensitive disk), so file names are hashes; the files carry the real ids.
    def _path(self, run_id: str) -> Path:
        return self.root / f"{hashlib.sha256(run_id.encode()).hexdigest()[:32]}.json"

    def _files(self) -> Iterator[Path]:
        return self.root.glob("*.json")

    def _load(self, run_id: str) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self._path(run_id).read_text("utf-8"))
        except FileNotFoundError:
            return {"run": None, "steps": [], "signals": []}
        return doc

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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        directory = os.open(self.root, os.O_RDONLY)  # the new name is durable once its
        try:  # directory is synced too
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def _flock(path: Path) -> Generator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # each open file is its own lock: threads too
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _created_key(record: RunRecord) -> tuple[float, str]:
    created = 0.0 if record.created_at is None else record.created_at.timestamp()
    return created, record.run_id
