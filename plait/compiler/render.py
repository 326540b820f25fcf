"""The one renderer of diagnostics: rustc-style text (colour only when asked) and JSON data.

triage.agent:12:14: error[E301]: unknown name `clasify` in step `draft`: ...
   |
12 |     prompt = clasify.output
   |              ^^^^^^^
   = help: did you mean `classify`?
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plait.compiler.diagnostics import Diagnostic, Severity
from plait.compiler.source import Span, source_lines

TAB = "    "
_RESET = "\x1b[0m"
_STYLE = {
    "error": "\x1b[1;31m",
    "warning": "\x1b[1;33m",
    "gutter": "\x1b[1;34m",
    "bold": "\x1b[1m",
    "help": "\x1b[1;36m",
    "label": "\x1b[1;34m",
}


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        return f"{_STYLE[style]}{text}{_RESET}" if self.color and text else text


def render_diagnostic(
    diag: Diagnostic, text: str | list[str] | None, *, color: bool = False
) -> str:
    """One diagnostic as text; `text` is the plan's source, or its `source_lines` (None: no
    source lines shown)."""
    paint = _Painter(color)
    lines = text if isinstance(text, list) else source_lines(text) if text is not None else []
    severity = diag.severity.value
    where = diag.path or "<plan>"
    if diag.span is not None:
        where += f":{diag.span.line}:{diag.span.column}"
    head = (
        f"{where}: {paint(severity, f'{severity}[{diag.code.id}]')}: {paint('bold', diag.message)}"
    )
    out = [head]
    spans: list[tuple[Span, str, str]] = []
    if diag.span is not None:
        spans.append((diag.span, "^", ""))
    spans.extend((label.span, "-", label.message) for label in diag.labels)
    shown = [s for s in spans if 0 < s[0].line <= len(lines)]
    width = max((len(str(s[0].line)) for s in shown), default=0)
    for span, mark, message in shown:
        out.extend(
            _snippet(
                lines[span.line - 1],
                span,
                mark,
                message,
                width,
                paint,
                severity if mark == "^" else "label",
            )
        )
    pad = " " * width
    out.extend(
        f"{pad} {paint('gutter', '=')} {paint('help', 'help')}: {hint}" for hint in diag.hints
    )
    return "\n".join(out)


def _snippet(
    line: str, span: Span, mark: str, message: str, width: int, paint: _Painter, style: str
) -> list[str]:
    """The source line and a row of marks under the span (its first line, if it spans more)."""
    start = max(span.column - 1, 0)
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    end = max(min(end, len(line)), start + 1)
    line, start, end = _window(line, start, end)
    shown = line.replace("\t", TAB)
    # A tab is wider than one column: shift the marks by the tabs before them.
    offset = line[:start].count("\t") * (len(TAB) - 1)
    inner = line[start:end].count("\t") * (len(TAB) - 1)
    marks = " " * (start + offset) + mark * (end - start + inner)
    if message:
        marks += " " + message
    gutter = paint("gutter", "|")
    return [
        f"{' ' * width} {gutter}",
        f"{paint('gutter', str(span.line).rjust(width))} {gutter} {shown}".rstrip(),
        f"{' ' * width} {gutter} {paint(style, marks)}",
    ]


MAX_LINE = 160  # longer source lines are cut to a window around the span


def _window(line: str, start: int, end: int) -> tuple[str, int, int]:
    """A long line cut around [start, end), with `…` where text was left out."""
    if len(line) <= MAX_LINE:
        return line, start, end
    left = max(0, start - MAX_LINE // 3)
    right = min(len(line), max(end, left + MAX_LINE))
    right = min(right, left + MAX_LINE)
    end = min(end, right)
    prefix = "…" if left > 0 else ""
    suffix = "…" if right < len(line) else ""
    shift = len(prefix) - left
    return prefix + line[left:right] + suffix, start + shift, end + shift


def render_all(
    diagnostics: Iterable[Diagnostic], sources: dict[str, str], *, color: bool = False
) -> str:
    """Every diagnostic, a blank line between; `sources` maps a path to its text."""
    # Each file is split once: a plan with hundreds of warnings would otherwise split its
    # whole text again for every one of them.
    lines = {path: source_lines(text) for path, text in sources.items()}
    blocks = [render_diagnostic(d, lines.get(d.path), color=color) for d in diagnostics]
    return "\n\n".join(blocks)


def summary(diagnostics: Iterable[Diagnostic]) -> str:
    """ "2 errors, 1 warning" (empty when there is nothing)."""
    diags = list(diagnostics)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = len(diags) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def to_json(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    """The JSON form: `{path, line, column, end_line, end_column, code, severity, message,
    hints}`; positions are null for a diagnostic without a span."""
    result = []
    for d in diagnostics:
        span = d.span
        result.append(
            {
                "path": d.path,
                "line": span.line if span else None,
                "column": span.column if span else None,
                "end_line": span.end_line if span else None,
                "end_column": span.end_column if span else None,
                "code": d.code.id,
                "severity": d.severity.value,
                "message": d.message,
                "hints": list(d.hints),
            }
        )
    return result
