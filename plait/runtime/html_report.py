"""`plait report RUN_ID -o run.html`: one self-contained HTML page about a recorded run.

No external assets (no scripts, fonts or stylesheets to fetch): the outcome and reasons,
the run metrics, the plan's graph coloured by step status as inline SVG (drawn by Graphviz;
a note instead when `dot` is missing), a Gantt timeline (inline SVG) of every attempt with
its resource queueing and the backoff waits between attempts, a table of steps, and the
error of each failed attempt. Values shown are the masked ones of the report and events.
Each step's row carries `data-step` and `data-status`, so tools (and tests) can read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from plait.compiler.ir import Plan
from plait.errors import UserError
from plait.runtime.events import parse_ts
from plait.runtime.metrics import RunMetrics

STATUS_COLOURS = {
    "succeeded": "#2e9d4f",
    "recovered": "#e0a020",
    "failed": "#d0383a",
    "skipped": "#9a9a9a",
    "cancelled": "#8a4fc7",
    "running": "#3a7bd5",
    "pending": "#cfcfcf",
}
QUEUED_COLOUR = "#b8c4d6"
BACKOFF_COLOUR = "#f3d27a"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f5f5f5}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.muted{color:#777} pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:320px}
.graph svg{max-width:100%;height:auto} .legend span{margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""


def _badge(status: str | None) -> str:
    colour = STATUS_COLOURS.get(status or "", "#555")
    text = escape(status or "unfinished")
    return f'<span class="badge" style="background:{colour}">{text}</span>'


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}s"


def render_html(
    report: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    plan: Plan | None,
    metrics: RunMetrics,
) -> str:
    """The whole page. `report` is a run report's JSON, `events` the run's events in order."""
    title = f"plait run {report.get('run_id')} — {report.get('plan')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        _header(report),
        _metrics_section(metrics),
        _usage_section(report),
        "<h2>Graph</h2>",
        _graph_section(plan, report),
        "<h2>Timeline</h2>",
        gantt_svg(events, list(report.get("steps", {}))),
        _legend(),
        _steps_section(report, metrics),
        _failures_section(events),
        _values_section(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(report: Mapping[str, Any]) -> str:
    rows = [
        ("run", report.get("run_id")),
        ("plan", report.get("plan")),
        ("started", report.get("started_at")),
        ("finished", report.get("finished_at")),
        ("duration", _secs(report.get("duration_s"))),
        ("cancelled by", report.get("cancelled_by")),
        ("plan sha256", report.get("plan_sha256")),
    ]
    table = "".join(
        f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in rows if v not in (None, "")
    )
    reasons = "".join(f"<li>{escape(_reason_text(r))}</li>" for r in report.get("reasons", []))
    return (
        f"<h1>{escape(str(report.get('plan')))} {_badge(report.get('outcome'))}</h1>"
        f"<table>{table}</table>" + (f"<h2>Why</h2><ul>{reasons}</ul>" if reasons else "")
    )


def _reason_text(reason: Mapping[str, Any]) -> str:
    who = f"step {reason['step']}" if reason.get("step") else f"output {reason.get('output')}"
    if not reason.get("status"):  # an output whose expression failed has no status
        return f"{who}: {reason.get('why')}"
    kind = f", {reason['kind']}" if reason.get("kind") else ""
    return f"{who}: {reason.get('why')} ({reason['status']}{kind})"


def _metrics_section(m: RunMetrics) -> str:
    rows = [
        ("retries", m.retries),
        ("fallbacks used", m.fallbacks_used),
        ("breaker trips", m.breaker_trips),
        ("makespan", _secs(m.makespan_s)),
        ("critical path", f"{_secs(m.critical_path_s)} ({' → '.join(m.critical_path)})"),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Metrics</h2><table id="metrics">{cells}</table>'


def _usage_section(report: Mapping[str, Any]) -> str:
    """Model usage per step and for the run (only when some step called a model)."""
    rows = [
        (name, step["usage"]) for name, step in report.get("steps", {}).items() if step.get("usage")
    ]
    if not rows or not report.get("usage"):
        return ""
    rows.append(("whole run", report["usage"]))
    head = (
        "<tr><th>step</th><th>model</th><th>requests</th><th>prompt tokens</th>"
        "<th>completion tokens</th><th>total tokens</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(
            f"<td>{escape(str('-' if u.get(k) is None else u.get(k)))}</td>"
            for k in ("model", "requests", "prompt_tokens", "completion_tokens", "total_tokens")
        )
        + "</tr>"
        for name, u in rows
    )
    return f'<h2>Model usage</h2><table id="usage">{head}{body}</table>'


def _graph_section(plan: Plan | None, report: Mapping[str, Any]) -> str:
    if plan is None:
        return '<p class="muted">The plan is not available: no graph.</p>'
    from plait.compiler.graph import render

    try:
        svg = render(plan, "svg", step_status(report)).decode("utf-8")
    except UserError as exc:
        return f'<p class="muted">No graph: {escape(str(exc))}</p>'
    svg = re.sub(r"^.*?(?=<svg)", "", svg, flags=re.S)  # drop the XML prologue and doctype
    return f'<div class="graph">{svg}</div>'


def step_status(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per step {status, attempts, duration_s}, as the graph colours a recorded run."""
    return {
        name: {
            "status": s.get("status"),
            "attempts": s.get("attempts"),
            "duration_s": s.get("duration_s"),
        }
        for name, s in (report.get("steps") or {}).items()
    }


def _legend() -> str:
    items = [(c, s) for s, c in STATUS_COLOURS.items() if s not in ("pending", "running")]
    items += [(QUEUED_COLOUR, "queued for resources"), (BACKOFF_COLOUR, "backoff wait")]
    spans = "".join(
        f'<span><i class="sw" style="background:{c}"></i>{escape(label)}</span>'
        for c, label in items
    )
    return f'<p class="legend">{spans}</p>'


def _steps_section(report: Mapping[str, Any], m: RunMetrics) -> str:
    head = (
        "<tr><th>step</th><th>status</th><th>reason</th><th>attempts</th><th>duration</th>"
        "<th>backoff</th><th>queued</th><th>fallback used</th><th>error</th></tr>"
    )
    rows = []
    for name, s in (report.get("steps") or {}).items():
        sm = m.steps.get(name)
        err = s.get("error") or {}
        error = f"{err.get('kind')}: {err.get('message')}" if err else ""
        rows.append(
            f'<tr data-step="{escape(name)}" data-status="{escape(str(s.get("status")))}">'
            f"<td>{escape(name)}</td><td>{_badge(s.get('status'))}</td>"
            f"<td>{escape(str(s.get('reason') or ''))}</td><td>{s.get('attempts', 0)}</td>"
            f"<td>{_secs(s.get('duration_s'))}</td>"
            f"<td>{_secs(sm.backoff_s) if sm and sm.backoff_s else ''}</td>"
            f"<td>{_secs(sm.queued_s) if sm else ''}</td>"
            f"<td>{escape(str(s.get('fallback_used') or ''))}</td><td>{escape(error)}</td></tr>"
        )
    return f'<h2>Steps</h2><table id="steps">{head}{"".join(rows)}</table>'


def _failures_section(events: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for e in events:
        if e.get("event") == "attempt_finished" and e.get("status") != "succeeded":
            where = f"{e.get('step')}" + (
                f"[{e['element']}]" if e.get("element") is not None else ""
            )
            rows.append(
                f'<tr data-step="{escape(str(e.get("step")))}"><td>{escape(where)}</td>'
                f"<td>{e.get('attempt')}</td><td>{escape(str(e.get('status')))}</td>"
                f"<td>{escape(str(e.get('kind') or ''))}</td>"
                f"<td>{escape(str(e.get('message') or ''))}</td></tr>"
            )
    if not rows:
        return '<h2>Failed attempts</h2><p class="muted">None.</p>'
    head = "<tr><th>step</th><th>attempt</th><th>status</th><th>kind</th><th>message</th></tr>"
    return f'<h2>Failed attempts</h2><table id="failures">{head}{"".join(rows)}</table>'


def _values_section(report: Mapping[str, Any]) -> str:
    def block(title: str, value: Any) -> str:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        return f"<h2>{title}</h2><pre>{escape(text)}</pre>"

    return block("Outputs", report.get("outputs", {})) + block("Inputs", report.get("inputs", {}))


# --- the Gantt timeline ---------------------------------------------------------------------

_ROW, _LABEL_W, _WIDTH = 22, 170, 900


MAX_ELEMENT_ROWS = 40  # a bigger map gets one lane per group of consecutive elements


def gantt_svg(events: Sequence[Mapping[str, Any]], step_order: list[str]) -> str:
    """An inline SVG: one row per step, and per element of a map step (a lane per group of
    elements for a big map); per attempt a queued part and a call part coloured by its
    result, failures drawn last so nothing hides them; backoff waits between attempts.
    Times are relative to the run's start."""
    if not events or not any(e.get("ts") for e in events):
        return '<p class="muted">No events recorded.</p>'
    start = min(parse_ts(str(e["ts"])) for e in events if e.get("ts"))
    end = max(parse_ts(str(e["ts"])) for e in events if e.get("ts"))
    total = max((end - start).total_seconds(), 1e-3)
    lanes = _Lanes(events, step_order)
    scale = (_WIDTH - _LABEL_W - 10) / total

    def x(ts: str) -> float:
        return _LABEL_W + (parse_ts(ts) - start).total_seconds() * scale

    shapes = [_row_label(label, i) for i, label in enumerate(lanes.labels)]
    shapes += _bars(events, lanes, x, scale)
    height = _ROW * len(lanes.labels) + 30
    axis = (
        f'<text x="{_LABEL_W}" y="{height - 8}" font-size="11" fill="#777">0s</text>'
        f'<text x="{_WIDTH - 10}" y="{height - 8}" font-size="11" fill="#777" '
        f'text-anchor="end">{total:.3f}s</text>'
    )
    return (
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{height}" font-family="sans-serif">{"".join(shapes)}{axis}</svg>'
    )


class _Lanes:
    """Which timeline row an attempt of (step, element) is drawn in, and each row's label."""

    def __init__(self, events: Sequence[Mapping[str, Any]], step_order: list[str]) -> None:
        steps = list(step_order)
        elements: dict[str, set[int]] = {}
        for e in events:
            step = e.get("step")
            if step is None:
                continue
            if step not in steps:
                steps.append(str(step))
            if e.get("element") is not None and e.get("event") in _DRAWN:
                elements.setdefault(str(step), set()).add(int(e["element"]))
        self.labels: list[str] = []
        self._rows: dict[tuple[str, int | None], int] = {}
        self._group: dict[str, int] = {}
        for step in steps:
            self._add_step(step, sorted(elements.get(step, ())))

    def _add_step(self, step: str, elements: list[int]) -> None:
        self._rows[(step, None)] = len(self.labels)
        if not elements:
            self.labels.append(step)
            return
        count = elements[-1] + 1
        group = 1 if count <= MAX_ELEMENT_ROWS else -(-count // MAX_ELEMENT_ROWS)
        self._group[step] = group
        for lane in sorted({e // group for e in elements}):
            self._rows[(step, lane)] = len(self.labels)
            low, high = lane * group, min(count, (lane + 1) * group) - 1
            self.labels.append(f"{step}[{low}]" if low == high else f"{step}[{low}-{high}]")

    def row(self, step: str, element: int | None) -> int:
        if element is None or step not in self._group:
            return self._rows[(step, None)]
        return self._rows.get((step, element // self._group[step]), self._rows[(step, None)])


_DRAWN = frozenset({"attempt_started", "attempt_finished", "retry_scheduled"})


def _row_label(name: str, i: int) -> str:
    return (
        f'<text x="4" y="{i * _ROW + 15}" font-size="12">{escape(name)}</text>'
        f'<line x1="{_LABEL_W}" x2="{_WIDTH}" y1="{(i + 1) * _ROW}" y2="{(i + 1) * _ROW}" '
        'stroke="#eee"/>'
    )


def _rect(
    x0: float, width: float, row: int, colour: str, tip: str, *, thin: bool = False, cls: str = ""
) -> str:
    top = row * _ROW + (8 if thin else 3)
    h = 6 if thin else _ROW - 6
    return (
        f'<rect class="{cls}" x="{x0:.1f}" y="{top}" width="{max(width, 1.5):.1f}" '
        f'height="{h}" fill="{colour}"><title>{escape(tip)}</title></rect>'
    )


def _bars(events: Sequence[Mapping[str, Any]], lanes: _Lanes, x: Any, scale: float) -> list[str]:
    out: list[str] = []
    failures: list[str] = []  # drawn last: later bars never cover a failure
    open_at: dict[tuple[Any, ...], str] = {}
    for e in events:
        name, step = e.get("event"), e.get("step")
        if step is None or not e.get("ts"):
            continue
        key = (e.get("session"), step, e.get("attempt"), e.get("element"))
        element = e.get("element")
        row = lanes.row(str(step), int(element) if element is not None else None)
        label = f"{step}" + (f"[{e['element']}]" if e.get("element") is not None else "")
        if name == "attempt_started":
            open_at[key] = str(e["ts"])
        elif name == "attempt_finished" and key in open_at:
            began = x(open_at.pop(key))
            span = x(str(e["ts"])) - began
            queued = min(float(e.get("queued_s") or 0.0) * scale, span)
            if queued > 0:
                out.append(
                    _rect(
                        began,
                        queued,
                        row,
                        QUEUED_COLOUR,
                        f"{label} attempt {e.get('attempt')}: queued {e.get('queued_s')}s",
                        cls="queued",
                    )
                )
            status = str(e.get("status"))
            tip = f"{label} attempt {e.get('attempt')}: {status} in {e.get('duration_s')}s"
            if e.get("kind"):
                tip += f" ({e['kind']}: {e.get('message')})"
            (out if status == "succeeded" else failures).append(
                _rect(
                    began + queued,
                    span - queued,
                    row,
                    STATUS_COLOURS.get(status, "#555"),
                    tip,
                    cls=f"attempt {status}",
                )
            )
        elif name == "retry_scheduled":
            delay = float(e.get("delay_s") or 0.0)
            out.append(
                _rect(
                    x(str(e["ts"])),
                    delay * scale,
                    row,
                    BACKOFF_COLOUR,
                    f"{label}: backoff {delay}s before attempt {e.get('attempt')}",
                    thin=True,
                    cls="backoff",
                )
            )
    return out + failures
