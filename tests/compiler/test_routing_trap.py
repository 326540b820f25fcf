"""The routing trap (issue #11): a step under the default rule that reads an `if`-gated step is
skipped with it; `plait check` warns (W411), `when none_failed` joins the branches, and
`plait run` prints the warning before it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from plait.compiler.api import compile_source

ROUTED = """plan route {
  input urgent: bool = false
  step escalate = std.echo(value = "paged") {
    if urgent
  }
  step reply = std.echo(value = "done: ${escalate.output}") {
    default "none"
  }
  output reply = reply.output
}
"""

JOINED = ROUTED.replace('default "none"', "when none_failed").replace(
    '"done: ${escalate.output}"', '"""done: ${escalate.output ?? "not escalated"}"""'
)


def test_reading_a_gated_step_under_the_default_rule_warns() -> None:
    [d] = compile_source(ROUTED, "r.agent").diagnostics
    assert (d.code.id, d.code.slug, d.severity) == ("W411", "skipped-with-condition", "warning")
    assert d.span is not None and (d.span.line, d.span.column) == (6, 8)
    assert d.message == (
        "step `reply` is skipped whenever the `if` of `escalate` is false: under the default "
        "rule `all_succeeded` a skipped dependency skips it too (`upstream_skipped`), its "
        "fallback and default do not apply, and the run still succeeds"
    )
    assert d.hints == (
        "to run `reply` either way, give it `when none_failed` (runs unless a dependency "
        "failed) and read `escalate.output` with `?.` or `??`, or `when all_done` (runs "
        "whatever its dependencies ended as)",
        "if `reply` belongs to the branch, give it the same `if`",
    )


def test_after_counts_too_and_the_other_rules_do_not_warn() -> None:
    after = ROUTED.replace(
        'std.echo(value = "done: ${escalate.output}") {',
        'std.echo(value = "done") {\n    after escalate',
    )
    assert [d.code.id for d in compile_source(after, "r.agent").diagnostics] == ["W411"]
    for rule in ("none_failed", "all_done"):
        text = ROUTED.replace('default "none"', f"when {rule}").replace(
            "${escalate.output}", "${escalate.output ?? 0}"
        )
        assert compile_source(text, "r.agent").diagnostics == [], rule


def test_the_same_condition_on_the_reader_is_intended() -> None:
    text = ROUTED.replace('default "none"', "if urgent")
    assert compile_source(text, "r.agent").diagnostics == []


def _plait(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "plait", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_prints_checks_warnings_first_then_runs(tmp_path: Path) -> None:
    plan = tmp_path / "r.agent"
    plan.write_text(ROUTED)
    proc = _plait("run", plan, "--json", "--no-journal", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"{plan}:6:8: warning[W411]: step `reply` is skipped")
    assert proc.stderr.index("warning[W411]") < proc.stderr.index("run ")  # before progress
    report = json.loads(proc.stdout)
    assert report["outcome"] == "succeeded"
    assert (report["steps"]["reply"]["status"], report["steps"]["reply"]["reason"]) == (
        "skipped",
        "upstream_skipped",
    )
    quiet = _plait("run", plan, "-q", "--no-journal", cwd=tmp_path)
    assert "warning[W411]" in quiet.stderr  # -q silences progress, not the plan's warnings


def test_none_failed_joins_the_branches(tmp_path: Path) -> None:
    plan = tmp_path / "j.agent"
    plan.write_text(JOINED)
    for urgent, reply in (("false", "done: not escalated"), ("true", "done: paged")):
        proc = _plait(
            "run",
            plan,
            "--input",
            f"urgent={urgent}",
            "--output",
            "reply",
            "-q",
            "--no-journal",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == reply + "\n"
        assert "warning" not in proc.stderr
