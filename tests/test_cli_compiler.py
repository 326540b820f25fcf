"""`plait check`, `compile`, `graph` and `tools` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.marks import NEEDS_DOT

DATA = Path(__file__).parent / "compiler" / "data"
CLEAN = DATA / "clean.agent"


def plait(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=60,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def test_check_clean_plan_prints_ok_with_the_path_as_given() -> None:
    proc = plait("check", "clean.agent", cwd=DATA)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok: clean.agent (6 steps)\n"
    assert proc.stderr == ""


def test_check_reports_every_error_rustc_style(tmp_path: Path) -> None:
    plan = tmp_path / "bad.agent"
    plan.write_text(
        "plan p {\n  step a = std.echo(value = 1)\n"
        "  step b = std.echo(value = aa.output)\n  step c = std.ecoh(value = 1)\n}\n"
    )
    proc = plait("check", str(plan))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert (
        f"{plan}:3:29: error[E301]: unknown name `aa` in step `b`: no input or step has "
        "this name" in lines
    )
    assert "3 |   step b = std.echo(value = aa.output)" in lines
    assert "  |                             ^^" in lines
    assert "  = help: did you mean `a`?" in lines
    assert any(line.startswith(f"{plan}:4:") and "error[E304]" in line for line in lines)
    assert f"{plan}: 2 errors" in lines
    no_traceback(proc)


def test_check_several_files_and_strict() -> None:
    proc = plait("check", "clean.agent", "cycles.agent", cwd=DATA)
    assert proc.returncode == 2
    assert proc.stdout == "ok: clean.agent (6 steps)\n"
    assert "cycles.agent:2:8: error[E309]: dependency cycle: `a` depends on `c`" in proc.stderr
    warned = plait("check", "warnings.agent", cwd=DATA)
    assert warned.returncode == 0
    assert "warning[W403]" in warned.stderr and warned.stdout.startswith("ok: warnings.agent")
    strict = plait("check", "--strict", "warnings.agent", cwd=DATA)
    assert strict.returncode == 2 and strict.stdout == ""


def test_check_json_format() -> None:
    clean = plait("check", "--format", "json", "clean.agent", cwd=DATA)
    assert clean.returncode == 0 and json.loads(clean.stdout) == []
    proc = plait("check", "--format", "json", "warnings.agent", "tools.agent", cwd=DATA)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert {d["path"] for d in data} == {"warnings.agent", "tools.agent"}
    first = next(d for d in data if d["code"] == "E304")
    assert first == {
        "path": "tools.agent",
        "line": 2,
        "column": 12,
        "end_line": 2,
        "end_column": 20,
        "code": "E304",
        "severity": "error",
        "message": "unknown tool `std.ecoh` in step `a`",
        "hints": ["did you mean `std.echo`?"],
    }
    assert any(d["severity"] == "warning" for d in data)


def test_missing_file_and_binary_input_are_clear_errors(tmp_path: Path) -> None:
    proc = plait("check", str(tmp_path / "nope.agent"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no such plan file: {tmp_path / 'nope.agent'}"
    binary = tmp_path / "bin.agent"
    binary.write_bytes(b"plan p {\n  \xff\xfe\x00\x01 }\n")
    proc = plait("check", str(binary))
    assert proc.returncode == 2
    assert f"{binary}:2:3: error[E110]: the plan is not valid UTF-8 text (byte 0xff)" in proc.stderr
    nul = tmp_path / "nul.agent"
    nul.write_bytes(b"plan p {\x00}")
    proc = plait("check", str(nul))
    assert proc.returncode == 2 and "error[E110]" in proc.stderr
    no_traceback(proc)


def test_unloadable_use_is_a_diagnostic() -> None:
    proc = plait("check", "use.agent", cwd=DATA)
    assert proc.returncode == 2
    assert 'use.agent:2:3: error[E321]: cannot load `use "./no_such_tools.py"`' in proc.stderr
    no_traceback(proc)


def test_compile_writes_json_that_round_trips(tmp_path: Path) -> None:
    from plait.compiler.api import compile_file, load_plan

    out = tmp_path / "triage.json"
    proc = plait("compile", str(CLEAN), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for key in (
        "version",
        "plan",
        "description",
        "inputs",
        "outputs",
        "resources",
        "steps",
        "edges",
        "env",
    ):
        assert key in data
    assert data["plan"] == "triage"
    assert data["steps"]["draft"]["depends_on"] == ["classify", "history"]
    assert data["steps"]["classify"]["retry"]["retries"] == 3
    assert ["classify", "classify_by_rules", "fallback"] in data["edges"]
    assert ["draft", "notify_failure", "after"] in data["edges"]
    assert data["source_path"] == str(CLEAN.resolve())
    loaded = load_plan(out)
    assert loaded == compile_file(CLEAN).plan
    stdout = plait("compile", str(CLEAN))
    assert json.loads(stdout.stdout) == data
    bad = plait("compile", str(DATA / "cycles.agent"))
    assert bad.returncode == 2 and bad.stdout == "" and "error[E309]" in bad.stderr


def test_graph_prints_dot_and_mermaid() -> None:
    proc = plait("graph", str(CLEAN))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("digraph triage {")
    assert "s_classify -> s_classify_by_rules" in proc.stdout
    mermaid = plait("graph", str(CLEAN), "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart TD\n")
    bad = plait("graph", str(DATA / "tools.agent"))
    assert bad.returncode == 2 and "error[E304]" in bad.stderr


@NEEDS_DOT
@pytest.mark.parametrize(
    ("suffix", "magic"),
    [
        (".svg", b"<svg"),
        (".png", b"\x89PNG"),
        (".pdf", b"%PDF"),
        (".mmd", b"flowchart"),
        (".dot", b"digraph"),
    ],
)
def test_graph_to_file_by_suffix(tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"triage{suffix}"
    proc = plait("graph", str(CLEAN), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert magic in out.read_bytes()[:400]


def test_graph_without_dot_binary(tmp_path: Path) -> None:
    proc = plait("graph", str(CLEAN), "-o", str(tmp_path / "x.svg"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "install graphviz" in proc.stderr
    no_traceback(proc)
    dot = plait("graph", str(CLEAN), "-o", str(tmp_path / "x.dot"), env={"PATH": str(tmp_path)})
    assert dot.returncode == 0


def test_tools_lists_and_describes(tmp_path: Path) -> None:
    proc = plait("tools")
    assert proc.returncode == 0
    assert "std.sleep(seconds: float, value: any = null)" in proc.stdout
    one = plait("tools", "std.fail")
    assert one.stdout.splitlines()[0] == 'std.fail(message: str, kind: str = "tool_error")'
    unknown = plait("tools", "std.slep")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown tool `std.slep`; did you mean `std.sleep`?"
    (tmp_path / "mine.py").write_text(
        "import plait\n\n@plait.tool\ndef shout(text: str) -> str:\n"
        '    """Shout it."""\n    return text.upper()\n'
    )
    (tmp_path / "p.agent").write_text(
        'plan p {\n  use "./mine.py"\n  step a = mine.shout(text = "hi")\n}\n'
    )
    with_plan = plait("tools", "--plan", str(tmp_path / "p.agent"))
    assert with_plan.returncode == 0, with_plan.stderr
    assert "mine.shout(text: str)  [use]" in with_plan.stdout


def test_help_has_examples() -> None:
    for command in ("check", "compile", "graph", "tools"):
        proc = plait(command, "--help")
        assert proc.returncode == 0 and "Examples:" in proc.stdout
