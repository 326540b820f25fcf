"""`shell.run`: a command in its own process group; a timeout or cancellation ends the whole
group (SIGTERM, then SIGKILL after a grace period) and reaps the child.

A string `cmd` is a `/bin/sh -c` script; `args` are its positional parameters (`$1`, `$2`,
...), each one argument whatever it holds. The runtime passes every `${...}` value of an
interpolated `cmd` that way (`shell_script`), so data never becomes shell text
(docs/security.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from plait.errors import InvalidInput, ToolError
from plait.stdlib.registry import ToolContext, tool
from plait.stdlib.workers import child_options

KILL_GRACE_S = 2.0  # SPEC section 9: SIGTERM, then SIGKILL after 2 s
TAIL_CHARS = 500
# What shell.run keeps of each of stdout and stderr: the last part (where errors are)
KEEP_BYTES = 1_000_000


class CommandFailed(ToolError):
    """A non-zero exit with `check = true` (kind `tool_error`), with the code and stderr."""

    def __init__(self, message: str, *, code: int, stderr: str) -> None:
        super().__init__(message)
        self.code = code
        self.stderr = stderr


@tool(name="shell.run")
async def run(
    ctx: ToolContext,
    cmd: str | list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    args: list[str] | None = None,
) -> dict[str, Any]:
    """Run a command (string: via /bin/sh -c; list: directly); returns {code, stdout, stderr}.

    A non-zero exit fails the step (kind `tool_error`) unless `check = false`. `args` are
    the positional parameters (`$1`, ...) of a string `cmd`; each `${...}` in a string
    `cmd` is passed that way, as one argument.
    """
    workdir = _workdir(ctx, cwd)
    if args and not isinstance(cmd, str):
        raise InvalidInput("shell.run: `args` go with a string `cmd` (a list is the argv)")
    proc = await _spawn(cmd, workdir, {**os.environ, **env} if env else None, args or [])
    out, err = _Tail(), _Tail()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(out.read(proc.stdout), err.read(proc.stderr))
        await proc.wait()
    except BaseException:  # cancelled by a timeout, the deadline or Ctrl-C
        await terminate_group(proc)
        raise
    code = proc.returncode if proc.returncode is not None else -1
    stdout, stderr = out.text(), err.text()
    if check and code != 0:
        raise CommandFailed(
            f"{_describe(cmd)} {_exit_text(code)}: {tail(stderr or stdout)}",
            code=code,
            stderr=stderr,
        )
    result: dict[str, Any] = {"code": code, "stdout": stdout, "stderr": stderr}
    for name, stream in (("stdout", out), ("stderr", err)):
        if stream.dropped:
            result[f"{name}_dropped"] = stream.dropped
    return result


class _Tail:
    """The last `KEEP_BYTES` of a stream, read as it comes (a command printing 200 MB
    must not cost 200 MB), and how many bytes before them were dropped."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(1 << 16):
            self.data += chunk
            extra = len(self.data) - KEEP_BYTES
            if extra > 0:
                del self.data[:extra]
                self.dropped += extra

    def text(self) -> str:
        body = _text(bytes(self.data))
        if not self.dropped:
            return body
        if self.dropped >= 1_000_000:
            size = f"{self.dropped // 1_000_000} MB"
        else:
            size = f"{self.dropped} bytes"
        return f"[plait: {size} of earlier output dropped; the last part follows]\n{body}"


def _workdir(ctx: ToolContext, cwd: str | None) -> Path:
    """The working folder: `cwd` relative to the plan's folder, the plan's folder by default."""
    workdir = (Path(ctx.plan_dir) / Path(cwd).expanduser()) if cwd else Path(ctx.plan_dir)
    if not workdir.is_dir():
        raise InvalidInput(f"shell.run: `cwd` is not a folder: {workdir}")
    return workdir


async def _spawn(
    cmd: str | list[str], cwd: Path, env: dict[str, str] | None, args: list[str]
) -> asyncio.subprocess.Process:
    common: dict[str, Any] = {
        "cwd": cwd,
        "env": env,
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        # Its own process group, so a timeout can end the command and everything it
        # started; and it dies with plait, even after `kill -9` (workers.child_options).
        **child_options(),
    }
    if isinstance(cmd, str):
        # `sh -c SCRIPT NAME ARG...`: NAME is $0, the args are $1 ...
        return await asyncio.create_subprocess_exec("/bin/sh", "-c", cmd, "sh", *args, **common)
    if not cmd:
        raise InvalidInput("shell.run: `cmd` is an empty list")
    try:
        return await asyncio.create_subprocess_exec(*cmd, **common)
    except FileNotFoundError:
        raise ToolError(f"command not found: {cmd[0]!r}") from None
    except PermissionError:
        raise ToolError(f"command not executable: {cmd[0]!r}") from None


async def terminate_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period, and reap the child.

    Runs while the caller is being cancelled; a second cancellation during the grace period
    still ends in SIGKILL and a reaped child (the `finally`).
    """
    pgid = proc.pid  # start_new_session: the child leads its own group
    _signal_group(pgid, signal.SIGTERM)
    try:
        await _wait_group_gone(proc, pgid, KILL_GRACE_S)
    finally:
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())


async def _wait_group_gone(proc: asyncio.subprocess.Process, pgid: int, grace: float) -> None:
    """Wait until the child exited and no other member of its group is left, or `grace`."""
    end = time.monotonic() + grace
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await proc.wait()
    while time.monotonic() < end and _group_alive(pgid):
        await asyncio.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group. A grandchild that died
    after its parent waits as a zombie until init reaps it; that must not cost the grace."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: signal 0 counts zombies too, which only costs time
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit() and _live_member(entry / "stat", pgid):
            return True
    return False


def _live_member(stat_file: Path, pgid: int) -> bool:
    try:
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat_file.read_text().rsplit(")", 1)[1].split()
        return int(fields[2]) == pgid and fields[0] != "Z"
    except (OSError, IndexError, ValueError):
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The end of a command's output, where the error usually is."""
    text = text.strip()
    if not text:
        return "(no output)"
    return text if len(text) <= limit else "…" + text[-limit:]


def _describe(cmd: str | list[str]) -> str:
    shown = cmd if isinstance(cmd, str) else " ".join(cmd)
    shown = " ".join(shown.split())
    return f"`{shown[:80]}{'…' if len(shown) > 80 else ''}`"


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def shell_script(pieces: list[str | tuple[str]], first: int = 1) -> tuple[str, list[str]]:
    """A `sh -c` script and its positional parameters from an interpolated `cmd`: literal
    text (`str`) stays script; each value (`(text,)`) becomes `"${N}"` (numbered from
    `first`), written so it stays one word whether it stood outside quotes, inside double
    quotes or inside single quotes."""
    script: list[str] = []
    values: list[str] = []
    state: str | None = None  # the quote open at this point of the script: None, ' or "
    for piece in pieces:
        if isinstance(piece, str):
            script.append(piece)
            state = _quote_state(piece, state)
            continue
        ref = f"${{{first + len(values)}}}"
        values.append(piece[0])
        script.append({None: f'"{ref}"', '"': ref, "'": f"'\"{ref}\"'"}[state])
    return "".join(script), values


def _quote_state(text: str, state: str | None) -> str | None:
    """The shell quote open after `text`, given the one open before it."""
    i = 0
    while i < len(text):
        char = text[i]
        if state == "'":
            state = None if char == "'" else state
        elif char == "\\":
            i += 1  # the next character is escaped (outside quotes or inside "...")
        elif state == '"':
            state = None if char == '"' else state
        elif char in "'\"":
            state = char
        i += 1
    return state
