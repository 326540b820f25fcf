"""`plait check` on loops and agent presets (SPEC section 11, its list of checks), through
the real compiler: each error and warning with its code, its line and column, and its
hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.compiler.api import compile_source


def found(items: str) -> list[tuple[str, str, str, int | None, int | None, tuple[str, ...]]]:
    result = compile_source(f"plan t {{\n{items}\n}}\n", "t.agent")
    return [
        (
            d.code.id,
            d.severity,
            d.message,
            d.span.line if d.span else None,
            d.span.column if d.span else None,
            d.hints,
        )
        for d in result.diagnostics
    ]


BODY = "  step a = std.echo(value = 1)\n"


@pytest.mark.parametrize(
    ("header", "message", "column"),
    [
        ("loop l max 0 {", "`max` of loop `l` must be a whole number from 1 to 10 000, not 0", 12),
        (
            "loop l max 10001 {",
            "`max` of loop `l` must be a whole number from 1 to 10 000, not 10001",
            12,
        ),
        ("loop l max 2 every 0s {", "`every` of loop `l` must be positive", 20),
    ],
)
def test_max_and_every_are_bounded(header: str, message: str, column: int) -> None:
    [(code, severity, text, line, col, hints)] = found(f"{header}\n{BODY}}}")
    assert (code, severity, text, line, col) == ("E317", "error", message, 2, column)
    assert hints


def test_a_loop_holding_a_policy_of_its_body_is_an_error() -> None:
    [retry] = found(f"loop l max 2 {{\n  retry 2\n{BODY}}}")
    assert retry[:5] == ("E329", "error", "loop `l` cannot carry `retry`", 3, 3)
    assert "timeout, optional, fallback, default, when, if and after" in retry[5][0]
    [fresh] = found(f"loop l max 2 {{\n  fresh 1s\n{BODY}}}")
    assert fresh[:5] == ("E328", "error", "loop `l` cannot carry `fresh`", 3, 3)


@pytest.mark.parametrize(
    ("policy", "what", "column"),
    [("if a.output == 1", "if", 6), ("default a.output", "default", 11), ("after a", "after", 9)],
)
def test_a_loops_if_default_and_after_may_not_name_its_body(
    policy: str, what: str, column: int
) -> None:
    [(code, severity, text, line, col, hints)] = found(f"loop l max 2 {{\n  {policy}\n{BODY}}}")
    assert (code, severity, line, col) == ("E329", "error", 3, column)
    assert text == f"`{what}` of loop `l` names its body step `a`"
    assert hints == (
        f"the loop's `{what}` is decided before any iteration; to stop the loop on `a`, "
        "write it in `until`",
    )


def test_until_may_name_the_body() -> None:
    assert (
        found(f"loop l max 3 until a.output == 1 {{\n{BODY}}}\nstep b = std.echo(value = 1)") == []
    )


def test_a_loop_is_never_a_standby() -> None:
    [(code, _, text, line, col, hints)] = found(
        f"step s = std.echo(value = 1) {{ fallback l }}\nloop l max 2 {{\n{BODY}}}"
    )
    assert (code, text, line, col) == (
        "E329",
        "loop `l` cannot be a standby (a fallback of `s`)",
        2,
        41,
    )
    assert hints


def test_standbys_stand_where_their_primary_does() -> None:
    outside = found(
        "step c = std.echo(value = 1)\n"
        "loop l max 2 {\n  step b = std.echo(value = 1) { fallback c }\n}"
    )
    assert [d[:3] for d in outside] == [
        (
            "E329",
            "error",
            "standby `c` (a fallback of `b`) must be in the body of loop `l`, with `b`",
        )
    ]
    inside = found(
        "loop l max 2 {\n  fallback b2\n  step b = std.echo(value = 1)\n"
        "  step b2 = std.echo(value = 2)\n}"
    )
    assert [d[:4] for d in inside] == [
        ("E329", "error", "standby `b2` (a fallback of `l`) must be outside every loop body", 3)
    ]
    undo = found(
        "step c = std.echo(value = 1) { timeout 1s }\n"
        "loop l max 2 {\n  step b = std.echo(value = 1) { compensate c }\n}"
    )
    assert [d[2] for d in undo if d[0] == "E329"] == [
        "standby `c` (the compensation of `b`) must be in the body of loop `l`, with `b`"
    ]


def test_standbys_in_the_body_and_a_loops_fallback_outside_pass() -> None:
    assert (
        found(
            "step spare = std.echo(value = {a: 0})\n"
            "loop l max 2 {\n  fallback spare\n"
            "  step a = std.echo(value = 1) { fallback a2 }\n"
            "  step a2 = std.echo(value = 2)\n}"
        )
        == []
    )


def test_loop_previous_without_safe_access_is_warned_about() -> None:
    [(code, severity, text, line, col, hints)] = found(
        "loop l max 2 {\n  step a = std.echo(value = loop.previous.a.output)\n}"
    )
    assert (code, severity, line, col) == ("W403", "warning", 3, 29)
    assert (
        text == "`loop.previous` is null in a loop's first iteration, and `.` on null is an error"
    )
    assert hints == ("write `loop.previous?.STEP.output` to get null in the first iteration",)
    assert found("loop l max 2 {\n  step a = std.echo(value = loop.previous?.a.output)\n}") == []


def test_presets_listing_each_other_in_tools_are_a_cycle() -> None:
    pair = found(
        'tool a1 = llm.chat(tools = [a2], prompt = "x")\n'
        'tool a2 = llm.chat(tools = [a1], prompt = "y")\n'
        'step s = llm.chat(prompt = "z", tools = [a1])'
    )
    assert [d[:4] for d in pair] == [
        (
            "E330",
            "error",
            "the presets `a1` and `a2` list each other in `tools`: a model calling `a1` "
            "could call it again without end",
            2,
        )
    ]
    alone = found('tool a1 = llm.chat(tools = [a1], prompt = "x")')
    assert [d[2] for d in alone] == [
        "the preset `a1` lists itself in `tools`: a model calling `a1` could call it again "
        "without end"
    ]
    assert pair[0][5]


def test_a_preset_stands_only_as_a_callee_and_in_tools() -> None:
    as_value = found("tool t = std.echo(value = 1)\nstep a = std.echo(value = t)")
    assert as_value == [
        (
            "E301",
            "error",
            "`t` is a tool preset, not a value",
            3,
            27,
            ("a preset stands only as a step's tool (`t(...)`) and in a `tools` list",),
        )
    ]
    in_after = found("tool t = std.echo(value = 1)\nstep a = std.echo(value = 1) { after t }")
    assert [d[:3] for d in in_after] == [
        ("E323", "error", "`t` in `after` is a tool preset, not a step")
    ]


def test_loops_do_not_nest() -> None:
    first = found(f"loop l max 2 {{\n  loop m max 2 {{\n{BODY}  }}\n}}")[0]
    assert first[:5] == (
        "E101",
        "error",
        "expected `}` to close loop `l` opened at 2:14 before `loop`",
        3,
        3,
    )
    assert "loops do not nest" in first[5][0]


def test_a_step_listing_a_preset_in_tools_depends_on_the_steps_the_preset_reads() -> None:
    result = compile_source(
        "plan t {\n"
        '  step key = std.echo(value = "k")\n'
        '  tool lookup = http.get(url = "https://x.example/${key.output}")\n'
        '  step ask = llm.chat(prompt = "x", tools = [lookup])\n'
        "}\n",
        "t.agent",
    )
    assert result.diagnostics == []
    assert result.plan is not None
    assert result.plan.steps["ask"].depends_on == ["key"]
    assert result.plan.graph.has_edge("key", "ask")


def test_a_body_step_writing_on_an_outside_version_writes_once_per_iteration() -> None:
    write = 'http.put(url = "http://127.0.0.1:9/x", json = 1, if_match = read.version)'
    head = 'step read = http.get(url = "http://127.0.0.1:9/x")\n'
    shared = found(f"{head}loop l max 3 {{\n  step w = {write}\n}}")
    assert [d[:4] for d in shared] == [
        (
            "W408",
            "warning",
            "several writes are conditioned on `read.version`, not all with `retry … on stale`",
            4,
        )
    ]
    retried = found(f"{head}loop l max 3 {{\n  step w = {write} {{ retry 2 on stale }}\n}}")
    assert retried == []
    inside = found(
        'loop l max 3 {\n  step read = http.get(url = "http://127.0.0.1:9/x")\n'
        f"  step w = {write}\n}}"
    )
    assert inside == []  # each iteration reads afresh


def test_a_preset_may_not_take_a_tools_name(tmp_path: Path) -> None:
    from plait.compiler.api import compile_file

    (tmp_path / "tools.py").write_text(
        'import plait\n\n\n@plait.tool(name="calc")\ndef calc(expr: str) -> str:\n'
        '    """Calc."""\n    return expr\n'
    )
    plan = tmp_path / "p.agent"
    plan.write_text(
        'plan p {\n  use "./tools.py"\n  tool calc = std.echo(value = 1)\n  step a = calc()\n}\n'
    )
    result = compile_file(plan)
    assert [
        (d.code.id, d.message, d.span.line if d.span else None) for d in result.diagnostics
    ] == [("E201", "the preset `calc` has the name of a tool", 3)]
