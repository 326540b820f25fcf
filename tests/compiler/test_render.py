"""The renderer: rustc-style text (golden files) and the JSON form.

Goldens live in tests/compiler/golden/; run with PLAIT_UPDATE_GOLDEN=1 to rewrite them.
"""

from __future__ import annotations

import os
from pathlib import Path

from plait.compiler import codes
from plait.compiler.diagnostics import Label, error, warning
from plait.compiler.render import render_all, render_diagnostic, summary, to_json
from plait.compiler.source import Span

GOLDEN = Path(__file__).parent / "golden"
SOURCE = """plan t {
  step classify = std.echo(value = 1)
  step draft = std.echo(value = clasify.output)
\tstep tabbed = std.echo(value = 2)
  output x = history.output.body
}
"""


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PLAIT_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(actual)
    assert actual == path.read_text(), f"golden {name} differs (PLAIT_UPDATE_GOLDEN=1 rewrites)"


def span(line: int, col: int, end: int, end_line: int | None = None) -> Span:
    return Span(line=line, column=col, end_line=end_line or line, end_column=end)


def sample() -> list:  # type: ignore[type-arg]
    return [
        error(
            codes.UNKNOWN_REFERENCE,
            "unknown name `clasify`",
            span(3, 33, 40),
            "did you mean `classify`?",
            path="t.agent",
        ),
        error(
            codes.DEPENDENCY_CYCLE,
            "dependency cycle: `classify` depends on `draft`",
            span(2, 8, 16),
            "remove a reference",
            labels=(Label(span(3, 8, 13), "`draft` is part of the cycle"),),
            path="t.agent",
        ),
        error(codes.UNKNOWN_TOOL, "unknown tool", span(4, 16, 24), path="t.agent"),
        warning(
            codes.NULLABLE_ACCESS,
            "`history.output` may be null",
            span(5, 14, 33),
            "use `?.`",
            path="t.agent",
        ),
        error(codes.BAD_ENCODING, "no position", None, path="t.agent"),
        error(codes.UNCLOSED_BLOCK, "multi-line", span(1, 8, 2, end_line=6), path="t.agent"),
    ]


def test_text_rendering_matches_golden() -> None:
    golden("render_plain.txt", render_all(sample(), {"t.agent": SOURCE}) + "\n")


def test_colour_only_when_asked() -> None:
    diag = sample()[0]
    plain = render_diagnostic(diag, SOURCE)
    coloured = render_diagnostic(diag, SOURCE, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31merror[E301]\x1b[0m" in coloured
    golden("render_colour.txt", coloured + "\n")


def test_first_lines_follow_the_contract() -> None:
    text = render_diagnostic(sample()[0], SOURCE)
    assert text.splitlines() == [
        "t.agent:3:33: error[E301]: unknown name `clasify`",
        "  |",
        "3 |   step draft = std.echo(value = clasify.output)",
        "  |                                 ^^^^^^^",
        "  = help: did you mean `classify`?",
    ]
    assert render_diagnostic(sample()[3], SOURCE).startswith(
        "t.agent:5:14: warning[W403]: `history.output` may be null"
    )


def test_carets_follow_tabs() -> None:
    lines = render_diagnostic(sample()[2], SOURCE).splitlines()
    code_line, caret_line = lines[2], lines[3]
    start = caret_line.index("^")
    assert code_line[start : start + caret_line.count("^")] == "std.echo"


def test_json_form() -> None:
    data = to_json(sample()[:1] + sample()[4:5])
    assert data == [
        {
            "path": "t.agent",
            "line": 3,
            "column": 33,
            "end_line": 3,
            "end_column": 40,
            "code": "E301",
            "severity": "error",
            "message": "unknown name `clasify`",
            "hints": ["did you mean `classify`?"],
        },
        {
            "path": "t.agent",
            "line": None,
            "column": None,
            "end_line": None,
            "end_column": None,
            "code": "E110",
            "severity": "error",
            "message": "no position",
            "hints": [],
        },
    ]


def test_summary() -> None:
    assert summary(sample()) == "5 errors, 1 warning"
    assert summary([]) == ""


def test_long_lines_are_cut_around_the_span() -> None:
    text = "x = " + "[" * 5000 + "]" * 5000
    diag = error(codes.SYNTAX_ERROR, "too deep", span(1, 2000, 2001), path="t.agent")
    lines = render_diagnostic(diag, text).splitlines()
    assert len(lines[2]) < 200 and lines[2].startswith("1 | …[[[") and lines[2].endswith("[…")
    caret = lines[3].index("^")
    assert lines[3].count("^") == 1 and lines[2][caret] == "["
    short = render_diagnostic(error(codes.SYNTAX_ERROR, "m", span(1, 1, 2)), "ab")
    assert short.splitlines()[2] == "1 | ab"


def test_end_to_end_rendering_matches_golden() -> None:
    """A real plan through the whole compiler: messages, positions and hints together."""
    from plait.compiler.api import compile_file

    data = Path(__file__).parent / "data"
    for name in ("references", "fallbacks", "warnings"):
        result = compile_file(data / f"{name}.agent")
        text = result.render().replace(str(data), "DATA")
        golden(f"e2e_{name}.txt", text + "\n")
