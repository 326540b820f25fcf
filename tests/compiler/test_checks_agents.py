"""`plait check` on `tools` and `max_turns` (SPEC section 11), through the real compiler."""

from __future__ import annotations

from plait.compiler.api import compile_source


def diagnostics(step_args: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    source = f'plan t {{\n  step ask = llm.chat(prompt = "x", {step_args})\n}}\n'
    result = compile_source(source, "t.agent")
    return [(d.code.id, d.severity, d.message, d.hints) for d in result.diagnostics]


def test_tools_and_max_turns_that_fit_pass() -> None:
    assert diagnostics('tools = ["std.echo"], max_turns = 100') == []


def test_an_unknown_tool_suggests_a_close_one() -> None:
    assert diagnostics('tools = ["std.ecko"]') == [
        (
            "E304",
            "error",
            "unknown tool `std.ecko` in `tools` of step `ask`",
            ("did you mean `std.echo`?",),
        )
    ]


def test_max_turns_bounds_and_needs_tools() -> None:
    assert [d[:3] for d in diagnostics('tools = ["std.echo"], max_turns = 101')] == [
        ("E317", "error", "`max_turns` must be a whole number from 1 to 100, written out")
    ]
    assert diagnostics("max_turns = 3")[0][:3] == (
        "E325",
        "error",
        "`max_turns` of step `ask` is allowed only with `tools`",
    )


def test_tools_must_be_written_out() -> None:
    found = diagnostics('tools = [upper("std.echo")]')
    assert (
        "E325",
        "error",
        "`tools` of step `ask` must be a list of tool names (strings) "
        "and preset names, written out",
        ('e.g. `tools = [search, "http.get"]`',),
    ) in found


def test_tools_that_let_the_model_choose_too_much_are_warned_about() -> None:
    found = diagnostics('tools = ["shell.run", "http.get"]')
    assert [(d[0], d[1]) for d in found] == [("W404", "warning")] * 2
    assert found[1][2] == "step `ask` lets the model call `http.get` and choose its `url`"


def preset_diagnostics(items: str) -> list[tuple[str, str]]:
    result = compile_source(f"plan t {{\n{items}\n}}\n", "t.agent")
    return [(d.code.id, d.message) for d in result.diagnostics]


def test_presets_wrap_known_tools_with_their_arguments() -> None:
    assert preset_diagnostics("  tool a = std.echo(value = 1)\n  step s = a()") == []
    assert preset_diagnostics("  tool a = std.ecko(value = 1)") == [
        ("E304", "unknown tool `std.ecko` in preset `a`")
    ]
    assert preset_diagnostics("  tool a = std.echo(valeu = 1)") == [
        ("E305", "`std.echo` has no argument `valeu`")
    ]
    assert preset_diagnostics("  tool a = std.echo(value = 1)\n  tool b = a()") == [
        ("E304", "the preset `b` wraps the preset `a`")
    ]


def test_a_step_may_not_give_an_argument_its_preset_fixes() -> None:
    assert preset_diagnostics("  tool a = std.echo(value = 1)\n  step s = a(value = 2)") == [
        ("E204", "argument `value` is already set by the preset `a`")
    ]


def test_a_preset_holds_only_timeout_retry_and_uses() -> None:
    found = preset_diagnostics("  tool a = std.echo(value = 1) {\n    optional\n  }")
    assert found == [("E205", "`optional` cannot be a policy of the preset `a`")]


def test_preset_policies_and_arguments_merge_into_the_step() -> None:
    source = """plan t {
  input who: str = "x"
  defaults {
    timeout 9s
    uses db
  }
  resource db {
    concurrency 1
  }
  resource api {
    concurrency 2
  }
  tool fetch = http.get(url = "http://h/${who}") {
    retry 2
    uses api
  }
  step a = fetch(params = {q: 1})
  step b = fetch() {
    timeout 1s
    retry 1
  }
}
"""
    plan = compile_source(source, "t.agent").plan
    assert plan is not None
    a, b = plan.steps["a"], plan.steps["b"]
    assert (a.tool, a.preset, sorted(a.args)) == ("http.get", "fetch", ["params", "url"])
    assert (a.timeout_s, a.retry and a.retry.retries, a.uses) == (9.0, 2, ["api", "db"])
    assert (b.timeout_s, b.retry and b.retry.retries) == (1.0, 1)
    assert plan.presets["fetch"].uses == ["api"]
