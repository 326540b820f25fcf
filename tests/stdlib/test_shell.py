"""shell.run with real subprocesses: results, failures, and that a cancelled or timed-out
command leaves no process behind (its grandchildren included)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.registry import ToolContext
from plait.stdlib.shell import CommandFailed
from tests.stdlib.conftest import call, invoke, run_with


def test_string_runs_through_the_shell(ctx: ToolContext) -> None:
    result = call(ctx, "shell.run", cmd="echo out; echo err >&2; echo $((1 + 2))")
    assert result == {"code": 0, "stdout": "out\n3\n", "stderr": "err\n"}


def test_list_runs_without_a_shell(ctx: ToolContext) -> None:
    result = call(ctx, "shell.run", cmd=["printf", "%s|", "$HOME", "a b"])
    assert result["stdout"] == "$HOME|a b|"


def test_env_extends_the_inherited_environment(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_TEST_INHERITED", "yes")
    result = call(ctx, "shell.run", cmd="echo $PLAIT_TEST_INHERITED $EXTRA", env={"EXTRA": "added"})
    assert result["stdout"] == "yes added\n"


def test_cwd_is_relative_to_the_plan_folder(ctx: ToolContext, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert call(ctx, "shell.run", cmd="pwd")["stdout"].strip() == str(tmp_path)
    assert call(ctx, "shell.run", cmd="pwd", cwd="sub")["stdout"].strip() == str(tmp_path / "sub")


def test_missing_cwd_is_invalid_input(ctx: ToolContext) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "shell.run", cmd="true", cwd="nope")
    assert info.value.kind is ErrorKind.INVALID_INPUT


def test_nonzero_exit_with_check_is_tool_error_with_stderr_tail(ctx: ToolContext) -> None:
    with pytest.raises(CommandFailed) as info:
        call(ctx, "shell.run", cmd="seq 1 500 >&2; echo 'disk full' >&2; exit 3")
    err = info.value
    assert err.kind is ErrorKind.TOOL_ERROR
    assert err.code == 3
    assert "exited with code 3" in err.message and err.message.endswith("disk full")
    assert "\n1\n" not in err.message  # only the tail


def test_nonzero_exit_without_check_returns_the_code(ctx: ToolContext) -> None:
    assert call(ctx, "shell.run", cmd="exit 4", check=False)["code"] == 4


def test_unknown_program_is_tool_error(ctx: ToolContext) -> None:
    with pytest.raises(ToolError) as info:
        call(ctx, "shell.run", cmd=["no-such-program-plait"])
    assert info.value.kind is ErrorKind.TOOL_ERROR
    assert "command not found" in info.value.message


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie is dead, awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def cancel_after_start(
    ctx: ToolContext, cmd: str, pid_file: Path, timeout: float
) -> tuple[list[int], float]:
    """Start `cmd`, wait until it wrote its pids, let `asyncio.timeout` cancel the call."""

    async def body() -> tuple[list[int], float]:
        task = asyncio.create_task(invoke(ctx, "shell.run", cmd=cmd))
        while not pid_file.exists() or len(pid_file.read_text().split()) < 2:
            await asyncio.sleep(0.02)
        pids = [int(p) for p in pid_file.read_text().split()]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(timeout):
                await task
        return pids, time.monotonic() - started

    return run_with(ctx, body)


def test_timeout_kills_the_child_and_its_grandchild(ctx: ToolContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = f"sleep 60 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
    (child, grandchild), elapsed = cancel_after_start(ctx, cmd, pid_file, 0.2)
    assert elapsed < 2.0  # they went on SIGTERM, no need for the SIGKILL grace
    assert not exists(child)  # reaped, not even a zombie
    deadline = time.monotonic() + 3
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_processes_ignoring_sigterm_get_sigkill(ctx: ToolContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = (
        f"trap '' TERM; sleep 60 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
    )
    (child, grandchild), elapsed = cancel_after_start(ctx, cmd, pid_file, 0.2)
    assert 1.5 < elapsed < 8  # the 2 s grace, then SIGKILL
    assert not exists(child)
    deadline = time.monotonic() + 3
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_plain_cancellation_also_kills(ctx: ToolContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = f"sleep 60 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"

    async def body() -> list[int]:
        task = asyncio.create_task(invoke(ctx, "shell.run", cmd=cmd))
        while not pid_file.exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [int(p) for p in pid_file.read_text().split()]

    child, grandchild = run_with(ctx, body)
    assert not exists(child)
    assert not alive(grandchild) or _wait_dead(grandchild)


def _wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_no_zombies_after_many_runs(ctx: ToolContext) -> None:
    async def body() -> list[Any]:
        return await asyncio.gather(
            *(invoke(ctx, "shell.run", cmd=f"exit {i % 2}", check=False) for i in range(10))
        )

    results = run_with(ctx, body)
    assert [r["code"] for r in results] == [i % 2 for i in range(10)]
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if children.exists():
        assert all(not alive(int(p)) and not exists(int(p)) for p in children.read_text().split())
