"""Denial of service: `check` of a large or hostile file takes time linear in its size, deep
nesting is a diagnostic (never a RecursionError), and only `\\n`, `\\r\\n` and `\\r` end a line.

The timing test compares ratios, not absolute times: the same shape of input is compiled at
two sizes eight times apart; linear work grows about 8x, quadratic work 64x. The bound (24x)
is generous so a loaded machine does not fail it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from plait.compiler.api import compile_source
from plait.compiler.source import plan_text

HEAD = "plan p {\n  step a = std.echo(value = 1)\n"
BLANKS = [" ", "\t", "\n", " \n", "\r\n", "\t \r"]


def _steps(n: int) -> str:
    return "".join(f"  step s{i}_x = std.echo(value = {i})\n" for i in range(n // 40))


SHAPES: dict[str, Callable[[int], str]] = {
    **{
        f"blanks at the end {b!r}": (lambda n, b=b: HEAD + "}\n" + b * (n // len(b)))
        for b in BLANKS
    },
    **{
        f"blanks before the end {b!r}": (lambda n, b=b: HEAD + b * (n // len(b)) + "}\n")
        for b in BLANKS
    },
    "blanks in an unclosed plan": lambda n: HEAD + " " * n,
    "blanks then a comment": lambda n: HEAD + "}\n" + " " * n + "# end",
    "blanks then a stray character": lambda n: HEAD + " " * n + "@\n}\n",
    "a long string": lambda n: HEAD + '  step b = std.echo(value = "' + "x" * n + '")\n}\n',
    "a long comment": lambda n: HEAD + "  # " + "x" * n + "\n}\n",
    "a long line of list items": lambda n: (
        HEAD + "  step b = std.echo(value = [" + "1, " * (n // 3) + "])\n}\n"
    ),
    "a long unterminated string": lambda n: HEAD + '  step b = std.echo(value = "' + "y" * n,
    "many interpolations": lambda n: (
        HEAD + '  step b = std.echo(value = "' + "${a.output}" * (n // 11) + '")\n}\n'
    ),
    "many steps": lambda n: "plan p {\n" + _steps(n) + "}\n",
    "deep brackets": lambda n: (
        HEAD + "  step b = std.echo(value = " + "[" * (n // 2) + "]" * (n // 2) + ")\n}\n"
    ),
    "deep dicts": lambda n: (
        HEAD + "  step b = std.echo(value = " + "{a: " * (n // 4) + "1" + "}" * (n // 4) + ")\n}\n"
    ),
    "deep parentheses": lambda n: (
        HEAD + "  step b = std.echo(value = " + "(" * (n // 2) + "1" + ")" * (n // 2) + ")\n}\n"
    ),
    "deep not": lambda n: HEAD + "  step b = std.echo(value = " + "not " * (n // 4) + "true)\n}\n",
    "deep interpolation": lambda n: (
        HEAD + '  step b = std.echo(value = "${' + "[" * (n // 2) + "]" * (n // 2) + '}")\n}\n'
    ),
    "unclosed brackets": lambda n: HEAD + "  step b = std.echo(value = " + "[" * n,
    "unicode line breaks in a comment": lambda n: (
        HEAD + "  # " + "\u2028\x85\u2029\x0b\x0c" * (n // 5) + "\n}\n"
    ),
}

SMALL = 10_000
FACTOR = 8


def _best_time(text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()  # CPU time: other processes on the machine do not count
        result = compile_source(text, "big.agent")
        best = min(best, time.process_time() - start)
        for diag in result.diagnostics:  # a diagnostic, whatever the input
            assert diag.message
    return best


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_check_time_is_linear_in_the_size(shape: str) -> None:
    make = SHAPES[shape]
    compile_source(make(100))  # warm up imports and caches
    small = _best_time(make(SMALL))
    large = _best_time(make(SMALL * FACTOR))
    # 10 ms floor: below it the ratio of two tiny times is noise (caches), not growth; a
    # quadratic stage is far above it (trailing blanks took 0.3 s for the small size)
    ratio = large / max(small, 0.01)
    assert ratio < FACTOR * 3, (
        f"{shape}: {SMALL} chars {small:.4f}s, {SMALL * FACTOR} chars {large:.4f}s (x{ratio:.1f})"
    )


@pytest.mark.parametrize("depth", [100, 5_000, 50_000])
@pytest.mark.parametrize(
    "shape",
    [
        "deep brackets",
        "deep dicts",
        "deep parentheses",
        "deep not",
        "deep interpolation",
        "unclosed brackets",
    ],
)
def test_deep_nesting_is_a_diagnostic(shape: str, depth: int) -> None:
    result = compile_source(SHAPES[shape](depth), "deep.agent")
    if depth > 200:
        assert result.plan is None
        assert any(d.is_error for d in result.diagnostics)
    result.render()


@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"])
def test_unicode_line_breaks_do_not_shift_diagnostics(brk: str) -> None:
    for where in (f"  # a{brk}b\n", f'  step c = std.echo(value = "a{brk}b")\n'):
        text = f"plan p {{\n{where}  step a = std.echo(value = 1)\n  step b = nope.x()\n}}\n"
        result = compile_source(text, "u.agent")
        [diag] = result.diagnostics
        assert (diag.code.id, diag.span.line) == ("E304", 4) if diag.span else False
        shown = result.render().splitlines()
        assert shown[2] == "4 |   step b = nope.x()"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_end_counts_as_one(newline: str) -> None:
    text = newline.join(
        ["plan p {", "  # c", "  step a = std.echo(value = 1)", "  step b = nope.x()", "}", ""]
    )
    result = compile_source(text, "n.agent")
    [diag] = result.diagnostics
    assert diag.span is not None and (diag.span.line, diag.span.column) == (4, 12)
    assert "4 |   step b = nope.x()" in result.render()


def test_plan_text_keeps_positions_and_drops_trailing_blanks() -> None:
    assert plan_text("plan p {}\r\n \t\n\n") == "plan p {}\n"
    assert plan_text("plan p {}") == "plan p {}"
    assert plan_text("a\rb\r\nc") == "a\nb\nc"
    assert plan_text("a\u2028b\n") == "a\u2028b\n"
    assert plan_text(" \n\t") == ""
