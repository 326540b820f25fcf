"""`frozen_heap` (the CLI's edge): the collector skips pre-run objects during a run, and is
left as found; a library run does not touch it."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.runtime import gcscope
from plait.runtime.api import Runner, run_plan
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


def test_compiling_and_running_from_a_path_never_pause_the_collector(tmp_path: Path) -> None:
    """`run_plan` of a path compiles, runs and builds the report in the embedder's process:
    at no moment may it switch the collector off (a thread watches while it works). Only the
    command line pauses it, around its own compile (`paused_collector`)."""
    steps = "\n".join(f"  step s{i} = std.echo(value = root.output)" for i in range(3000))
    plan = tmp_path / "wide.agent"
    plan.write_text(f"plan wide {{\n  step root = std.echo(value = 1)\n{steps}\n}}\n")
    done = threading.Event()
    seen_off: list[bool] = []

    def watch() -> None:
        while not done.is_set():
            if not gc.isenabled():
                seen_off.append(True)
            time.sleep(0)  # hand the GIL back at once

    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the watcher gets a look in every half millisecond
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = run_plan(plan, environ={})
    finally:
        done.set()
        watcher.join()
        sys.setswitchinterval(switch)
    assert report.outcome == "succeeded"
    assert gc.isenabled()
    assert not seen_off, "the collector was switched off inside run_plan"


def test_paused_collector_restores_what_it_found() -> None:
    gc.disable()
    try:
        with gcscope.paused_collector():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()
    with gcscope.paused_collector():
        assert not gc.isenabled()
    assert gc.isenabled()
