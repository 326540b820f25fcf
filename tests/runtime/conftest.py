"""Shared helpers for runtime tests: run a plan and keep its events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from plait.compiler.ir import Plan
from plait.runtime.api import run_plan_async
from plait.runtime.events import Event
from plait.runtime.report import RunReport


@dataclass
class Ran:
    report: RunReport
    events: list[Event] = field(default_factory=list)

    def step(self, name: str) -> Any:
        return self.report.steps[name]

    def status(self, name: str) -> str:
        return self.report.steps[name].status

    def of(self, kind: str, step: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if e.event == kind and (step is None or getattr(e, "step", None) == step)
        ]


RunFn = Callable[..., Ran]


@pytest.fixture
def run() -> RunFn:
    """`run(plan, inputs=None, **options)` -> Ran, checking no task or thread is left over."""

    def go(plan: Plan, inputs: dict[str, Any] | None = None, **kw: Any) -> Ran:
        events: list[Event] = []

        async def main() -> RunReport:
            report = await run_plan_async(plan, inputs, events=events.append, **kw)
            # nothing of the run may be left behind on the loop
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == [], others
            return report

        report = asyncio.run(main())
        return Ran(report, events)

    return go


def plait_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("plait-tool-")]
