"""Mistakes a newcomer makes in a first plan, each named with the fix (issue #11).

Written against `compile_source`, the compiler's public entry, so they hold whatever parser
sits behind it: code, position, message and hints exactly.
"""

from __future__ import annotations

import pytest

from plait.compiler.api import compile_source
from plait.compiler.diagnostics import Diagnostic


def only_error(text: str) -> Diagnostic:
    errors = [d for d in compile_source(text, "t.agent").diagnostics if d.is_error]
    assert len(errors) == 1, [(d.code.id, d.message) for d in errors]
    return errors[0]


def at(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.column


def in_step(policy: str) -> str:
    return f"plan p {{\n  step a = std.echo(value = 1) {{\n    {policy}\n  }}\n}}\n"


@pytest.mark.parametrize(
    ("spaced", "joined"), [("100 ms", "100ms"), ("2 s", "2s"), ("5 m", "5m"), ("1 h", "1h")]
)
def test_a_known_unit_after_a_space_says_to_drop_the_space(spaced: str, joined: str) -> None:
    d = only_error(in_step(f"retry 3 backoff {spaced}"))
    assert d.code.id == "E103" and at(d) == (3, 21)
    assert d.message == (f"a duration is written without a space: `{joined}`, not `{spaced}`")
    assert d.hints == (f"write `{joined}`",)


def test_an_unknown_unit_after_a_space_still_lists_the_units() -> None:
    d = only_error(in_step("timeout 3 minutes"))
    assert d.code.id == "E103"
    assert d.message == "unknown duration unit `minutes`; use ms, s, m or h, right after the number"


def test_depends_on_suggests_after() -> None:
    d = only_error(
        "plan p {\n  step a = std.echo(value = 1)\n"
        "  step b = std.echo(value = 2) {\n    depends_on a\n  }\n}\n"
    )
    assert d.code.id == "E114" and at(d) == (4, 5)
    assert d.message == "unknown policy `depends_on`"
    assert d.hints == ("plait writes this as `after a`",)


def test_deadline_in_a_step_is_a_plan_setting() -> None:
    d = only_error(in_step("deadline 5s"))
    assert d.code.id == "E114" and at(d) == (3, 5)
    assert d.message == "`deadline` is a plan setting, not a step policy"
    assert d.hints == (
        "limit each attempt of this step with `timeout`; a `deadline` line in "
        "the plan bounds the whole run",
    )


def test_deadline_in_defaults_is_a_plan_setting_too() -> None:
    d = only_error(
        "plan p {\n  defaults {\n    deadline 1m\n  }\n  step a = std.echo(value = 1)\n}\n"
    )
    assert d.code.id == "E114" and at(d) == (3, 5)
    assert d.message == "`deadline` is a plan setting, not a step policy"


def test_a_resource_setting_in_a_step_says_where_it_goes() -> None:
    d = only_error(in_step("rate 3/s"))
    assert d.code.id == "E114"
    assert d.message == "`rate` is a resource setting, not a step policy"
    assert d.hints == (
        "declare `resource NAME { rate 10/s }` in the plan and write `uses NAME` here",
    )


def test_cooldown_on_its_own_line_belongs_on_the_breaker_line() -> None:
    d = only_error(
        "plan p {\n  resource api {\n    breaker after 3 failures\n"
        "    cooldown 10s\n  }\n  step a = std.echo(value = 1) { uses api }\n}\n"
    )
    assert d.code.id == "E114" and at(d) == (4, 5)
    assert d.message == "`cooldown` belongs on the `breaker` line, not on a line of its own"
    assert d.hints == ("write `breaker after 3 failures cooldown 10s`",)


def test_a_quote_inside_interpolation_closes_the_string() -> None:
    d = only_error(
        'plan p {\n  input x: str = "a"\n  step a = std.echo(value = "${x ?? "none"}")\n}\n'
    )
    assert d.code.id == "E113" and at(d) == (3, 37)
    assert d.message == (
        'the `"` at 3:37 ends the string that starts at 3:29: inside `${...}` '
        'of a `"..."` string, a `"` cannot appear'
    )
    assert d.hints == (
        'use a `"""` string, in which `"` may appear inside `${...}`: `"""${x ?? "none"}"""`',
        'or, as the string is only `${...}`, write the expression alone: `x ?? "none"`',
    )


def test_a_quote_inside_interpolation_in_longer_text() -> None:
    d = only_error(
        "plan p {\n  step a = std.echo(value = 1)\n"
        '  step b = std.echo(value = "got ${a.output["k"]} here")\n}\n'
    )
    assert d.code.id == "E113" and at(d) == (3, 45)
    assert d.hints == (
        'use a `"""` string, in which `"` may appear inside `${...}`: '
        '`"""got ${a.output["k"]} here"""`',
    )


def test_the_suggested_triple_quoted_string_is_valid() -> None:
    fixed = 'plan p {\n  input x: str = "a"\n  step a = std.echo(value = """${x ?? "none"}""")\n}\n'
    assert compile_source(fixed, "t.agent").diagnostics == []


def test_a_literal_dollar_brace_does_not_count_as_open() -> None:
    ok = 'plan p {\n  step a = std.echo(value = "$${x ")\n}\n'
    assert compile_source(ok, "t.agent").diagnostics == []


@pytest.mark.parametrize(
    ("word", "literal"),
    [("True", "true"), ("False", "false"), ("None", "null"), ("NULL", "null"), ("nil", "null")],
)
def test_other_languages_literals_suggest_plaits(word: str, literal: str) -> None:
    d = only_error(f"plan p {{\n  step a = std.echo(value = {word})\n}}\n")
    assert d.code.id == "E301" and at(d) == (2, 29)
    assert d.message == f"unknown name `{word}` in step `a`: no input or step has this name"
    assert d.hints == (
        f"write `{literal}`: plait's literals are `true`, `false` and `null`, in lower case",
    )


def test_a_trigger_rule_in_if_suggests_when() -> None:
    d = only_error(
        "plan p {\n  step a = std.echo(value = 1)\n"
        "  step b = std.echo(value = 2) {\n    after a\n    if any_failed\n  }\n}\n"
    )
    assert d.code.id == "E301" and at(d) == (5, 8)
    assert d.message == "unknown name `any_failed` in step `b`: no input or step has this name"
    assert d.hints == ("`any_failed` is a trigger rule: write `when any_failed`; `if` tests data",)


def test_an_input_named_like_a_rule_is_still_an_input() -> None:
    text = (
        "plan p {\n  input all_done: bool = true\n"
        "  step a = std.echo(value = 1) {\n    if all_done\n  }\n}\n"
    )
    assert compile_source(text, "t.agent").diagnostics == []
