"""py.call and file.read / file.write with real modules and files."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.registry import ToolContext
from tests.stdlib.conftest import call, invoke, run_with

HELPERS = """
import asyncio, threading, time
from plait import ToolContext, Transient

def add(a: int, b: int = 1) -> int:
    return a + b

async def slow_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"

def where(ctx: ToolContext) -> str:
    return ctx.step

def thread_name() -> str:
    return threading.current_thread().name

def flaky() -> None:
    raise Transient("upstream down")

def blocking(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"

class Box:
    @staticmethod
    def make(n: int) -> list[int]:
        return list(range(n))

VALUE = 3
"""


@pytest.fixture
def helpers(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text(HELPERS)
    return tmp_path


def test_py_call_module_function(ctx: ToolContext) -> None:
    assert call(ctx, "py.call", function="json:dumps", obj=[1, 2]) == "[1, 2]"
    assert call(ctx, "py.call", function="os.path:join", a="x") == "x"


def test_py_call_file_beside_the_plan(ctx: ToolContext, helpers: Path) -> None:
    assert call(ctx, "py.call", function="./helpers.py:add", a=2, b=5) == 7
    assert call(ctx, "py.call", function="helpers:add", a=2) == 3
    assert call(ctx, "py.call", function="helpers:Box.make", n=3) == [0, 1, 2]


def test_py_call_async_and_context(ctx: ToolContext, helpers: Path) -> None:
    assert call(ctx, "py.call", function="helpers:slow_async", seconds=0.01) == "done"
    assert call(ctx, "py.call", function="helpers:where") == ctx.step


def test_py_call_sync_target_runs_in_a_daemon_thread(ctx: ToolContext, helpers: Path) -> None:
    name = call(ctx, "py.call", function="helpers:thread_name")
    assert name.startswith("plait-py.call-") and name != threading.current_thread().name


def test_py_call_keeps_the_error_kind(ctx: ToolContext, helpers: Path) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "py.call", function="helpers:flaky")
    assert info.value.kind is ErrorKind.TRANSIENT


def test_py_call_cancellation_abandons_a_blocking_function(ctx: ToolContext, helpers: Path) -> None:
    async def body() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await invoke(ctx, "py.call", function="helpers:blocking", seconds=3)
        return time.monotonic() - started

    assert run_with(ctx, body) < 1.5


@pytest.mark.parametrize(
    ("function", "args", "expect"),
    [
        ("no_colon", {}, "must look like"),
        ("not_a_module_xyz:f", {}, "cannot import"),
        ("helpers:missing", {}, "has no attribute"),
        ("helpers:VALUE", {}, "not a function"),
        ("helpers:add", {"a": "many"}, "`a`"),
        ("helpers:add", {"c": 1}, "`c`"),
        ("./nope.py:f", {}, "no such file"),
    ],
)
def test_py_call_bad_target_or_args_is_invalid_input(
    ctx: ToolContext, helpers: Path, function: str, args: dict[str, object], expect: str
) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "py.call", function=function, **args)
    assert info.value.kind is ErrorKind.INVALID_INPUT
    assert expect in info.value.message


def test_file_write_then_read_relative_to_plan(ctx: ToolContext, tmp_path: Path) -> None:
    result = call(ctx, "file.write", path="out/report.md", content="héllo\n")
    target = tmp_path / "out" / "report.md"
    assert result == {"path": str(target), "bytes": len("héllo\n".encode())}
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert call(ctx, "file.read", path="out/report.md") == "héllo\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as open() would make it
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]  # no temp left


def test_file_write_keeps_mode_and_replaces_atomically(ctx: ToolContext, tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    call(ctx, "file.write", path="data.txt", content="new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_file_write_failure_leaves_the_old_file(
    ctx: ToolContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("intact")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the write fails half way
    with pytest.raises(ToolError) as info:
        call(ctx, "file.write", path="keep.txt", content="new content")
    assert info.value.kind is ErrorKind.PERMANENT and "No space left" in info.value.message
    assert target.read_text() == "intact"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]  # the temp file is gone


def test_file_write_unencodable_text_is_invalid_input(ctx: ToolContext) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "file.write", path="x.txt", content="\udcff")
    assert info.value.kind is ErrorKind.INVALID_INPUT


def test_file_read_missing_is_permanent(ctx: ToolContext) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "file.read", path="nope.txt")
    assert info.value.kind is ErrorKind.PERMANENT and "no such file" in info.value.message


def test_file_read_folder_and_binary_are_permanent(ctx: ToolContext, tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    for path in (".", "bin"):
        with pytest.raises(ToolError) as info:
            call(ctx, "file.read", path=path)
        assert info.value.kind is ErrorKind.PERMANENT


def test_file_absolute_path(ctx: ToolContext, tmp_path: Path) -> None:
    other = tmp_path / "abs.txt"
    call(ctx, "file.write", path=str(other), content="x")
    assert call(ctx, "file.read", path=str(other)) == "x"
