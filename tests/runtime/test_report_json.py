"""The report written step by step (`report_json.write_report_json`) is the same text as
the whole report's dict written at once, for reports with every kind of step entry."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydantic_core
import pytest

from plait.runtime.api import run_plan
from plait.runtime.report import RunReport
from plait.runtime.report_json import report_json_text, write_report_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# retries, a fallback, a default, an optional failure, skips of each kind, a map within its
# tolerance, a loop, a failed output expression, text that is not ASCII, nested values and
# numbers of every shape
RICH_PLAN = """
plan rich "Every kind of step entry" {
  input who: str = "Zoë ☃"
  step ok = std.echo(value = {name: who, list: [1, 2.5, 1e-7, true, null], "quo\\"te": "a\\nb"})
  step flaky = std.flaky(fail_times = 1, value = 3) { retry 2 backoff 0ms }
  step broken = std.fail(message = "down ☹") {
    retry 1 backoff 0ms
    fallback spare
  }
  step spare = std.echo(value = "spare")
  step defaulted = std.fail(message = "no") { default {x: 0} }
  step maybe = std.fail(message = "optional", kind = "transient") { optional }
  step after_maybe = std.echo(value = maybe.output) { when all_failed }
  step never = std.echo(value = 1) { if false }
  step below = std.echo(value = never.output)
  step each = for x in [1, 2, 3, 4]: std.fail(message = "element ${x}") { tolerate 100% }
  loop again max 2 {
    step inner = std.echo(value = loop.index)
  }
  output greeting = "hi ${ok.output.name}"
  output missing = ok.output.nope
  output empty = []
}
"""


def _reference(report: RunReport) -> str:
    return pydantic_core.to_json(report.to_json_dict(), indent=2).decode()


def _run(tmp_path: Path, text: str) -> RunReport:
    plan = tmp_path / "plan.agent"
    plan.write_text(text, encoding="utf-8")
    return run_plan(plan)


def test_a_rich_report_is_written_exactly_as_its_dict(tmp_path: Path) -> None:
    report = _run(tmp_path, RICH_PLAN)
    assert report.outcome == "degraded"  # (the plan did produce every kind of entry)
    statuses = {s.status for s in report.steps.values()}
    assert {"succeeded", "recovered", "failed", "skipped"} <= statuses
    assert report.reasons and report.metrics is not None and report.metrics.steps
    out = io.StringIO()
    write_report_json(report, out)
    assert out.getvalue() == _reference(report)
    assert report.to_json_text() == _reference(report)
    data = json.loads(out.getvalue())
    assert data["steps"]["ok"]["output"]["name"] == "Zoë ☃"
    assert "Zoë ☃" in out.getvalue()  # non-ASCII as is, as pydantic-core writes it


@pytest.mark.parametrize("name", ["hello.agent", "flaky_api.agent", "review_loop.agent"])
def test_example_reports_are_written_exactly_as_their_dict(name: str) -> None:
    report = run_plan(EXAMPLES / name)
    assert report_json_text(report) == _reference(report)


def test_a_report_without_steps_or_metrics(tmp_path: Path) -> None:
    """Empty per-step maps are written `{}`, as the dict's writer writes them."""
    import dataclasses

    report = _run(tmp_path, "plan tiny {\n  step a = std.echo(value = 1)\n}\n")
    bare = dataclasses.replace(report, steps={}, metrics=None)
    assert report_json_text(bare) == _reference(bare)
    assert '"steps": {}' in report_json_text(bare)
    empty_metrics = dataclasses.replace(
        report, metrics=dataclasses.replace(report.metrics, steps={})
    )
    assert report_json_text(empty_metrics) == _reference(empty_metrics)
