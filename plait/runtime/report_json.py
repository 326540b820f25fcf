"""The run report written as JSON text straight to its destination, one step at a time.

`RunReport.to_json_dict()` makes the whole report one dict, and its text one string: for a
10,000-step run that is ~27 MB of dicts and a 10 MB string alive at once, at the end of the
run, which is when the process is at its largest (the plan, the step states and the
report's records are all still alive). The writer here makes the same text (byte for
byte what `pydantic_core.to_json(report.to_json_dict(), indent=2)` gives) while holding
at most one step's dict: the report's skeleton is dumped without its two per-step maps
(`steps` and `metrics.steps`), and those are written entry by entry, each value through
pydantic-core, indented to its depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

from plait.jsonstream import Entries, pieces
from plait.runtime.events import adapter
from plait.runtime.metrics import StepMetrics
from plait.runtime.report import RunReport, StepReport, step_json_dict


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...


def write_report_json(report: RunReport, out: TextSink) -> None:
    """Write `report` as indented JSON text (what `--json` and `--report` carry), without a
    trailing newline."""
    for piece in pieces(report_document(report), indent=2):
        out.write(piece)


def report_json_text(report: RunReport) -> str:
    """The same text as one string (for small reports and tests)."""
    return "".join(pieces(report_document(report), indent=2))


def report_document(report: RunReport) -> Entries:
    """The report's JSON document, its per-step maps (`steps`, `metrics.steps`) made one
    entry at a time as it is written."""
    skeleton = _skeleton(report)
    return Entries([(key, _streamed(key, value, report)) for key, value in skeleton.items()])


def _skeleton(report: RunReport) -> dict[str, Any]:
    """The report's JSON dict without its per-step maps (left empty)."""
    metrics = report.metrics
    light = dataclasses.replace(
        report,
        steps={},
        metrics=None if metrics is None else dataclasses.replace(metrics, steps={}),
    )
    return light.to_json_dict()


def _streamed(key: str, value: Any, report: RunReport) -> Any:
    """The top-level value for `key`: the skeleton's, or the per-step entries in its place."""
    if key == "steps":
        return Entries(_step_entries(report.steps))
    if key == "metrics" and report.metrics is not None:
        assert isinstance(value, dict)
        steps = Entries(_metrics_entries(report.metrics.steps))
        return Entries([(k, steps if k == "steps" else v) for k, v in value.items()])
    return value


def _step_entries(steps: dict[str, StepReport]) -> Iterator[tuple[str, Any]]:
    for name, step in steps.items():
        yield name, step_json_dict(step)


def _metrics_entries(steps: dict[str, StepMetrics]) -> Iterator[tuple[str, Any]]:
    dump = adapter(StepMetrics).dump_python
    for name, metrics in steps.items():
        yield name, dump(metrics, mode="json")
