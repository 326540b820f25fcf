"""Data never becomes a command (docs/security.md): in a `shell.run` string `cmd`, each
`${...}` value arrives as one argument, whatever it holds and wherever it stands (outside
quotes, inside "..." or '...'); only the plan's own literal text is shell script."""

from __future__ import annotations

import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plait.compiler.api import compile_source
from plait.runtime.api import run_plan
from plait.stdlib.shell import shell_script

PLAN = r"""plan q {
  input a: str
  input b: str
  step s = shell.run(cmd = "printf '%s\\0' ${a} \"pre ${b} post\" 'sq ${a} sq' x${b}y")
  output out = s.output.stdout
}
"""

# Shell metacharacters, quotes, newlines, `$()`, backticks, globs, and some non-ASCII text
HOSTILE = st.lists(
    st.sampled_from([*string.printable, "é", "→", "$(", "${", "`", "'\"", "\n"]), max_size=20
).map("".join)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("quoting")
    (folder / "q.agent").write_text(PLAN)
    yield folder / "q.agent"


def _arguments(plan: Path, a: str, b: str) -> list[str]:
    report = run_plan(plan, {"a": a, "b": b})
    assert report.outcome == "succeeded", report.steps["s"]
    out = report.outputs["out"]
    assert out.endswith("\0")
    return out[:-1].split("\0")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(a=HOSTILE, b=HOSTILE)
@example(a="x; rm -rf ~", b="$(touch PWNED)")
@example(a="`touch PWNED`", b="'; touch PWNED; '")
@example(a='"; touch PWNED; "', b="a\nb\r\nc")
@example(a="", b="*")
@example(a="$1 $@ $0", b="\\")
def test_each_value_arrives_as_one_argument(plan: Path, a: str, b: str) -> None:
    assert _arguments(plan, a, b) == [a, f"pre {b} post", f"sq {a} sq", f"x{b}y"]
    assert not (plan.parent / "PWNED").exists()


def test_the_command_line_example_of_the_issue(plan: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "plait",
            "run",
            str(plan),
            "--input",
            "a=x; touch PWNED",
            "--input",
            "b=$(touch PWNED)",
            "--json",
            "--no-journal",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=plan.parent,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (plan.parent / "PWNED").exists()
    assert "x; touch PWNED" in proc.stdout


@pytest.mark.parametrize(
    ("pieces", "script"),
    [
        (["echo ", ("v",)], 'echo "${1}"'),
        (['echo "hi ', ("v",), '"'], 'echo "hi ${1}"'),
        (["echo 'hi ", ("v",), "'"], "echo 'hi '\"${1}\"''"),
        (["echo \\'", ("v",)], 'echo \\\'"${1}"'),
        (['echo "a\\"b ', ("v",), '"'], 'echo "a\\"b ${1}"'),
    ],
)
def test_scripts_keep_each_value_one_word(pieces: list[str | tuple[str]], script: str) -> None:
    assert shell_script(pieces) == (script, ["v"])


def test_a_list_cmd_that_builds_shell_text_from_data_warns() -> None:
    text = (
        "plan w {\n  input n: str\n"
        '  step a = shell.run(cmd = ["sh", "-c", "echo ${n}"])\n'
        '  step b = shell.run(cmd = ["/bin/bash", "-lc", n])\n'
        '  step c = shell.run(cmd = ["bash", "-c", "echo hi"])\n'
        '  step d = shell.run(cmd = ["echo", "-c", n])\n'
        '  step e = shell.run(cmd = "echo ${n}")\n}\n'
    )
    result = compile_source(text, "w.agent")
    found = [(d.code.id, d.span.line if d.span else None) for d in result.diagnostics]
    assert found == [("W410", 3)]
    [diag] = result.diagnostics
    assert diag.message == (
        "step `a` builds shell text from data: the script of `sh -c` is "
        "not a literal, so a value in it can run as a command"
    )
