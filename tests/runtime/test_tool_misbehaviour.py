"""Nothing a tool does can take a run down (issue #9): each misbehaviour becomes an outcome
on that step, the run finishes, and its report, events and journal are written. Through
the real `plait` command, with real tools in a `use`d file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.robust_helpers import plait, run

pytestmark = pytest.mark.timeout(120)


def test_a_value_that_is_not_json_fails_that_step_and_the_run_finishes(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  step ok = std.echo(value = "kept")
  step obj = bad.value(what = "object")
  step cyc = bad.value(what = "cycle") { optional }
  step raw = bad.value(what = "bytes") { optional }
  step nan = bad.value(what = "nan") { optional }
  output kept = ok.output''')
    assert r.code == 1, r.stderr
    assert r.report is not None and r.report["outputs"] == {"kept": "kept"}
    obj = r.step("obj")
    assert obj["status"] == "failed" and obj["error"]["kind"] == "invalid_output"
    assert obj["error"]["message"] == ("tool returned a value that is not JSON: object at "
                                       "`.when`")
    assert "contains itself" in r.step("cyc")["error"]["message"]
    assert "at `.self`" in r.step("cyc")["error"]["message"]
    assert "bytes that are not UTF-8 at `.data`" in r.step("raw")["error"]["message"]
    assert "nan" in r.step("nan")["error"]["message"]
    assert r.step("ok")["status"] == "succeeded"
    runs = plait("runs", "--json", cwd=tmp_path)
    assert json.loads(runs.stdout)[0]["outcome"] == "failed"


def test_python_values_are_coerced_the_same_way_everywhere(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  step rich = bad.rich()
  step agen = bad.agen()
  step echo = std.echo(value = rich.output)
  output rich = rich.output
  output squares = "${rich.output.squares}"''')
    assert r.code == 0, r.stderr
    expected = {
        "when": "2024-05-06T07:08:09", "day": "2024-05-06", "tags": ["a", "b", "c"],
        "pair": [1, 2], "price": 19.99, "count": 3, "point": {"x": 1, "y": [2, 3]},
        "model": {"name": "m", "tags": ["x", "y"]}, "squares": [0, 1, 4, 9],
        "mapped": ["1", "2"], "colour": "red", "id": "00000000-0000-0000-0000-000000000001",
        "text": "café", "1": "int key"}
    assert r.report is not None
    assert r.report["outputs"]["rich"] == expected
    assert r.report["outputs"]["squares"] == "[0,1,4,9]"
    assert r.step("echo")["output"] == expected
    assert r.step("agen")["output"] == [0, 1, 2]  # a generator is a list, never `[]`
    finished = {e["step"]: e for e in r.of("step_finished")}
    assert finished["rich"]["output"] == expected  # the events carry the same value
    assert json.loads(r.stdout)["outputs"]["rich"] == expected
    show = plait("show", r.report["run_id"], "--json", cwd=tmp_path)
    assert show.returncode == 0 and json.loads(show.stdout)["outputs"]["rich"] == expected
    page = tmp_path / "r.html"
    assert plait("report", r.report["run_id"], "-o", page, cwd=tmp_path).returncode == 0


def test_an_endless_generator_fails_at_the_size_limit(tmp_path: Path) -> None:
    r = run(tmp_path, '  step s = bad.value(what = "endless")')
    assert r.code == 1, r.stderr
    error = r.step("s")["error"]
    assert error["kind"] == "invalid_output"
    assert "exceeds the 16 MB limit" in error["message"]


@pytest.mark.parametrize("quiet", [False, True])
def test_py_call_returning_a_compiled_regex_is_invalid_output(tmp_path: Path,
                                                              quiet: bool) -> None:
    r = run(tmp_path, '  step s = py.call(function = "re:compile", pattern = "x+")',
            *(["-q"] if quiet else []))
    assert r.code == 1, r.stderr
    error = r.step("s")["error"]
    assert error["kind"] == "invalid_output"
    assert error["message"] == "tool returned a value that is not JSON: re.Pattern"


@pytest.mark.parametrize("tool", ["bad.raise", "bad.araise"])
@pytest.mark.parametrize("what", ["exit", "interrupt", "generator_exit", "base"])
def test_base_exceptions_from_a_tool_are_tool_errors(tmp_path: Path, tool: str,
                                                     what: str) -> None:
    r = run(tmp_path, f'''
  step s = {tool}(what = "{what}") {{ retry 1 backoff 0ms }}
  step after = std.echo(value = 1) {{ after s
    when all_done }}''')
    assert r.code == 1, (r.code, r.stderr)
    s = r.step("s")
    assert s["status"] == "failed" and s["error"]["kind"] == "tool_error", s
    assert s["attempts"] == 2  # retried like any tool_error
    assert r.step("after")["status"] == "succeeded"
    if what == "exit":
        assert s["error"]["message"] == "the tool called sys.exit(3)"
    assert "succeeded" not in r.stderr.splitlines()[0]


def test_an_async_tool_raising_cancelled_error_by_itself_is_a_tool_error(
        tmp_path: Path) -> None:
    r = run(tmp_path, '  step s = bad.araise(what = "cancelled")')
    assert r.code == 1
    assert r.step("s")["error"]["kind"] == "tool_error"


@pytest.mark.parametrize("policy", ["", "timeout 20s"])
def test_stop_iteration_from_a_sync_tool_is_a_tool_error(tmp_path: Path, policy: str) -> None:
    r = run(tmp_path, f'''
  step s = bad.raise(what = "stop") {{ {policy} }}
  step p = py.call(function = "tools:raise_", what = "stop") {{ {policy} }}''', timeout=30)
    assert r.code == 1
    for name in ("s", "p"):
        error = r.step(name)["error"]
        assert error["kind"] == "tool_error" and "StopIteration" in error["message"], error


def test_an_async_tool_blocking_the_loop_is_reported_and_timed_out(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  step s = bad.block(seconds = 2.5) { timeout 1s }
  step t = std.echo(value = 1)''')
    assert r.code == 1, r.stderr
    s = r.step("s")
    assert s["status"] == "failed" and s["error"]["kind"] == "timeout"
    assert s["output"] is None  # the late result is discarded
    blocked = r.of("loop_blocked")
    assert blocked and blocked[0]["tool"] == "bad.block" and blocked[0]["step"] == "s"
    assert blocked[0]["duration_s"] >= 2.0
    assert r.report is not None and r.report["warnings"][0]["kind"] == "loop_blocked"
    assert "blocked the event loop" in r.stderr


def test_blocking_past_the_deadline_cancels_and_the_summary_agrees(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  deadline 1s
  step s = bad.block(seconds = 2.5) { timeout 5s }''', json_out=False)
    assert r.report is not None
    assert r.report["cancelled_by"] == "deadline"
    assert r.step("s")["status"] == "cancelled"
    assert r.report["outcome"] == "failed" and r.code == 1
    assert "succeeded" not in r.stderr


def test_a_fast_run_is_not_said_to_be_cancelled_by_its_deadline(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  deadline 30s
  step s = std.echo(value = 1)''')
    assert r.code == 0 and r.report is not None and r.report["cancelled_by"] is None


def test_ctx_emit_from_sync_threads_is_safe(tmp_path: Path) -> None:
    body = '''
  step many = for i in [1, 2, 3, 4, 5, 6, 7, 8]: bad.emit(n = 200)
  step more = for i in [1, 2, 3, 4]: bad.emit(n = 200)'''
    for attempt in range(3):
        r = run(tmp_path / str(attempt), body)
        assert r.code == 0, r.stderr
        ticks = [e for e in r.of("tool_event") if e["tool_event"] == "tick"]
        assert len(ticks) == 12 * 200
        assert ticks[0]["when"] == "2024-01-01T00:00:00"
        seqs = [e["seq"] for e in r.events]
        assert seqs == list(range(1, len(seqs) + 1))


def test_tools_printing_to_stdout_never_corrupt_json(tmp_path: Path) -> None:
    r = run(tmp_path, '''
  step s = bad.print(text = "not json")
  step p = py.call(function = "tools:noisy", text = "also not json")''')
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "succeeded"
    assert "not json" in r.stderr
