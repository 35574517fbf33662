"""A python-durable store that keeps each run as a directory of JSON files.

    from durable import Workflow

    wf = Workflow("app", db="jsondir:///var/lib/app/runs")

This package is an example for authors of third-party stores: it implements the
seed's seven abstract methods of :class:`durable.Store`, plus ``load_steps`` (replay a
run with one call), ``close`` and ``from_url``, and registers the ``jsondir`` URL
scheme through the ``durable.stores`` entry point in its ``pyproject.toml``.

Layout under the root directory (names are hashes; each file holds the real ids)::

    <run>/steps/<step>.json      {"step_id": "charge#1", "attempt": 2, "result": ...}
    <run>/signals/<name>.json    {"name": "approval", "payload": ...}
    <run>/status.json            {"status": "failed", "error": "..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from durable import Store

__all__ = ["SCHEME", "JsonDirStore"]
__version__ = "0.1.0"

SCHEME = "jsondir"


class JsonDirStore(Store):
    """Checkpoints as JSON files under ``root`` (``db="jsondir:///path/to/dir"``).

    Every file appears complete or not at all, so a crash at any moment leaves either
    the old state or the new one. File I/O runs in a worker thread: an ``fsync`` can
    take milliseconds, and the event loop must not wait for it.
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

    # -- the Store protocol ----------------------------------------------------------

    async def setup(self) -> None:
        # Checkpoints may hold private data: only the owner may read them.
        await asyncio.to_thread(_make_dirs, self.root)

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        doc = await asyncio.to_thread(_read, self._step_path(run_id, step_id))
        return (False, None) if doc is None else (True, doc["result"])

    async def load_steps(self, run_id: str) -> Mapping[str, Any]:
        return await asyncio.to_thread(self._load_steps, run_id)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        doc = {"step_id": step_id, "attempt": attempt, "result": result}
        await asyncio.to_thread(_publish, self._step_path(run_id, step_id), doc, replace=True)

    async def mark_run_done(self, run_id: str) -> None:
        doc = {"status": "completed"}
        await asyncio.to_thread(_publish, self._run_dir(run_id) / "status.json", doc, replace=True)

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        doc = {"status": "failed", "error": error}
        await asyncio.to_thread(_publish, self._run_dir(run_id) / "status.json", doc, replace=True)

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        doc = await asyncio.to_thread(_read, self._signal_path(run_id, name))
        return (False, None) if doc is None else (True, doc["payload"])

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        doc = {"name": name, "payload": payload}
        return await asyncio.to_thread(
            _publish, self._signal_path(run_id, name), doc, replace=False
        )

    # -- files -----------------------------------------------------------------------

    # Ids may hold any character ("/", "..", "", "A" next to "a" on a case-insensitive
    # disk), so file names are hashes of them; the documents carry the real ids.
    def _run_dir(self, run_id: str) -> Path:
        return self.root / _digest(run_id)

    def _step_path(self, run_id: str, step_id: str) -> Path:
        return self._run_dir(run_id) / "steps" / f"{_digest(step_id)}.json"

    def _signal_path(self, run_id: str, name: str) -> Path:
        return self._run_dir(run_id) / "signals" / f"{_digest(name)}.json"

    def _load_steps(self, run_id: str) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        for path in (self._run_dir(run_id) / "steps").glob("*.json"):
            doc = _read(path)
            if doc is not None:
                steps[doc["step_id"]] = doc["result"]
        return steps


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return None
    return doc


def _publish(path: Path, doc: dict[str, Any], *, replace: bool) -> bool:
    """Write ``doc`` to ``path`` all at once; with ``replace=False`` only if it is new.

    The document goes to a temporary file that is flushed to disk before it gets its
    final name, so readers never see half a file. ``os.replace`` overwrites;
    ``os.link`` fails when the name exists (the exclusive create of ``O_EXCL``, but
    for a file already complete), which makes the first writer win. Returns False
    when ``replace=False`` and the file was already there.
    """
    _make_dirs(path.parent)
    # mkstemp creates the file readable by its owner only; the name ends in .tmp
    # so that load_steps' "*.json" never picks up a file being written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _make_dirs(path: Path) -> None:
    # Like mkdir -p, with mode 0o700 on every new directory, and each new entry
    # synced: a checkpoint in a directory that vanishes after a power cut was lost.
    if path.is_dir():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # A new name is durable only once its directory is synced (POSIX; Windows
    # cannot open a directory, and its renames are durable on their own).
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
