"""`frozen_heap` (the CLI's edge): the collector skips pre-run objects during a run, and is
left as found; a library run does not touch it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from plait.runtime import gcscope
from plait.runtime.api import Runner
from tests.runtime.planlib import P, S


@pytest.fixture(autouse=True)
def _clean_collector() -> Iterator[None]:
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_library_run_leaves_the_collector_alone() -> None:
    """Tuning happens at the CLI edge only: `run_plan` must not change an embedder's process."""
    seen: list[tuple[int, int]] = []

    def sink(_event: object) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))

    before = gc.get_threshold()
    plan = P(S("a", "std.echo", value=1), S("b", "std.echo", value=2))
    report = asyncio.run(Runner(plan, {}, environ={}, events=sink).run())
    assert report.outcome == "succeeded"
    assert seen and all(frozen == 0 for frozen, _ in seen)
    assert all(young == before[0] for _, young in seen)
    assert gc.get_threshold() == before


def test_frozen_heap_freezes_during_and_restores_after() -> None:
    before = gc.get_threshold()
    with gcscope.frozen_heap():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == max(before[0], gcscope.RUN_GEN0_THRESHOLD)
    assert gc.get_freeze_count() == 0  # nothing left in the permanent generation
    assert gc.get_threshold() == before


def test_cycles_made_during_the_run_are_still_collected() -> None:
    class Node:
        other: object = None

    with gcscope.frozen_heap():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2


def test_an_embedders_freeze_is_left_alone() -> None:
    keep = [object() for _ in range(10)]
    gc.freeze()
    frozen = gc.get_freeze_count()
    threshold = gc.get_threshold()
    with gcscope.frozen_heap():
        assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() >= frozen  # not unfrozen by us
    assert keep


def test_overlapping_scopes_unfreeze_once_the_last_ends() -> None:
    with gcscope.frozen_heap():
        with gcscope.frozen_heap():
            pass
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
