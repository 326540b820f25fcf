"""Fixtures for the stdlib tests: real servers on 127.0.0.1 and a way to call a tool through
its ToolSpec with a real ToolContext, the way the runtime does."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plait.runtime.executor import execute
from plait.stdlib.registry import ToolContext, builtin_registry
from plait.versions import Versioned
from tests.servers import FakeLLM, TestServer

T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[TestServer]:
    with TestServer() as srv:
        yield srv


@pytest.fixture
def llm_server() -> Iterator[FakeLLM]:
    with FakeLLM() as srv:
        yield srv


class Events:
    """Collects what tools report through `ctx.emit`."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.items.append((name, fields))


def make_ctx(plan_dir: Path, step: str = "s", **kw: Any) -> ToolContext:
    return ToolContext(run_id="run-test", step=step, plan_dir=plan_dir, emit=Events(), **kw)


async def invoke(ctx: ToolContext, name: str, **args: Any) -> Any:
    """Validate `args` against the tool's schema and call it, as the runtime would."""
    spec = builtin_registry().get(name)
    assert spec is not None, name
    return await execute(spec, spec.validate_args(args), ctx)


def run_with(ctx: ToolContext, body: Callable[[], Awaitable[T]]) -> T:
    """Run `body` in a fresh event loop, then the run-end cleanups (as one run would)."""

    async def main() -> T:
        try:
            return await body()
        finally:
            for cleanup in ctx.on_run_end:
                result = cleanup()
                if inspect.isawaitable(result):
                    await result

    return asyncio.run(main())


def call(ctx: ToolContext, name: str, **args: Any) -> Any:
    """One tool call in its own run; its output as a step sees it (a `Versioned` result
    unwrapped, as the runtime does)."""
    result = call_versioned(ctx, name, **args)
    return result.value if isinstance(result, Versioned) else result


def call_versioned(ctx: ToolContext, name: str, **args: Any) -> Any:
    """One tool call in its own run, its result as the tool returned it."""
    return run_with(ctx, lambda: invoke(ctx, name, **args))


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return make_ctx(tmp_path)
