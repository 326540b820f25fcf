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
    r = run(
        tmp_path,
        """
  step ok = std.echo(value = "kept")
  step obj = bad.value(what = "object")
  step cyc = bad.value(what = "cycle") { optional }
  step raw = bad.value(what = "bytes") { optional }
  step nan = bad.value(what = "nan") { optional }
  output kept = ok.output""",
    )
    assert r.code == 1, r.stderr
    assert r.report is not None and r.report["outputs"] == {"kept": "kept"}
    obj = r.step("obj")
    assert obj["status"] == "failed" and obj["error"]["kind"] == "invalid_output"
    assert obj["error"]["message"] == ("tool returned a value that is not JSON: object at `.when`")
    assert "contains itself" in r.step("cyc")["error"]["message"]
    assert "at `.self`" in r.step("cyc")["error"]["message"]
    assert "bytes that are not UTF-8 at `.data`" in r.step("raw")["error"]["message"]
    assert "nan" in r.step("nan")["error"]["message"]
    assert r.step("ok")["status"] == "succeeded"
    runs = plait("runs", "--json", cwd=tmp_path)
    assert json.loads(runs.stdout)[0]["outcome"] == "failed"


def test_python_values_are_coerced_the_same_way_everywhere(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        '''
  step rich = bad.rich()
  step agen = bad.agen()
  step echo = std.echo(value = rich.output)
  output rich = rich.output
  output squares = "${rich.output.squares}"''',
    )
    assert r.code == 0, r.stderr
    expected = {
        "when": "2024-05-06T07:08:09",
        "day": "2024-05-06",
        "tags": ["a", "b", "c"],
        "pair": [1, 2],
        "price": 19.99,
        "count": 3,
        "point": {"x": 1, "y": [2, 3]},
        "model": {"name": "m", "tags": ["x", "y"]},
        "squares": [0, 1, 4, 9],
        "mapped": ["1", "2"],
        "colour": "red",
        "id": "00000000-0000-0000-0000-000000000001",
        "text": "café",
        "1": "int key",
    }
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
def test_py_call_returning_a_compiled_regex_is_invalid_output(tmp_path: Path, quiet: bool) -> None:
    r = run(
        tmp_path,
        '  step s = py.call(function = "re:compile", pattern = "x+")',
        *(["-q"] if quiet else []),
    )
    assert r.code == 1, r.stderr
    error = r.step("s")["error"]
    assert error["kind"] == "invalid_output"
    assert error["message"] == "tool returned a value that is not JSON: re.Pattern"


@pytest.mark.parametrize("tool", ["bad.raise", "bad.araise"])
@pytest.mark.parametrize("what", ["exit", "interrupt", "generator_exit", "base"])
def test_base_exceptions_from_a_tool_are_tool_errors(tmp_path: Path, tool: str, what: str) -> None:
    r = run(
        tmp_path,
        f'''
  step s = {tool}(what = "{what}") {{ retry 1 backoff 0ms }}
  step after = std.echo(value = 1) {{ after s
    when all_done }}''',
    )
    assert r.code == 1, (r.code, r.stderr)
    s = r.step("s")
    assert s["status"] == "failed" and s["error"]["kind"] == "tool_error", s
    assert s["attempts"] == 2  # retried like any tool_error
    assert r.step("after")["status"] == "succeeded"
    if what == "exit":
        assert s["error"]["message"] == "the tool called sys.exit(3)"
    assert "succeeded" not in r.stderr.splitlines()[0]


def test_an_async_tool_raising_cancelled_error_by_itself_is_a_tool_error(tmp_path: Path) -> None:
    r = run(tmp_path, '  step s = bad.araise(what = "cancelled")')
    assert r.code == 1
    assert r.step("s")["error"]["kind"] == "tool_error"


@pytest.mark.parametrize("policy", ["", "timeout 20s"])
def test_stop_iteration_from_a_sync_tool_is_a_tool_error(tmp_path: Path, policy: str) -> None:
    r = run(
        tmp_path,
        f"""
  step s = bad.raise(what = "stop") {{ {policy} }}
  step p = py.call(function = "tools:raise_", what = "stop") {{ {policy} }}""",
        timeout=30,
    )
    assert r.code == 1
    for name in ("s", "p"):
        error = r.step(name)["error"]
        assert error["kind"] == "tool_error" and "StopIteration" in error["message"], error


def test_an_async_tool_blocking_the_loop_is_reported_and_timed_out(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        """
  step s = bad.block(seconds = 2.5) { timeout 1s }
  step t = std.echo(value = 1)""",
    )
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
    r = run(
        tmp_path,
        """
  deadline 1s
  step s = bad.block(seconds = 2.5) { timeout 5s }""",
        json_out=False,
    )
    assert r.report is not None
    assert r.report["cancelled_by"] == "deadline"
    assert r.step("s")["status"] == "cancelled"
    assert r.report["outcome"] == "failed" and r.code == 1
    assert "succeeded" not in r.stderr


def test_a_fast_run_is_not_said_to_be_cancelled_by_its_deadline(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        """
  deadline 30s
  step s = std.echo(value = 1)""",
    )
    assert r.code == 0 and r.report is not None and r.report["cancelled_by"] is None


def test_ctx_emit_from_sync_threads_is_safe(tmp_path: Path) -> None:
    body = """
  step many = for i in [1, 2, 3, 4, 5, 6, 7, 8]: bad.emit(n = 200)
  step more = for i in [1, 2, 3, 4]: bad.emit(n = 200)"""
    for attempt in range(3):
        r = run(tmp_path / str(attempt), body)
        assert r.code == 0, r.stderr
        ticks = [e for e in r.of("tool_event") if e["tool_event"] == "tick"]
        assert len(ticks) == 12 * 200
        assert ticks[0]["when"] == "2024-01-01T00:00:00"
        seqs = [e["seq"] for e in r.events]
        assert seqs == list(range(1, len(seqs) + 1))


def test_tools_printing_to_stdout_never_corrupt_json(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        """
  step s = bad.print(text = "not json")
  step p = py.call(function = "tools:noisy", text = "also not json")""",
    )
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "succeeded"
    assert "not json" in r.stderr


SLOW_TOOLS = """
import os, time
import plait

def _track(folder: str, seconds: float) -> int:
    marker = os.path.join(folder, f"running-{os.getpid()}-{time.monotonic_ns()}")
    open(marker, "w").close()
    try:
        running = len([n for n in os.listdir(folder) if n.startswith("running-")])
        with open(os.path.join(folder, "peak"), "a") as f:
            f.write(f"{running} ")
        time.sleep(seconds)
    finally:
        os.remove(marker)
    return running


@plait.tool(name="slow.thread")
def in_thread(folder: str, seconds: float) -> int:
    return _track(folder, seconds)


@plait.tool(name="slow.process", isolation="process")
def in_process(folder: str, seconds: float) -> int:
    return _track(folder, seconds)


@plait.tool(name="slow.echo", isolation="process")
def echo(ctx: plait.ToolContext, value: object) -> object:
    print("noise from the worker")
    ctx.emit("seen", {"step": ctx.step})
    return {"value": value, "pid": os.getpid()}
"""


def _peak(folder: Path) -> int:
    return max(int(x) for x in (folder / "peak").read_text().split())


def test_an_abandoned_sync_attempt_keeps_its_concurrency_slot(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = run(
        tmp_path,
        f'''
  resource one {{ concurrency 1 }}
  step s = slow.thread(folder = "{work}", seconds = 1.2) {{
    uses one
    timeout 300ms
    retry 3 backoff 0ms
  }}''',
        tools=SLOW_TOOLS,
    )
    assert r.code == 1, r.stderr
    assert r.step("s")["error"]["kind"] == "timeout" and r.step("s")["attempts"] == 4
    assert _peak(work) == 1  # never two copies at once: the bulkhead holds
    abandoned = r.of("attempt_abandoned")
    assert len(abandoned) == 4 and abandoned[0]["tool"] == "slow.thread"
    assert r.report is not None and len(r.report["abandoned"]) == 4
    ended = [a for a in r.report["abandoned"] if not a["still_running"]]
    assert len(ended) == 3 and all(a["overran_s"] > 0.5 for a in ended)


def test_a_process_isolated_tool_is_killed_on_timeout(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = run(
        tmp_path,
        f'''
  resource one {{ concurrency 1 }}
  step s = slow.process(folder = "{work}", seconds = 30) {{
    uses one
    timeout 1s
    retry 1 backoff 0ms
  }}
  step e = slow.echo(value = [1, "two"])
  step p = py.call(function = "tools:_track", folder = "{work}", seconds = 30,
                   isolation = "process") {{ timeout 1s }}''',
        tools=SLOW_TOOLS,
        timeout=60,
    )
    assert r.code == 1, r.stderr
    s = r.step("s")
    assert s["error"]["kind"] == "timeout" and s["attempts"] == 2
    assert r.step("p")["error"]["kind"] == "timeout"
    assert not r.of("attempt_abandoned")  # killed, not left running
    pids = [int(n.name.split("-")[1]) for n in work.iterdir() if n.name.startswith("running-")]
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]  # all killed
    e = r.step("e")
    assert e["output"]["value"] == [1, "two"] and "noise from the worker" in r.stderr
    seen = [x for x in r.of("tool_event") if x["tool_event"] == "seen"]
    assert seen[0]["step"] == "e" and seen[0]["tool_step"] == "e"
    assert json.loads(r.stdout)["outcome"] == "failed"


def test_shell_children_die_with_plait_after_kill_9(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.robust_helpers import PLAIT, write_plan

    done = tmp_path / "side-effect"
    plan = write_plan(
        tmp_path,
        f"""
  step s = shell.run(cmd = "sleep 2; touch {done}")
  step l = shell.run(cmd = ["python3", "-c",
                           "import time; time.sleep(2); open('{done}2', 'w')"])""",
    )
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [PLAIT, "run", str(plan), "--events", str(events), "-q"],
        cwd=tmp_path,
        env={**__import__("os").environ, "PLAIT_HOME": str(tmp_path)},
    )
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if events.exists() and events.read_text().count('"attempt_started"') >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # both commands are running
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(3)
    assert not done.exists() and not Path(f"{done}2").exists()


def test_shell_run_keeps_the_tail_of_a_huge_output(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        """
  step s = shell.run(cmd = "head -c 30000000 /dev/zero | tr '\\\\0' a; echo END")""",
    )
    assert r.code == 0, r.stderr
    out = r.step("s")["output"]
    assert out["stdout"].startswith("[plait: 29 MB of earlier output dropped")
    assert out["stdout"].endswith("aEND\n")
    assert 28_000_000 < out["stdout_dropped"] < 30_000_000
    assert len(out["stdout"]) < 1_100_000


def test_an_output_over_the_limit_is_invalid_output(tmp_path: Path) -> None:
    r = run(tmp_path, "  step s = bad.big(mb = 20)")
    assert r.code == 1
    error = r.step("s")["error"]
    assert error == {
        "kind": "invalid_output",
        "retry": "exhausted",
        "message": "output of 20 MB exceeds the 16 MB limit",
    }


def test_max_output_is_settable_per_plan_and_per_step(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        """
  max_output 2kB
  step small = std.echo(value = "small")
  step big = shell.run(cmd = "head -c 5000 /dev/zero | tr '\\\\0' a") { max_output 1MB }
  step over = shell.run(cmd = "head -c 5000 /dev/zero | tr '\\\\0' a") { optional }""",
    )
    assert r.code == 3, r.stderr
    assert r.step("small")["status"] == r.step("big")["status"] == "succeeded"
    assert r.step("over")["error"]["message"] == "output of 5 kB exceeds the 2 kB limit"
    compiled = json.loads(plait("compile", tmp_path / "plan.agent", cwd=tmp_path).stdout)
    assert compiled["max_output"] == 2000 and compiled["steps"]["big"]["max_output"] == 1_000_000
