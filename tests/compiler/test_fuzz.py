"""No input, however malformed, ends in an exception: mutated plans through the compiler."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.compiler.api import compile_source, decode_plan

DATA = Path(__file__).parent / "data"
SEEDS = [p.read_text() for p in sorted(DATA.glob("*.agent"))]
PIECES = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    '"',
    '"""',
    "${",
    "$${",
    "\\",
    "\\u{",
    ",",
    ":",
    "=",
    ".",
    "?.",
    "?[",
    "??",
    "#",
    "\n",
    ";",
    " ",
    "step",
    "plan",
    "for",
    "in",
    "if",
    "when",
    "after",
    "fallback",
    "retry 3",
    "timeout 0s",
    "1m30s",
    "10/s",
    "x2",
    "25%",
    "-3",
    "1e-3",
    "null",
    "env.X",
    "run.id",
    "len(",
    "<",
    "not in",
    "\t",
    "\x00",
    "é",
    "uses",
    "resource",
    "defaults",
    "use",
    "input",
    "output",
    "optional",
    "default",
]


@st.composite
def mutated_plan(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        if action == "insert":
            text = text[:pos] + draw(st.sampled_from(PIECES)) + text[pos:]
        elif action == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)) :]
        elif action == "duplicate":
            end = min(len(text), pos + draw(st.integers(1, 80)))
            text = text[:end] + text[pos:end] + text[end:]
        else:
            text = text[:pos] + draw(st.text(max_size=5)) + text[pos + 1 :]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_plan())
def test_mutated_plans_never_raise(text: str) -> None:
    result = compile_source(text, "fuzz.agent", plan_dir=DATA)
    assert (result.plan is None) == any(d.is_error for d in result.diagnostics)
    for diag in result.diagnostics:
        assert diag.message and diag.path == "fuzz.agent"
        result.render()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    text, problem = decode_plan(data, "bin.agent")
    if problem is None:
        compile_source(text, "bin.agent")


def test_degenerate_inputs() -> None:
    for text in [
        "",
        "\n\n",
        "plan",
        "{" * 5000,
        "(" * 5000 + ")" * 5000,
        "plan p {" + "[" * 3000,
        "plan p {\n" + "step a = std.echo(value = 1)\n" * 3,
    ]:
        result = compile_source(text, "x.agent")
        assert result.plan is None
        assert result.diagnostics
