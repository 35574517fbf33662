"""Steps: ``get_step``, ``set_step``, ``load_steps``, ``checkpoint_step``, ``list_steps``."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UnsupportedOperation
from ..store import StepRecord, Store
from ._harness import FALSY, LIVE, NESTED, ODD_IDS, UNICODE, ContractHarness, store_test


class StepChecks(ContractHarness):
    """Steps: ``get_step``, ``set_step``, ``load_steps``, ``checkpoint_step``, ``list_steps``."""

    # -- steps ------------------------------------------------------------------------

    @store_test()
    async def test_get_step_missing_is_not_found(self, store: Store) -> None:
        """An unknown step (of a known and of an unknown run) is ``(False, None)``."""
        assert await store.get_step("run-1", "missing") == (False, None)
        await store.set_step("run-1", "present", 1)
        assert await store.get_step("run-1", "missing") == (False, None)
        assert await store.get_step("no-such-run", "present") == (False, None)

    @store_test()
    async def test_step_round_trip(self, store: Store) -> None:
        """A step's result comes back as recorded."""
        await store.set_step("run-1", "fetch", {"status": 200, "body": "ok"})
        await store.set_step("run-1", "count", 3, attempt=2)
        assert await store.get_step("run-1", "fetch") == (True, {"status": 200, "body": "ok"})
        assert await store.get_step("run-1", "count") == (True, 3)

    @store_test()
    async def test_step_falsy_results_are_found(self, store: Store) -> None:
        """A step that returned None, 0, False, "", [] or {} is found, with that value."""
        for i, value in enumerate(FALSY):
            await store.set_step("run-1", f"step-{i}", value)
        for i, value in enumerate(FALSY):
            found, stored = await store.get_step("run-1", f"step-{i}")
            assert found is True, f"a step whose result is {value!r} was not found"
            assert stored == value
            assert type(stored) is type(value)

    @store_test()
    async def test_step_unicode_value(self, store: Store) -> None:
        """Unicode (astral plane, combining marks, NUL, line separators) round-trips."""
        await store.set_step("run-1", "text", UNICODE)
        await store.set_step("run-1", "keys", {UNICODE: [UNICODE]})
        assert await store.get_step("run-1", "text") == (True, UNICODE)
        assert await store.get_step("run-1", "keys") == (True, {UNICODE: [UNICODE]})

    @store_test()
    async def test_step_nested_value(self, store: Store) -> None:
        """Nested JSON data round-trips, keeping int, float, bool and null apart."""
        await store.set_step("run-1", "nested", NESTED)
        found, value = await store.get_step("run-1", "nested")
        assert found is True
        assert value == NESTED
        assert type(value["big"]) is int
        assert type(value["float"]) is float
        assert value["flags"][0] is True
        assert value["flags"][2] is None

    @store_test()
    async def test_step_large_value(self, store: Store) -> None:
        """A 1 MB result round-trips intact."""
        large = {"blob": "x" * 1_000_000, "items": list(range(10_000)), "tail": "✓"}
        await store.set_step("run-1", "large", large)
        assert await store.get_step("run-1", "large") == (True, large)

    @store_test()
    async def test_step_value_is_a_copy(self, store: Store) -> None:
        """The store keeps the value as it was when recorded, not a live reference."""
        value: dict[str, Any] = {"items": [1, 2]}
        await store.set_step("run-1", "s", value)
        value["items"].append(3)
        found, stored = await store.get_step("run-1", "s")
        assert (found, stored) == (True, {"items": [1, 2]})
        stored["items"].append(4)
        assert await store.get_step("run-1", "s") == (True, {"items": [1, 2]})
        loaded = await store.load_steps("run-1")
        if loaded is not None:
            loaded["s"]["items"].append(5)
            assert await store.get_step("run-1", "s") == (True, {"items": [1, 2]})
            assert dict(await store.load_steps("run-1") or {}) == {"s": {"items": [1, 2]}}

    @store_test()
    async def test_set_step_overwrites_same_step(self, store: Store) -> None:
        """Recording a step id again replaces its result (a re-executed step)."""
        await store.set_step("run-1", "s", "first")
        await store.set_step("run-1", "s", "second", attempt=2)
        assert await store.get_step("run-1", "s") == (True, "second")
        await store.set_step("run-1", "s", None, attempt=3)
        assert await store.get_step("run-1", "s") == (True, None)

    @store_test()
    async def test_steps_isolated_between_runs(self, store: Store) -> None:
        """One step id in different runs holds different values; keys never collide."""
        await store.set_step("run-a", "s", "a")
        await store.set_step("run-b", "s", "b")
        assert await store.get_step("run-a", "s") == (True, "a")
        assert await store.get_step("run-b", "s") == (True, "b")
        # A store joining run and step id with a separator must not confuse these.
        await store.set_step("x", "y:z", "run x")
        await store.set_step("x:y", "z", "run x:y")
        assert await store.get_step("x", "y:z") == (True, "run x")
        assert await store.get_step("x:y", "z") == (True, "run x:y")
        assert await store.get_step("x:y", "y:z") == (False, None)

    @store_test()
    async def test_odd_run_and_step_ids(self, store: Store) -> None:
        """Ids with unicode, quotes, SQL, braces, separators or 500 characters work."""
        for i, odd in enumerate(ODD_IDS):
            await store.set_step(odd, odd, i)
            await store.set_step("run-1", odd, -i)
            assert await store.set_signal(odd, odd, i) is True
        for i, odd in enumerate(ODD_IDS):
            assert await store.get_step(odd, odd) == (True, i)
            assert await store.get_step("run-1", odd) == (True, -i)
            assert await store.get_signal(odd, odd) == (True, i)

    # -- load_steps -------------------------------------------------------------------

    @store_test()
    async def test_load_steps_returns_all_steps_of_run(self, store: Store) -> None:
        """``load_steps`` gives every step of the run, falsy ones included, and no other."""
        steps: dict[str, Any] = {f"falsy-{i}": v for i, v in enumerate(FALSY)}
        steps.update({"fetch": {"a": 1}, "fetch#1": [1, 2], "text": UNICODE})
        for step_id, value in steps.items():
            await store.set_step("run-1", step_id, value)
        await store.set_step("run-1", "fetch", {"a": 2})  # overwritten: the last wins
        steps["fetch"] = {"a": 2}
        await store.set_step("run-2", "other", "not mine")
        await store.set_signal("run-1", "signal", "not a step")
        loaded = await store.load_steps("run-1")
        if loaded is None:
            assert not self.loads_steps, "load_steps returned None but loads_steps is True"
            return
        assert isinstance(loaded, Mapping)
        assert dict(loaded) == steps

    @store_test()
    async def test_load_steps_unknown_run_is_empty(self, store: Store) -> None:
        """``load_steps`` of a run without steps is an empty mapping."""
        await store.set_step("run-1", "s", 1)
        loaded = await store.load_steps("no-such-run")
        if loaded is None:
            assert not self.loads_steps, "load_steps returned None but loads_steps is True"
            return
        assert isinstance(loaded, Mapping)
        assert dict(loaded) == {}

    # -- checkpoint_step --------------------------------------------------------------

    @store_test()
    async def test_checkpoint_step_records_like_set_step(self, store: Store) -> None:
        """``checkpoint_step`` records a step as ``set_step`` does, and answers True."""
        steps: dict[str, Any] = {f"falsy-{i}": v for i, v in enumerate(FALSY)}
        steps.update({"fetch": {"a": 1}, "count": 3, "text": UNICODE})
        for step_id, value in steps.items():
            assert await store.checkpoint_step("run-1", step_id, value, attempt=2) is True
        assert await store.checkpoint_step("run-1", "fetch", {"a": 2}, attempt=3) is True
        steps["fetch"] = {"a": 2}
        for step_id, value in steps.items():
            found, stored = await store.get_step("run-1", step_id)
            assert found is True, f"a checkpointed step {step_id!r} was not found"
            assert (stored, type(stored)) == (value, type(value))
        assert await store.get_step("run-2", "fetch") == (False, None)
        loaded = await store.load_steps("run-1")
        if loaded is not None:
            assert dict(loaded) == steps

    @store_test("records_runs")
    async def test_checkpoint_step_goes_on_unless_cancelled(self, store: Store) -> None:
        """A run nobody asked to stop goes on: True while claimed, released or finished."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        assert await store.checkpoint_step("run-1", "claimed", 1) is True
        await store.release_run("run-1", "a")
        assert await store.checkpoint_step("run-1", "released", 2) is True
        await store.finish_run("run-1", "", "failed", error="E: x")
        assert await store.checkpoint_step("run-1", "failed", 3) is True
        for step_id, value in (("claimed", 1), ("released", 2), ("failed", 3)):
            assert await store.get_step("run-1", step_id) == (True, value)

    # -- list_steps -------------------------------------------------------------------

    @store_test()
    async def test_list_steps_lists_every_step_or_is_unsupported(self, store: Store) -> None:
        """``list_steps`` gives every step of the run with its value (unsupported only
        without ``manages_runs`` and without ``load_steps``)."""
        steps: dict[str, Any] = {"zeta": 1, "alpha": None, "mid": {"a": [1]}}
        for step_id, value in steps.items():
            await store.set_step("run-1", step_id, value)
        await store.set_step("run-2", "other", 2)
        try:
            listed = await store.list_steps("run-1")
        except UnsupportedOperation:
            assert not self._runs_managed(), "list_steps is unsupported but manages_runs is True"
            assert await store.load_steps("run-1") is None, "load_steps works: so should this"
            return
        assert all(isinstance(step, StepRecord) for step in listed)
        assert len(listed) == len(steps)
        assert {step.step_id: step.value for step in listed} == steps

    async def _record_in_order(self, store: Store, steps: Sequence[tuple[str, Any, int]]) -> None:
        for i, (step_id, value, attempt) in enumerate(steps):
            if i % 2:
                await store.set_step("run-1", step_id, value, attempt)
            else:
                assert await store.checkpoint_step("run-1", step_id, value, attempt) is True
            await asyncio.sleep(0.01)  # distinct times, also for coarse clocks

    def _assert_times(self, listed: Sequence[StepRecord], before: float) -> None:
        after = time.time()
        for step in listed:
            assert isinstance(step.created_at, dt.datetime), f"{step.step_id}: no created_at"
            assert step.created_at.utcoffset() is not None, f"{step.created_at!r} is naive"
            assert before - 1 <= step.created_at.timestamp() <= after + 1
        stamps = [step.created_at for step in listed if step.created_at is not None]
        assert stamps == sorted(stamps), "steps are not listed oldest first"

    @store_test("records_runs", "manages_runs")
    async def test_list_steps_oldest_first_with_attempts_and_times(self, store: Store) -> None:
        """``list_steps`` lists the run's steps oldest first, with value (falsy too),
        attempt and a timezone-aware ``created_at``; nothing of other runs or signals."""
        steps: list[tuple[str, Any, int]] = [("zeta", {"a": 1}, 1), ("alpha", NESTED, 3)]
        steps += [(f"falsy-{i}", value, 1) for i, value in enumerate(FALSY)]
        steps += [("mid", UNICODE, 2)]
        before = time.time()
        await self._record_in_order(store, steps)
        await store.set_step("run-2", "other", 1)
        await store.set_signal("run-1", "signal", 1)
        listed = await store.list_steps("run-1")
        assert all(isinstance(step, StepRecord) for step in listed)
        assert [(s.step_id, s.value, s.attempt) for s in listed] == steps
        for step, (_, value, _) in zip(listed, steps, strict=True):
            assert type(step.value) is type(value)
        self._assert_times(listed, before)

    @store_test("records_runs", "manages_runs")
    async def test_list_steps_unknown_run_is_empty(self, store: Store) -> None:
        """``list_steps`` of a run without steps is empty; runs sharing a prefix stay apart."""
        await store.set_step("run-1", "s", 1)
        await store.set_step("run-10", "t", 2)
        assert list(await store.list_steps("no-such-run")) == []
        assert list(await store.list_steps("run")) == []
        assert [step.step_id for step in await store.list_steps("run-1")] == ["s"]

    @store_test("records_runs", "manages_runs")
    async def test_list_steps_after_a_step_is_recorded_again(self, store: Store) -> None:
        """A step recorded again is listed once, with its new value and attempt, and the
        list stays in ``created_at`` order (oldest first)."""
        before = time.time()
        await self._record_in_order(store, [("a", 1, 1), ("b", 2, 1), ("c", 3, 1)])
        await store.set_step("run-1", "a", "again", attempt=2)
        listed = await store.list_steps("run-1")
        assert sorted(step.step_id for step in listed) == ["a", "b", "c"]
        again = next(step for step in listed if step.step_id == "a")
        assert (again.value, again.attempt) == ("again", 2)
        self._assert_times(listed, before)
