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
        ("E304", "error", "unknown tool `std.ecko` in `tools` of step `ask`",
         ("did you mean `std.echo`?",))]


def test_max_turns_bounds_and_needs_tools() -> None:
    assert [d[:3] for d in diagnostics('tools = ["std.echo"], max_turns = 101')] == [
        ("E317", "error", "`max_turns` must be a whole number from 1 to 100, written out")]
    assert diagnostics('max_turns = 3')[0][:3] == (
        "E325", "error", "`max_turns` of step `ask` is allowed only with `tools`")


def test_tools_must_be_written_out() -> None:
    found = diagnostics('tools = [upper("std.echo")]')
    assert ("E325", "error", "`tools` of step `ask` must be a list of tool names (strings) "
            "and preset names, written out", ('e.g. `tools = [search, "http.get"]`',)) in found


def test_tools_that_let_the_model_choose_too_much_are_warned_about() -> None:
    found = diagnostics('tools = ["shell.run", "http.get"]')
    assert [(d[0], d[1]) for d in found] == [("W404", "warning")] * 2
    assert found[1][2] == "step `ask` lets the model call `http.get` and choose its `url`"
