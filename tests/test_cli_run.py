"""`plait run` through real subprocesses: exit codes, --json/--report/--events, inputs,
--inject, and SIGINT/SIGTERM. Plans are compiled JSON written by the test helper, so these
tests exercise the runtime's command line on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plait.compiler.ir import CompiledPlan, Use
from tests.runtime.planlib import P, R, S, T, retry

PLAIT = [str(Path(sys.executable).parent / "plait")]
pytestmark = pytest.mark.timeout(60)

TOOLS = """
import time
import plait

@plait.tool(name="slow.block")
def block(seconds: float) -> str:
    time.sleep(seconds)
    return "done"
"""


def write(tmp: Path, plan: CompiledPlan, name: str = "plan.json") -> Path:
    path = tmp / name
    plan = plan.model_copy(update={"source_path": str(tmp / "plan.agent")})
    path.write_text(plan.model_dump_json())
    return path


def plait(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*PLAIT, *map(str, args)], capture_output=True, text=True, timeout=30, cwd=cwd, env=full_env
    )


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_succeeded_run_with_json_report_and_events(tmp_path: Path) -> None:
    plan = write(
        tmp_path,
        P(
            S("a", "std.echo", value=T("hi ", R("who"))),
            S("b", "std.flaky", fail_times=1, value=R("a.output"), retry=retry(2, 0.01)),
            inputs={"who": "str", "n": ("int", 1)},
            outputs={"reply": R("b.output")},
        ),
    )
    p = plait(
        "run",
        plan,
        "--input",
        "who=bob",
        "--json",
        "--report",
        tmp_path / "r.json",
        "--events",
        tmp_path / "e.jsonl",
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["outcome"] == "succeeded" and report["outputs"] == {"reply": "hi bob"}
    assert report["inputs"] == {"who": "bob", "n": 1}
    assert report["steps"]["b"]["attempts"] == 2
    assert json.loads((tmp_path / "r.json").read_text()) == report
    events = events_of(tmp_path / "e.jsonl")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["event"] for e in events} >= {
        "run_started",
        "step_started",
        "attempt_started",
        "attempt_failed",
        "retry_scheduled",
        "attempt_finished",
        "step_finished",
        "run_finished",
    }
    assert all({"seq", "ts", "run_id", "event"} <= e.keys() for e in events)
    # progress went to stderr as plain timestamped lines (not a terminal)
    assert "b: attempt 1 failed: transient" in p.stderr


def test_exit_codes_degraded_failed_and_allow_degraded(tmp_path: Path) -> None:
    degraded = write(tmp_path, P(S("o", "std.fail", message="x", optional=True)), "d.json")
    failed = write(
        tmp_path,
        P(S("f", "std.fail", message="broken"), S("g", "std.echo", value=R("f.output"))),
        "f.json",
    )
    assert plait("run", degraded, "-q").returncode == 3
    assert plait("run", degraded, "-q", "--allow-degraded").returncode == 0
    p = plait("run", failed, "--report", tmp_path / "r.json", "--events", tmp_path / "e.jsonl")
    assert p.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reasons"] == [
        {"step": "f", "status": "failed", "why": "required step failed", "kind": "tool_error"}
    ]
    assert report["steps"]["g"]["caused_by"] == "f"
    assert events_of(tmp_path / "e.jsonl")[-1]["outcome"] == "failed"
    assert "reason: step f: required step failed" in p.stderr


def test_quiet_silences_progress_only(tmp_path: Path) -> None:
    plan = write(tmp_path, P(S("a", "std.echo", value=1), outputs={"o": R("a.output")}))
    loud = plait("run", plan)
    p = plait("run", plan, "--quiet")
    assert (p.returncode, p.stdout) == (0, "o = 1\n")  # the answer is still on stdout
    assert "a: started" in loud.stderr and "a: started" not in p.stderr  # no progress
    lines = p.stderr.splitlines()  # the summary stays, and nothing else
    assert lines[0].startswith("t: succeeded in ") and lines[1].split() == [
        "a",
        "succeeded",
        "attempts=1",
    ]
    assert len(lines) == 2


def test_summary_of_a_big_plan_lists_what_did_not_succeed_and_counts(tmp_path: Path) -> None:
    steps = [S(f"s{i}", "std.echo", value=i) for i in range(60)]
    steps += [S(f"bad{i}", "std.fail", message=f"boom {i}", optional=True) for i in range(53)]
    p = plait("run", write(tmp_path, P(*steps)), "--quiet", "--no-journal")
    assert p.returncode == 3  # degraded: optional steps failed
    lines = p.stderr.splitlines()
    assert lines[0].startswith("t: degraded in ")
    listed = [line.split()[0] for line in lines[1:51]]
    assert listed == [f"bad{i}" for i in range(50)]  # plan order, failures only, at most 50
    assert "tool_error: boom 0" in lines[1]
    assert lines[51] == "  … and 3 more that did not succeed"
    assert lines[52] == "  113 steps: 60 succeeded, 53 failed"
    assert not any(line.split()[0].startswith("s") for line in lines[1:] if line.split())
    reasons = [line for line in lines if line.startswith("  reason: ")]
    assert len(reasons) == 50 and lines[-1] == "  … and 3 more reasons in the report"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "nn=1"], "unknown input `nn` (did you mean `n`?)"),
        (["--input", "n=abc"], "input `n`: 'abc' is not a valid int"),
        ([], "missing required input `n`"),
        (["--input", "n=1", "--input", "flag=maybe"], "input `flag`"),
        (["--inputs", "missing.json"], "cannot read inputs file"),
        (["--input", "n=1", "--inject", "zz=timeout"], "unknown step `zz`"),
    ],
)
def test_bad_inputs_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    plan = write(
        tmp_path, P(S("a", "std.echo", value=R("n")), inputs={"n": "int", "flag": ("bool", False)})
    )
    p = plait("run", plan, *args, cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr


def test_inputs_file_and_input_wins(tmp_path: Path) -> None:
    plan = write(
        tmp_path,
        P(
            S("a", "std.echo", value=[R("n"), R("flag")]),
            inputs={"n": "int", "flag": ("bool", False)},
            outputs={"v": R("a.output")},
        ),
    )
    (tmp_path / "in.json").write_text('{"n": 1, "flag": true}')
    p = plait("run", plan, "--inputs", tmp_path / "in.json", "--input", "n=5", "--json", "-q")
    assert json.loads(p.stdout)["outputs"]["v"] == [5, True]


def test_missing_plan_file_exit_2(tmp_path: Path) -> None:
    p = plait("run", tmp_path / "nope.agent")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_missing_env_exit_2_naming_variable_and_step(tmp_path: Path) -> None:
    plan = write(tmp_path, P(S("a", "std.echo", value=R("env.PLAIT_TEST_UNSET"))))
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_TEST_UNSET"}
    p = subprocess.run(
        [*PLAIT, "run", str(plan)], capture_output=True, text=True, env=env, timeout=30
    )
    assert p.returncode == 2
    assert "PLAIT_TEST_UNSET is not set (read by step `a`)" in p.stderr


def test_short_secret_warns(tmp_path: Path) -> None:
    plan = write(tmp_path, P(S("a", "std.echo", value=R("env.PLAIT_TEST_SHORT"))))
    p = plait("run", plan, "-q", env={"PLAIT_TEST_SHORT": "ab"})
    assert "warning: env.PLAIT_TEST_SHORT is shorter than 4 characters and is not masked" in (
        p.stderr
    )


def test_inject_marks_events(tmp_path: Path) -> None:
    plan = write(tmp_path, P(S("a", "std.echo", value=1, retry=retry(2, 0.0))))
    p = plait(
        "run",
        plan,
        "--inject",
        "a=rate_limited:2",
        "-q",
        "--json",
        "--events",
        tmp_path / "e.jsonl",
    )
    assert p.returncode == 0
    assert json.loads(p.stdout)["steps"]["a"]["attempts"] == 3
    failed = [e for e in events_of(tmp_path / "e.jsonl") if e["event"] == "attempt_failed"]
    assert [(e["kind"], e.get("injected")) for e in failed] == [("rate_limited", True)] * 2


def _start_and_wait(tmp_path: Path, plan: Path) -> tuple[subprocess.Popen[str], Path]:
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [*PLAIT, "run", str(plan), "--events", str(events), "--report", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if events.exists() and '"attempt_started"' in events.read_text():
            return proc, events
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"the run never started an attempt: {err}")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_cancels_writes_report_and_exits(tmp_path: Path, signum: int, code: int) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    plan = P(
        S("slow", "std.sleep", seconds=30),
        S("stuck", "slow.block", seconds=30),
        S("next", "std.echo", value=R("slow.output")),
        outputs={"o": R("slow.output")},
    )
    plan.uses.append(Use(target="./tools.py"))
    proc, events = _start_and_wait(tmp_path, write(tmp_path, plan))
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signum)
    proc.communicate(timeout=20)
    assert proc.returncode == code
    assert time.monotonic() - t0 < 5  # the blocked sync thread did not keep it alive
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cancelled_by"] == "signal" and report["outcome"] == "failed"
    assert {n: s["status"] for n, s in report["steps"].items()} == {
        "slow": "cancelled",
        "stuck": "cancelled",
        "next": "cancelled",
    }
    assert report["outputs"] == {"o": None}
    lines = events_of(events)
    assert lines[-1]["event"] == "run_finished"
    assert len([e for e in lines if e["event"] == "step_finished"]) == 3


def test_deadline_run_exit_1_and_report(tmp_path: Path) -> None:
    plan = write(tmp_path, P(S("slow", "std.sleep", seconds=30), deadline_s=0.2))
    p = plait("run", plan, "--json", "-q")
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert report["cancelled_by"] == "deadline"
    assert report["steps"]["slow"]["error"]["kind"] == "cancelled"


AGENT = """
plan triage "exercise the runtime from plan text" {
  input ticket: str
  input urgency: int = 1

  defaults {
    retry 2 backoff 10ms x2 max 50ms
  }

  step classify = std.fail(message = "model down: ${ticket}", kind = "transient") {
    fallback classify_by_rules
    default {category: "other"}
  }
  step classify_by_rules = std.fail(message = "no rules", kind = "permanent")

  step history = std.fail(message = "no history") {
    optional
    retry 0
  }
  step draft = std.echo(value = "reply to ${ticket}: ${classify.output.category}") {
    after history
  }
  step escalate = std.echo(value = "escalated") {
    if urgency >= 3
  }
  step notify = std.echo(value = "triage failed") {
    after history
    when any_failed
  }
  step each = for n in [0, 5, 0, 0]: std.flaky(fail_times = n, value = n) {
    tolerate 25%
    retry 1 backoff 0ms
  }
  output reply = draft.output
  output category = classify.output.category
  output missing = history.output.body
}
"""


def test_agent_plan_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "triage.agent"
    path.write_text(AGENT)
    p = plait(
        "run",
        path,
        "--input",
        "ticket=T-1",
        "--json",
        "--seed",
        "3",
        "--events",
        tmp_path / "e.jsonl",
    )
    assert p.returncode == 3, p.stderr
    r = json.loads(p.stdout)
    steps = r["steps"]
    c = steps["classify"]
    assert (c["status"], c["attempts"], c["fallback_used"]) == ("recovered", 3, None)
    assert c["error"] == {"kind": "transient", "message": "model down: T-1", "retry": "exhausted"}
    assert [a["delay_s"] for a in c["attempt_log"]] == [0.01, 0.02, None]
    sb = steps["classify_by_rules"]
    assert (sb["status"], sb["attempts"], sb["error"]["retry"]) == ("failed", 1, "not_retryable")
    assert (steps["history"]["status"], steps["history"]["attempts"]) == ("failed", 1)
    assert steps["draft"]["output"] == "reply to T-1: other"
    assert steps["escalate"]["reason"] == "condition_false"
    assert steps["notify"]["status"] == "succeeded"
    each = steps["each"]
    assert (each["status"], each["output"], each["attempts"]) == ("recovered", [0, None, 0, 0], 5)
    assert each["elements"]["errors"][0]["index"] == 1
    assert r["outputs"] == {"reply": "reply to T-1: other", "category": "other", "missing": None}
    whys = [(x.get("step") or x.get("output"), x["why"]) for x in r["reasons"]]
    assert whys == [
        ("classify", "recovered by its default"),
        ("history", "optional step failed"),
        ("each", "1 map element(s) failed within tolerance"),
        ("missing", whys[-1][1]),
    ]
    assert "history" in whys[-1][1]
    assert r["plan_sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
