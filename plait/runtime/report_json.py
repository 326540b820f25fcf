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
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import pydantic_core

from plait.runtime.events import adapter
from plait.runtime.metrics import StepMetrics
from plait.runtime.report import RunReport, StepReport, step_json_dict

_INDENT = "  "  # what `indent=2` writes per level


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...


@dataclasses.dataclass(slots=True)
class _Entries:
    """A JSON object whose entries are made one at a time, as they are written."""

    entries: Iterable[tuple[str, Any]]


def write_report_json(report: RunReport, out: TextSink) -> None:
    """Write `report` as indented JSON text (what `--json` and `--report` carry), without a
    trailing newline."""
    skeleton = _skeleton(report)
    fields = [(key, _streamed(key, value, report)) for key, value in skeleton.items()]
    _write_object(out, fields, 0)


def report_json_text(report: RunReport) -> str:
    """The same text as one string (for small reports and tests)."""
    pieces: list[str] = []
    write_report_json(report, _Collect(pieces))
    return "".join(pieces)


class _Collect:
    __slots__ = ("pieces",)

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def write(self, text: str, /) -> int:
        self.pieces.append(text)
        return len(text)


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
        return _Entries(_step_entries(report.steps))
    if key == "metrics" and report.metrics is not None:
        assert isinstance(value, dict)
        steps = _Entries(_metrics_entries(report.metrics.steps))
        return _Entries([(k, steps if k == "steps" else v) for k, v in value.items()])
    return value


def _step_entries(steps: dict[str, StepReport]) -> Iterator[tuple[str, Any]]:
    for name, step in steps.items():
        yield name, step_json_dict(step)


def _metrics_entries(steps: dict[str, StepMetrics]) -> Iterator[tuple[str, Any]]:
    dump: Callable[..., Any] = adapter(StepMetrics).dump_python
    for name, metrics in steps.items():
        yield name, dump(metrics, mode="json")


def _write_object(out: TextSink, entries: Iterable[tuple[str, Any]], depth: int) -> None:
    """A JSON object, entry by entry, laid out as `to_json(..., indent=2)` lays it out at
    `depth`: `{}` when empty, else one entry per line and the brace on a line of its own."""
    pad = "\n" + _INDENT * (depth + 1)
    separator = "{" + pad
    for key, value in entries:
        out.write(separator + pydantic_core.to_json(key).decode() + ": ")
        _write_value(out, value, depth + 1)
        separator = "," + pad
    out.write("{}" if separator[0] == "{" else "\n" + _INDENT * depth + "}")


def _write_value(out: TextSink, value: Any, depth: int) -> None:
    if isinstance(value, _Entries):
        _write_object(out, value.entries, depth)
        return
    text = pydantic_core.to_json(value, indent=2).decode()
    # (a JSON text's line breaks are all layout: a string's own are escaped)
    out.write(text.replace("\n", "\n" + _INDENT * depth) if depth else text)
