"""The fast parser against the LALR parser: it declines, or builds the very same tree.

plait/compiler/fastparse.py reads well-formed plans without the LALR tables; parse.py's
LALR parser (with the transformer) stays the definition. Here every plan we have (the
examples, the `.agent` files of the tests, the SPEC example, the benchmark plans) and
generated plans go through both: where the fast path answers, the trees must be identical
(tests/compiler/fastcheck.py compares classes, values with their types, spans and field
order). The plans it is meant for must not be declined, or its speed would silently go.
Every other compiler test checks the same on the plans it parses (conftest.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.compiler import parse as parse_module
from plait.compiler.parse import parse
from tests.compiler.fastcheck import agrees, fast, lalr
from tests.compiler.test_fuzz import mutated_plan
from tests.compiler.test_parse import _PIECES, spec_example

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.compile import generate  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.agent"))
TEST_PLANS = sorted((ROOT / "tests").rglob("*.agent"))
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the plans we have --------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_take_the_fast_path(path: Path) -> None:
    assert agrees(path.read_text())


def test_spec_example_takes_the_fast_path() -> None:
    assert agrees(spec_example())


@pytest.mark.parametrize("steps", [1, 2, 10, 51, 100, 1000])
def test_benchmark_plans_take_the_fast_path(steps: int) -> None:
    assert agrees(generate(steps))


@pytest.mark.parametrize("path", TEST_PLANS, ids=lambda p: str(p.relative_to(ROOT)))
def test_test_plans_agree(path: Path) -> None:
    text = path.read_text()
    handled = agrees(text)
    _, diagnostics = lalr(text)
    if not any(d.is_error for d in diagnostics):
        assert handled, "a plan without syntax errors was declined"


def test_parse_uses_the_fast_path_and_can_be_told_not_to() -> None:
    text = generate(20)
    assert fast(text) is not None
    plan, diagnostics = parse(text, "t.agent")
    assert diagnostics == [] and plan == fast(text)
    parse_module.FAST_PATH = False
    try:
        assert parse(text, "t.agent") == (plan, [])
    finally:
        parse_module.FAST_PATH = True


# --- the corners of the language (SPEC section 2) ------------------------------------------

HANDLED = {
    "soft keywords as names": """plan p {
  input max: int = 3
  input rate: str = "r"
  step timeout = std.echo(value = max, retry = rate, when = {after: 1, if: 2, step: 3})
  output uses = timeout.output.max
}""",
    "any word after a dot": "plan p {\n  output o = a.in.not.step.true?.for[0]\n}",
    "durations and factors": """plan p {
  deadline 1h30m
  defaults {
    timeout 1.5s; retry 3 on timeout, rate_limited backoff 250ms x1.5 max 1m30s jitter
  }
  step a = f() { retry 0; timeout 100ms }
  step b = f() { retry 2 backoff 0ms x2 }
  step c = f() { retry 1 backoff 1s max 2s }
}""",
    "strings": r"""plan p "a \"description\"" {
  use "pkg.mod"
  use """ + '"""./tools.py"""' + r"""
  step a = f(x = "tab\there \u{1F600} \$ $${not} ${a.b?.c} ${ len(x) }", y = "")
  step b = f(x = """ + '"""\n      one ${x}\n        two\n      three\n  """' + r""")
  step c = f(x = """ + '"""${a ?? "none"} and ${ b["k"] }"""' + r""")
}""",
    "brackets across lines, trailing commas, comments": """# head
plan p { # after the brace
  step a = f(   # comment in brackets
    x = [1, 2,
      3,],
    y = {
      k: "v",   # comment
      "quoted key": [],
    },
  ) {
    optional
  }

  ; ; step b = f(x = (a
    ?? b)) ; output o = [a
    [0]]
}
""",
    "operators": """plan p {
  output a = not a.x == 1 and b or c ?? d
  output b = a not in [1] or not not b
  output c = a?[0]?.b[1].c ?? {k: null, t: true, f: false}
  output d = x in y and len(z) >= 2 and -3 < 1e-3 and 1_000 != 0.5
  output e = env.HOME ?? env.X.y ?? run.id
}""",
    "resources and map steps": """plan p {
  concurrency 4
  resource r { rate 10/s; concurrency 2; breaker after 3 failures cooldown 5s }
  resource s { breaker after 1 failures }
  step m = for x in [1, 2]: std.echo(value = x) { concurrency 2; tolerate 12.5% }
  step n = for item in m.output: a.b.c(v = item) {
    after m, other
    fallback n2
    default [1]
    when any_failed
    if m.status == "succeeded"
    uses r, s
  }
}""",
    "inputs": """plan p {
  input a: list[list[str]] = [["x"], []]
  input b: dict = {k: [1, {n: null}]}
  input c: secret
}""",
}


@pytest.mark.parametrize("name", HANDLED)
def test_the_common_language_takes_the_fast_path(name: str) -> None:
    assert agrees(HANDLED[name])


DECLINED = {
    "syntax error": "plan p {\n  step a = f(x = )\n}",
    "reserved word as a step": "plan p {\n  step in = f()\n}",
    "reserved word as a name": "plan p {\n  output o = type\n}",
    "bad duration": "plan p {\n  deadline 30sec\n}",
    "bad escape": 'plan p {\n  output o = "\\d"\n}',
    "unknown rule": "plan p {\n  step a = f() { when sometimes }\n}",
    "unknown error kind": "plan p {\n  step a = f() { retry 1 on oops }\n}",
    "float retry": "plan p {\n  step a = f() { retry 1.5 }\n}",
    "non-literal default": "plan p {\n  input a: str = b\n}",
    "chained comparison": "plan p {\n  output o = a < b < c\n}",
    "brace on the next line": "plan p {\n  step a = f()\n  {\n    optional\n  }\n}",
    "two plans": "plan p {\n}\nplan q {\n}",
    "item outside the plan": "plan p {\n}\noutput o = 1",
    "semicolon in brackets": "plan p {\n  output o = [1; 2]\n}",
    "interpolation in a key": 'plan p {\n  output o = {"${a}": 1}\n}',
    "too deep": "plan p {\n  output o = " + "[" * 70 + "]" * 70 + "\n}",
    "operator chain too deep": "plan p {\n  output o = a" + " ?? a" * 70 + "\n}",
    "unterminated string": 'plan p {\n  output o = "abc\n}',
    "unterminated string before a comment": 'plan p {\n  input n: int = "   # c\n}',
    "unit after a space": "plan p {\n  deadline 3 days\n}",
    "a NUL after the plan": "plan p {\n}\x00\n",
    "a stray character": "plan p {\n  output o = a @ b\n}",
}


def test_the_suite_checks_every_parse() -> None:
    """conftest.py has every parse of the compiler tests compared with the LALR parser."""
    from tests.compiler.fastcheck import verified_fast_parse

    assert parse_module._fast_parse is verified_fast_parse


@pytest.mark.parametrize("name", DECLINED)
def test_errors_are_left_to_the_lalr_parser(name: str) -> None:
    text = DECLINED[name]
    assert fast(text) is None
    assert any(d.is_error for d in lalr(text)[1])


# --- generated plans ------------------------------------------------------------------------


@_SETTINGS
@given(mutated_plan())
def test_mutated_plans_agree(text: str) -> None:
    agrees(text)


@_SETTINGS
@given(st.lists(st.sampled_from(_PIECES), max_size=80).map(" ".join))
def test_token_soup_agrees(text: str) -> None:
    agrees(text)


@_SETTINGS
@given(st.text(alphabet='plan p{}()[]stepa=f.x"${};\n #\\:,', max_size=120))
def test_punctuation_soup_agrees(text: str) -> None:
    agrees("plan p {\n" + text + "\n}")


VALID_SEEDS = [p.read_text() for p in EXAMPLES] + [spec_example(), generate(12)]
LAYOUT = [" ", "\n", "\t", " # comment\n", ";", "\r\n", "\n\n", "  ", "\ufeff"]


@st.composite
def relaid_plan(draw: st.DrawFn) -> str:
    """A valid plan with blanks, line ends, comments or `;` put between random characters:
    inside brackets most keep it valid (newlines are ignored there), elsewhere most break it."""
    text = draw(st.sampled_from(VALID_SEEDS))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.sampled_from(LAYOUT)) + text[pos:]
    return text


@_SETTINGS
@given(relaid_plan())
def test_relaid_plans_agree(text: str) -> None:
    agrees(text)


WORDS = ["a", "b_2", "max", "rate", "timeout", "on", "x2", "env", "run", "step", "in", "not",
         "true", "null", "for", "type", "deadline", "output", "concurrency", "len"]
SPACE = st.sampled_from(["", " ", "  ", "\n", " # c\n", "\t"])


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> str:
    """A random expression (valid or not: either way both parsers must agree)."""
    sp = draw(SPACE) if draw(st.booleans()) else " "
    atoms = [
        st.sampled_from(WORDS),
        st.sampled_from(["a.b", "a.b.c", "env.X", "true.x", "s1.output.max", "a.in"]),
        st.sampled_from(["0", "-3", "1.5", "1e-3", "1_000", "2.5e+3", "3s", "1__0", "007"]),
        st.sampled_from(['"x"', '""', '"${a}"', '"${ a.b }"', '"a${a ?? b}b"', '"$${x}"',
                         '"\\n\\t\\u{41}"', '"${}"', '"${true}"', '"${a[0]}"', '"\\q"']),
        st.sampled_from(['"""\n  x ${a}\n"""', '"""x"""', '"""\n  a\n    b ${ c ?? "d" }\n"""']),
    ]
    if depth >= 3:
        return draw(st.one_of(atoms))
    inner = expression(depth + 1)
    shapes = st.sampled_from(["atom", "binary", "not", "postfix", "list", "dict", "call", "paren"])
    shape = draw(shapes)
    if shape == "binary":
        op = draw(st.sampled_from(["??", "or", "and", "==", "!=", "<", ">=", "in", "not in"]))
        return f"{draw(inner)}{sp}{op}{sp}{draw(inner)}"
    if shape == "not":
        return f"not {draw(inner)}"
    if shape == "postfix":
        suffix = draw(st.sampled_from([".f", "?.f", "[0]", "?[i]", ".max", "[a ?? b]"]))
        return f"{draw(inner)}{suffix}"
    if shape == "list":
        items = draw(st.lists(inner, max_size=3))
        return "[" + sp + f",{sp}".join(items) + draw(st.sampled_from(["", ","])) + "]"
    if shape == "dict":
        keys = st.sampled_from(["k", '"q k"', "step", "in"])
        entries = draw(st.lists(st.tuples(keys, inner), max_size=3))
        return "{" + sp + f",{sp}".join(f"{k}:{sp}{v}" for k, v in entries) + "}"
    if shape == "call":
        return f"len({draw(inner)})"
    if shape == "paren":
        return f"({sp}{draw(inner)}{sp})"
    return draw(st.one_of(atoms))


POLICIES = st.sampled_from([
    "timeout 5s", "timeout 1m30s", "retry 2", "retry 3 on timeout, transient backoff 1s x2 max 8s",
    "retry 1 backoff 10ms jitter", "optional", "when all_done", "after a, b", "fallback f1",
    "uses api", "concurrency 3", "tolerate 25%", "default EXPR", "if EXPR",
])


@st.composite
def plan(draw: st.DrawFn) -> str:
    """A random plan of the usual items, with random expressions and spacing."""
    lines = ["plan gen {"]
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["step", "map", "output", "input", "resource"]))
        if kind in ("step", "map"):
            args = ", ".join(f"{w} = {draw(expression())}"
                             for w in draw(st.lists(st.sampled_from(WORDS), max_size=3)))
            head = f"for x in {draw(expression())}: " if kind == "map" else ""
            policies = [p.replace("EXPR", draw(expression()))
                        for p in draw(st.lists(POLICIES, max_size=4))]
            block = " {\n    " + "\n    ".join(policies) + "\n  }" if policies else ""
            lines.append(f"  step s{i} = {head}std.echo({args}){block}")
        elif kind == "output":
            lines.append(f"  output o{i} = {draw(expression())}")
        elif kind == "input":
            lines.append(f"  input i{i}: list[str] = {draw(expression())}")
        else:
            lines.append(f"  resource r{i} {{ rate 5/s; concurrency 2 }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@_SETTINGS
@given(plan())
def test_generated_plans_agree(text: str) -> None:
    agrees(text)
