"""Helpers for the consistency tests (SPEC section 10): write a plan (and its tools) into a
temporary folder, run it with its events, and a versioned HTTP store on 127.0.0.1."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plait.runtime.api import run_plan
from plait.runtime.events import Event
from tests.runtime.conftest import Ran
from tests.servers import VersionedStore


@dataclass
class Planner:
    """`planner.write(text, tools=...)` writes plan.agent (and tools.py); `run` runs it."""

    folder: Path

    def write(self, text: str, tools: str | None = None, name: str = "plan.agent") -> Path:
        if tools is not None:
            (self.folder / "tools.py").write_text(textwrap.dedent(tools))
        path = self.folder / name
        path.write_text(textwrap.dedent(text))
        return path

    def run(
        self,
        text: str | Path,
        tools: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Ran:
        path = text if isinstance(text, Path) else self.write(text, tools)
        events: list[Event] = []
        report = run_plan(path, inputs, events=events.append, **kw)
        return Ran(report, events)


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    return Planner(tmp_path)


@pytest.fixture
def store() -> Iterator[VersionedStore]:
    with VersionedStore() as server:
        yield server


RunFn = Callable[..., Ran]
