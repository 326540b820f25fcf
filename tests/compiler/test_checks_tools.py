"""Tools: `use` loading, unknown tools, and arguments against the tool's schema."""

from __future__ import annotations

from pathlib import Path

from plait.compiler.ir import Use
from plait.stdlib.registry import IMPORT_ALL
from tests.compiler.irkit import at, check, codes_of, lit, make_plan, only, ref, step


def test_unknown_tool_suggests_a_close_name() -> None:
    spans = {("step", "a", "tool"): at("tool")}
    diag = only(check(make_plan(step("a", tool="std.ecoh")), spans), "E304")
    assert diag.message == "unknown tool `std.ecoh` in step `a`"
    assert diag.hints == ("did you mean `std.echo`?",)
    assert diag.span == at("tool")


def test_unknown_tool_without_close_name_points_to_plait_tools() -> None:
    diag = only(check(make_plan(step("a", tool="zz.qq"))), "E304")
    assert diag.hints == (
        '`plait tools` lists the available tools; `use "./file.py"` loads your own',
    )


def test_unknown_argument() -> None:
    diag = only(check(make_plan(step("a", tool="std.sleep", args={"secnds": lit(1)}))), "E305")
    assert diag.message == "`std.sleep` has no argument `secnds`"
    assert diag.hints == ("did you mean `seconds`?",)
    diag = only(check(make_plan(step("a", args={"value": lit(1), "zzz": lit(2)}))), "E305")
    assert diag.hints == ("`std.echo` takes (value)",)


def test_missing_argument() -> None:
    diags = check(make_plan(step("a", tool="std.fail", args={})))
    diag = only(diags, "E306")
    assert diag.message == "step `a` is missing required argument `message` of `std.fail`"
    assert diag.hints == ('`std.fail` takes (message, kind = "tool_error")',)


def test_literal_argument_type() -> None:
    diag = only(
        check(make_plan(step("a", tool="std.sleep", args={"seconds": lit("soon")}))), "E307"
    )
    assert diag.message == (
        "argument `seconds` of `std.sleep` expects float: `seconds`: input should be a valid number"
    )


def test_int_accepted_for_float_and_expressions_left_to_run_time() -> None:
    plan = make_plan(
        step("a", tool="std.sleep", args={"seconds": lit(1)}),
        step("b", tool="std.sleep", args={"seconds": ref("n")}),
        inputs={"n": "str"},
    )
    assert check(plan) == []


def test_list_of_literals_is_type_checked() -> None:
    plan = make_plan(step("a", tool="std.flaky", args={"fail_times": lit([1])}))
    assert codes_of(check(plan)) == ["E307"]


def test_llm_schema_type_names_are_checked_before_the_run() -> None:
    bad = {"category": "strr", "tags": ["str"]}
    plan = make_plan(step("a", tool="llm.chat", args={"prompt": lit("p"), "schema": lit(bad)}))
    diag = only(check(plan), "E307")
    assert diag.message == (
        "argument `schema` of `llm.chat`: schema field `category` has type 'strr'; use one "
        "of str, int, float, bool, list, dict, any, list[T] or a nested dict"
    )
    good = {"category": "str", "nested": {"k": "list[int]"}}
    plan = make_plan(
        step("a", tool="llm.chat", args={"prompt": lit("p"), "schema": lit(good)}),
        step("b", tool="llm.chat", args={"prompt": lit("p"), "schema": ref("shape")}),
        inputs={"shape": "dict"},
    )
    assert check(plan) == []  # (a schema from an input is checked when the step runs)


def test_use_of_missing_module_is_a_diagnostic(tmp_path: Path) -> None:
    plan = make_plan(step("a", tool="mine.do"), uses=[Use(target="./nope.py")])
    diags = check(plan, {("use", "0"): at("use")}, plan_dir=tmp_path)
    diag = only(diags, "E321")
    assert diag.message == f'cannot load `use "./nope.py"`: no such file: {tmp_path}/nope.py'
    assert diag.span == at("use")
    # The tool it would have provided is not reported again.
    assert codes_of(diags) == ["E321"]


def test_use_with_a_nul_character_is_a_diagnostic_not_a_crash(tmp_path: Path) -> None:
    # found by the fuzz suite: path resolution raised ValueError("embedded null byte")
    for target, policy in [("./a\x00b.py", None), ("pkg\x00mod", IMPORT_ALL)]:
        plan = make_plan(step("a"), uses=[Use(target=target)])
        kwargs = {"use_policy": policy} if policy else {}
        diag = only(check(plan, plan_dir=tmp_path, **kwargs), "E321")
        assert "NUL character" in diag.message


def test_use_of_a_file_with_an_error(tmp_path: Path) -> None:
    # `check` reads the file without running it; a run imports it and meets the error
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    plan = make_plan(step("a"), uses=[Use(target="./broken.py")])
    assert check(plan, plan_dir=tmp_path) == []
    diag = only(check(plan, plan_dir=tmp_path, use_policy=IMPORT_ALL), "E321")
    assert diag.message == 'cannot load `use "./broken.py"`: RuntimeError: boom'


def test_use_of_a_file_that_does_not_parse(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def (:\n")
    plan = make_plan(step("a"), uses=[Use(target="./bad.py")])
    read = only(check(plan, plan_dir=tmp_path), "E321").message
    imported = only(check(plan, plan_dir=tmp_path, use_policy=IMPORT_ALL), "E321").message
    assert read == imported and read.startswith('cannot load `use "./bad.py"`: SyntaxError: ')


def test_use_loads_tools_that_are_then_checked(tmp_path: Path) -> None:
    (tmp_path / "mytools.py").write_text(
        "import plait\n\n@plait.tool\ndef shout(text: str) -> str:\n    return text.upper()\n"
    )
    plan = make_plan(
        step("a", tool="mytools.shout", args={"text": lit(3)}), uses=[Use(target="./mytools.py")]
    )
    diag = only(check(plan, plan_dir=tmp_path), "E307")
    assert diag.message.startswith("argument `text` of `mytools.shout` expects str")


def test_a_tools_own_checks_run_on_literal_arguments(tmp_path: Path) -> None:
    (tmp_path / "geo.py").write_text(
        "import plait\n\n"
        "def known(region: str) -> None:\n"
        "    if region not in ('eu', 'us'):\n"
        "        raise plait.InvalidInput(f'unknown region {region!r}; use eu or us')\n\n"
        "@plait.tool(checks={'region': known})\n"
        "def place(region: str) -> str:\n    return region\n"
    )
    plan = make_plan(
        step("a", tool="geo.place", args={"region": lit("mars")}),
        step("b", tool="geo.place", args={"region": lit("eu")}),
        uses=[Use(target="./geo.py")],
    )
    # `checks` are the file's own code: they run when the plan is run (it imports the file),
    # not when it is only checked
    diag = only(check(plan, plan_dir=tmp_path, use_policy=IMPORT_ALL), "E307")
    assert diag.message == "argument `region` of `geo.place`: unknown region 'mars'; use eu or us"
    assert check(plan, plan_dir=tmp_path) == []
