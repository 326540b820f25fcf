"""Command-line behaviour shared by every command: closed pipes, help, version."""

from __future__ import annotations

import subprocess
import sys

PLAIT = [sys.executable, "-m", "plait"]


def test_a_closed_stdout_ends_quietly_without_a_traceback() -> None:
    # The reader goes away before plait writes (`plait tools | head -0`): plait must not
    # report an internal error, only end with the shell's SIGPIPE status.
    proc = subprocess.Popen([*PLAIT, "tools"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err
    assert b"internal error" not in err


def test_help_lists_every_command() -> None:
    out = subprocess.run([*PLAIT, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("check", "compile", "graph", "run", "tools", "resume", "runs", "show",
                    "report"):
        assert f"  {command} " in out.stdout, command


def test_version() -> None:
    out = subprocess.run([*PLAIT, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("plait, version ")
