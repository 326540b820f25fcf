"""The one parser against plait.lark: generated plans, written out with every layout the
lexical rules allow (newlines or `;`, blank lines, comments, line breaks inside brackets,
trailing commas), parse to the tree they were generated from."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.compiler import nodes
from plait.compiler.expressions import to_source
from plait.compiler.ir import Expr, TriggerRule
from plait.compiler.parse import parse
from plait.compiler.syntax_errors import keywords
from plait.errors import ErrorKind
from tests.compiler.test_expressions import EXPRESSIONS, shape

IDENTS = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda word: (
        word
        not in {
            "plan",
            "step",
            "input",
            "output",
            "resource",
            "defaults",
            "use",
            "for",
            "in",
            "if",
            "not",
            "and",
            "or",
            "true",
            "false",
            "null",
            "env",
            "run",
            "type",
            "tool",
            "loop",
        }
    )
)


@dataclass
class Layout:
    """How the generated plan is written out."""

    semicolons: bool
    comments: bool
    wrap_args: bool
    trailing_comma: bool

    def end(self) -> str:
        return "; " if self.semicolons else ("  # note\n" if self.comments else "\n")

    def args(self, pairs: list[str]) -> str:
        sep = ",\n      " if self.wrap_args else ", "
        text = sep.join(pairs) + ("," if self.trailing_comma and pairs else "")
        return f"(\n      {text}\n    )" if self.wrap_args else f"({text})"


@dataclass
class StepSpec:
    name: str
    tool: str
    args: list[tuple[str, Expr]]
    over: Expr | None
    policies: list[tuple[str, str]] = field(default_factory=list)  # (class name, source)


POLICIES = st.sampled_from(
    [
        ("TimeoutPolicy", "timeout 1m30s"),
        ("RetryNode", "retry 3 on timeout, transient backoff 200ms x1.5 max 5s jitter"),
        ("RetryNode", "retry 2"),
        ("OptionalPolicy", "optional"),
        ("IfPolicy", "if a.output ?? true"),
        ("DefaultPolicy", 'default {fallback: "none", n: [1, 2]}'),
        ("WhenPolicy", f"when {TriggerRule.ALL_DONE.value}"),
        ("AfterPolicy", "after a, b"),
        ("UsesPolicy", "uses api"),
        ("ConcurrencyPolicy", "concurrency 4"),
        ("TolerancePolicy", "tolerate 25%"),
        ("FallbackPolicy", "fallback standby"),
    ]
)


@st.composite
def steps(draw: st.DrawFn) -> StepSpec:
    args = draw(st.lists(st.tuples(IDENTS, EXPRESSIONS), max_size=3, unique_by=lambda a: a[0]))
    tool = ".".join(draw(st.lists(IDENTS, min_size=1, max_size=3)))
    over = draw(st.one_of(st.none(), EXPRESSIONS))
    policies = draw(st.lists(POLICIES, max_size=4))
    return StepSpec(draw(IDENTS), tool, args, over, policies)


def write(plan_steps: list[StepSpec], layout: Layout) -> str:
    end = layout.end()
    lines = [
        f'plan generated "a plan" {{{end}',
        f'  input topic: str = "x"{end}',
        f"  resource api {{ rate 10/s{end}concurrency 2{end}}}{end}",
        f"  defaults {{{end}timeout 30s{end}}}{end}",
    ]
    for spec in plan_steps:
        call = spec.tool + layout.args(
            [f"{name} = {to_source(value)}" for name, value in spec.args]
        )
        if spec.over is not None:
            call = f"for item in {to_source(spec.over)}: {call}"
        block = ""
        if spec.policies:
            body = end.join(f"    {source}" for _, source in spec.policies)
            block = " {" + end + body + end + "  }"
        lines.append(f"  step {spec.name} = {call}{block}{end}")
        if layout.comments:
            lines.append("\n  # between steps\n\n")
    lines.append("  output topic_out = topic\n}\n")
    return "".join(lines)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(steps(), min_size=1, max_size=4),
    st.builds(Layout, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_generated_plans_parse_to_their_tree(plan_steps: list[StepSpec], layout: Layout) -> None:
    text = write(plan_steps, layout)
    tree, diagnostics = parse(text, "generated.agent")
    assert diagnostics == [], (text, diagnostics)
    assert tree is not None and tree.name.name == "generated" and tree.description == "a plan"
    kinds = [type(item).__name__ for item in tree.items]
    assert kinds == [
        "InputNode",
        "ResourceNode",
        "DefaultsNode",
        *["StepNode"] * len(plan_steps),
        "OutputNode",
    ]
    parsed_steps = [item for item in tree.items if isinstance(item, nodes.StepNode)]
    for spec, step in zip(plan_steps, parsed_steps, strict=True):
        assert step.name.name == spec.name
        assert step.call.tool.name == spec.tool
        assert [(a.name.name, shape(a.value)) for a in step.call.args] == [
            (name, shape(value)) for name, value in spec.args
        ]
        if spec.over is None:
            assert step.map is None
        else:
            assert step.map is not None and shape(step.map.over) == shape(spec.over)
        assert [type(p).__name__ for p in step.policies] == [name for name, _ in spec.policies]


def test_policy_values_come_through() -> None:
    tree, diagnostics = parse(
        "plan p { step s = t.u() { retry 3 on timeout, transient backoff 200ms x1.5 max 5s "
        "jitter; timeout 1m30s; tolerate 25% } }\n",
        "t.agent",
    )
    assert diagnostics == []
    assert tree is not None
    step = tree.items[0]
    assert isinstance(step, nodes.StepNode)
    retry, timeout, tolerate = step.policies
    assert isinstance(retry, nodes.RetryNode) and retry.retries == 3 and retry.jitter
    assert [k.name for k in retry.on or ()] == [ErrorKind.TIMEOUT.value, "transient"]
    assert retry.backoff is not None and retry.backoff.seconds == 0.2
    assert retry.factor == 1.5 and retry.max is not None and retry.max.seconds == 5.0
    assert isinstance(timeout, nodes.TimeoutPolicy) and timeout.duration.seconds == 90.0
    assert isinstance(tolerate, nodes.TolerancePolicy) and tolerate.percent == 25.0


def test_keyword_lists_come_from_the_grammar() -> None:
    words = keywords()
    assert words.policies == (
        "after",
        "when",
        "if",
        "timeout",
        "retry",
        "fallback",
        "default",
        "optional",
        "uses",
        "concurrency",
        "tolerate",
        "fresh",
        "guard",
        "compensate",
        "max_output",
    )
    assert words.items == (
        "use",
        "input",
        "output",
        "deadline",
        "concurrency",
        "defaults",
        "resource",
        "step",
        "max_output",
        "loop",
        "tool",
    )
    assert words.resource_settings == ("rate", "concurrency", "breaker")


def test_a_block_brace_after_comment_lines_is_reported_once() -> None:
    text = "plan p {\n  step a = std.echo(value = 1)\n" + "  # note\n\n" * 500 + "  {\n  }\n}\n"
    tree, diagnostics = parse(text, "t.agent")
    assert [(d.code.id, d.span.line) for d in diagnostics] == [("E102", 1003)]
    assert tree is not None
