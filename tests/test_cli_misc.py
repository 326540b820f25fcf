"""Command-line behaviour shared by every command: closed pipes, help, version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    for command in (
        "check",
        "compile",
        "graph",
        "run",
        "tools",
        "resume",
        "runs",
        "show",
        "report",
    ):
        assert f"  {command} " in out.stdout, command


def test_version() -> None:
    out = subprocess.run([*PLAIT, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("plait, version ")


def test_run_prints_the_outputs_on_stdout_and_the_summary_on_stderr(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text(
        'plan p {\n  step a = std.echo(value = {n: 1, s: "x"})\n'
        '  step b = std.echo(value = "${a.output.s}" )\n'
        "  output whole = a.output\n  output text = b.output\n"
        '  output long = ["' + "y" * 300 + '"]\n}\n'
    )
    proc = subprocess.run(
        [*PLAIT, "run", str(plan), "--journal", str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # stdout: the answer, whole (a string as it is, other values as compact JSON)
    assert proc.stdout == ('whole = {"n":1,"s":"x"}\ntext = x\nlong = ["' + "y" * 300 + '"]\n')
    # stderr: progress and the summary, which does not repeat the outputs
    assert "p: succeeded in" in proc.stderr and "a: started" in proc.stderr
    assert "whole" not in proc.stderr
