"""The suite adapts to a minimal store: only the seed's seven abstract methods."""

from __future__ import annotations

import copy
from typing import Any

from durable import Store
from durable.testing import StoreContract


class SeedStyleStore(Store):
    """What a user of the seed wrote: dicts, no run records, no capabilities."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], Any] = {}
        self.signals: dict[tuple[str, str], Any] = {}
        self.runs: dict[str, str] = {}

    async def setup(self) -> None:
        return None

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        key = (run_id, step_id)
        return (True, copy.deepcopy(self.steps[key])) if key in self.steps else (False, None)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        self.steps[(run_id, step_id)] = copy.deepcopy(result)

    async def mark_run_done(self, run_id: str) -> None:
        self.runs[run_id] = "completed"

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        self.runs[run_id] = "failed"

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        key = (run_id, name)
        return (True, copy.deepcopy(self.signals[key])) if key in self.signals else (False, None)

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        if (run_id, name) in self.signals:
            return False
        self.signals[(run_id, name)] = copy.deepcopy(payload)
        return True


class TestSeedStyleStore(StoreContract):
    records_runs = False
    loads_steps = False
    manages_runs = False

    async def make_store(self) -> Store:
        return SeedStyleStore()
