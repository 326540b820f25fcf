"""Resuming agents and loops after `kill -9` (SPEC section 11), through the real `plait`
command: a model conversation against a real local chat-completions server, whose tool
calls count themselves in a file, is killed while a tool call runs, and `plait resume`
repeats no finished tool call and sends exactly the conversation it would have; a loop
killed in the middle of an iteration continues there, keeping its finished body steps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import AgentLLM

PLAIT = [sys.executable, "-m", "plait"]

TOOLS = '''
import json, os, time
from pathlib import Path
import plait

HERE = Path(__file__).parent


@plait.tool
def fetch(n: int, ctx: plait.ToolContext) -> str:
    """Fetch record n (the third one hangs while the file `hang` exists)."""
    with (HERE / "calls.log").open("a") as f:
        f.write(json.dumps({"n": n, "key": ctx.idempotency_key}) + "\\n")
    while n == 3 and (HERE / "hang").exists():
        time.sleep(0.05)
    return f"record {n}"


@plait.tool
def mark(label: str) -> str:
    """A body step's side effect: one line per call."""
    with (HERE / "marks.log").open("a") as f:
        f.write(label + "\\n")
    if (HERE / ("hang-" + label)).exists():
        while True:
            time.sleep(0.05)
    return label
'''

AGENT_PLAN = """plan research {
  use "./tools.py"
  tool record = tools.fetch() { timeout 20s }
  step ask = llm.chat(prompt = "Summarise records 1 to 3", tools = [record], max_turns = 5) {
    timeout 60s
  }
  output answer = ask.output
}
"""


@pytest.fixture
def agent_llm() -> Iterator[AgentLLM]:
    with AgentLLM() as server:
        yield server


def _env(server: AgentLLM | None = None) -> dict[str, str]:
    env = {**os.environ, "PLAIT_JOURNAL_BUSY_TIMEOUT": "2"}
    env.pop("OTEL_TRACES_EXPORTER", None)
    env.pop("PLAIT_LLM_PROVIDER", None)
    if server is not None:
        env["PLAIT_LLM_BASE_URL"] = server.base + "/v1"
        env["PLAIT_LLM_MODEL"] = "m"
    return env


def _start(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PLAIT, "run", "plan.agent", "--journal", "j.db", "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended early: {proc.communicate()[1]}")
            assert time.monotonic() < deadline, "the run never got there"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _resume(tmp_path: Path, env: dict[str, str], stderr: list[str] | None = None) -> dict[str, Any]:
    runs = sqlite3.connect(tmp_path / "j.db").execute("SELECT run_id FROM runs").fetchall()
    assert len(runs) == 1
    done = subprocess.run(
        [*PLAIT, "resume", runs[0][0], "--journal", "j.db", "--json", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    if stderr is not None:
        stderr.append(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _decide(body: dict[str, Any]) -> Any:
    """Turn 1: records 1 and 2 at once; turn 2: record 3; then the answer."""
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if not results:
        return [("record", {"n": 1}), ("record", {"n": 2})]
    if len(results) == 2:
        return [("record", {"n": 3})]
    return "Summary: " + "; ".join(results)


def test_a_killed_conversation_resumes_without_repeating_a_finished_tool_call(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(AGENT_PLAN)
    (tmp_path / "hang").touch()
    agent_llm.decide = _decide
    env = _env(agent_llm)
    calls = tmp_path / "calls.log"
    proc = _start(tmp_path, env)
    # killed while record 3 runs: records 1 and 2 finished, and turn 2's reply is recorded
    _kill_when(proc, lambda: any(json.loads(c)["n"] == 3 for c in _lines(calls)))
    assert len(agent_llm.bodies()) == 2
    (tmp_path / "hang").unlink()

    report = _resume(tmp_path, env)
    made = [json.loads(c) for c in _lines(calls)]
    assert sorted(c["n"] for c in made) == [1, 2, 3, 3]  # only the unfinished call again
    third = [c["key"] for c in made if c["n"] == 3]
    assert third[0] == third[1] and third[0].endswith(":ask/1.2.1")  # under its key
    bodies = agent_llm.bodies()
    assert len(bodies) == 3  # turns 1 and 2 were not asked again
    assert bodies[2]["messages"] == [
        {"role": "user", "content": "Summarise records 1 to 3"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_1",
                    "type": "function",
                    "function": {"name": "record", "arguments": '{"n": 1}'},
                },
                {
                    "id": "call_1_2",
                    "type": "function",
                    "function": {"name": "record", "arguments": '{"n": 2}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_1", "content": "record 1"},
        {"role": "tool", "tool_call_id": "call_1_2", "content": "record 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_2_1",
                    "type": "function",
                    "function": {"name": "record", "arguments": '{"n": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_2_1", "content": "record 3"},
    ]
    assert bodies[2]["tools"] == bodies[0]["tools"]
    assert report["outputs"]["answer"] == "Summary: record 1; record 2; record 3"
    ask = report["steps"]["ask"]
    assert ask["status"] == "succeeded"
    assert ask["attempts"] == 1 and ask["turns"] == 3  # the same attempt, continued
    # every call of the conversation (SPEC 11: over all attempts), the two replayed from
    # the first session included; the killed call counts once, by the result it has now
    assert ask["tool_calls"] == {"record": {"calls": 3, "failures": 0}}


def test_a_killed_model_request_is_asked_again_but_no_tool_call_runs_again(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(AGENT_PLAN)
    hanging = tmp_path / "model-hangs"
    hanging.touch()

    def decide(body: dict[str, Any]) -> Any:
        if sum(m["role"] == "tool" for m in body["messages"]) == 2:
            while hanging.exists():  # the reply to turn 2 never comes in the first session
                time.sleep(0.05)
        return _decide(body)

    agent_llm.decide = decide
    env = _env(agent_llm)
    proc = _start(tmp_path, env)
    _kill_when(proc, lambda: len(agent_llm.bodies()) == 2)  # turn 2 asked, not answered
    hanging.unlink()
    report = _resume(tmp_path, env)
    made = sorted(json.loads(c)["n"] for c in _lines(tmp_path / "calls.log"))
    assert made == [1, 2, 3]  # records 1 and 2 once each, though turn 2 was asked again
    bodies = agent_llm.bodies()
    turn_two = [b for b in bodies if sum(m["role"] == "tool" for m in b["messages"]) == 2]
    assert len(turn_two) == 2 and turn_two[0]["messages"] == turn_two[1]["messages"]
    assert report["outputs"]["answer"] == "Summary: record 1; record 2; record 3"


LOOP_PLAN = """plan looping {
  use "./tools.py"
  loop refine max 4 until draft.output == "d2" {
    step draft = tools.mark(label = "d${loop.index}")
    step review = tools.mark(label = "r${loop.index}-${loop.previous?.draft.output}") {
      after draft
    }
  }
  output last = refine.output
}
"""


def test_a_loop_killed_in_the_middle_of_an_iteration_continues_there(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(LOOP_PLAN)
    (tmp_path / "hang-r1-d0").touch()
    marks = tmp_path / "marks.log"
    env = _env()
    proc = _start(tmp_path, env)
    # iteration 1: its draft finished (and on disk), its review runs
    _kill_when(proc, lambda: "r1-d0" in _lines(marks) and _recorded(tmp_path, "draft", 1))
    assert _lines(marks) == ["d0", "r0-null", "d1", "r1-d0"]
    (tmp_path / "hang-r1-d0").unlink()

    report = _resume(tmp_path, env)
    # iteration 1 continues (its draft kept), with `loop.previous` rebuilt from iteration 0
    assert _lines(marks) == ["d0", "r0-null", "d1", "r1-d0", "r1-d0", "d2", "r2-d1"]
    assert report["outputs"]["last"] == {"draft": "d2", "review": "r2-d1"}
    refine = report["steps"]["refine"]
    assert refine["status"] == "succeeded"
    assert refine["loop"]["iterations"] == 3
    draft = report["steps"]["draft"]
    assert [i["iteration"] for i in draft["per_iteration"]] == [0, 1, 2]
    assert [i["status"] for i in draft["per_iteration"]] == ["succeeded"] * 3
    assert draft["in_loop"] == "refine"
    shown = subprocess.run(
        [*PLAIT, "show", report["run_id"], "--journal", "j.db", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    whole = json.loads(shown.stdout)  # the run over both sessions, from the journal
    assert whole["outcome"] == "succeeded"
    assert [i["iteration"] for i in whole["steps"]["draft"]["per_iteration"]] == [0, 1, 2]
    assert whole["steps"]["refine"]["loop"]["iterations"] == 3


def _recorded(tmp_path: Path, step: str, iteration: int) -> bool:
    """Whether the journal holds `step`'s result in `iteration` (committed)."""
    try:
        with sqlite3.connect(tmp_path / "j.db", timeout=1) as db:
            row = db.execute(
                "SELECT 1 FROM iterations WHERE step = ? AND iteration = ?", (step, iteration)
            ).fetchone()
    except sqlite3.Error:
        return False  # (not created yet)
    return row is not None


INTERRUPTED_LOOP = """plan interrupted {
  use "./tools.py"
  loop work max 3 {
    step a = tools.mark(label = "a${loop.index}")
    step b = std.sleep(seconds = [0, env.PAUSE, 0][loop.index], value = "slept") {
      after a
    }
    step c = tools.mark(label = "c${loop.index}-${loop.previous?.c.output}") {
      after b
    }
  }
  output last = work.output
}
"""


def test_a_loop_interrupted_like_ctrl_c_resumes_in_its_iteration(tmp_path: Path) -> None:
    from plait.runtime.session import RunSession

    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(INTERRUPTED_LOOP)
    journal = tmp_path / "j.db"
    first = RunSession.start(tmp_path / "plan.agent", journal=journal, environ={"PAUSE": "30"})

    def stop_in_iteration_one(event: Any) -> None:
        if event.event == "step_started" and event.step == "b" and event.iteration == 1:
            assert first.runner.run_obj is not None
            first.runner.run_obj.stop("signal")

    first.runner.sinks.append(stop_in_iteration_one)
    report = first.run_sync()
    assert report.steps["work"].status == "cancelled"
    assert _lines(tmp_path / "marks.log") == ["a0", "c0-null", "a1"]

    again = RunSession.resume(first.run_id, journal=journal, environ={"PAUSE": "0.01"})
    resumed = again.run_sync()
    # iteration 1 continues: `a` kept, `b` and `c` run, `loop.previous` rebuilt from 0
    assert _lines(tmp_path / "marks.log") == [
        "a0",
        "c0-null",
        "a1",
        "c1-c0-null",
        "a2",
        "c2-c1-c0-null",
    ]
    assert resumed.outcome == "succeeded"
    assert resumed.outputs["last"] == {"a": "a2", "b": "slept", "c": "c2-c1-c0-null"}
    assert resumed.steps["work"].loop is not None
    assert resumed.steps["work"].loop["iterations"] == 3
    assert [r["iteration"] for r in resumed.steps["c"].per_iteration or []] == [0, 1, 2]


def test_a_conversation_killed_before_its_first_reply_starts_afresh(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(AGENT_PLAN)
    hanging = tmp_path / "model-hangs"
    hanging.touch()

    def decide(body: dict[str, Any]) -> Any:
        while hanging.exists():  # no reply at all in the first session
            time.sleep(0.05)
        return _decide(body)

    agent_llm.decide = decide
    env = _env(agent_llm)
    _kill_when(_start(tmp_path, env), lambda: len(agent_llm.bodies()) == 1)
    hanging.unlink()
    stderr: list[str] = []
    report = _resume(tmp_path, env, stderr)
    assert "journal" not in stderr[0]  # the journal kept recording the fresh conversation
    assert report["outputs"]["answer"] == "Summary: record 1; record 2; record 3"
    assert report["steps"]["ask"]["turns"] == 3
    with sqlite3.connect(tmp_path / "j.db") as db:
        rows = db.execute("SELECT session, turn, call_id FROM conversations").fetchall()
    assert sorted(rows) == [
        (2, 1, ""),
        (2, 1, "call_1_1"),
        (2, 1, "call_1_2"),
        (2, 2, ""),
        (2, 2, "call_2_1"),
        (2, 3, ""),
    ]


def test_a_fresh_attempt_forgets_what_an_earlier_session_recorded_under_its_number(
    tmp_path: Path,
) -> None:
    from plait.runtime.journal import Journal

    key = ("ask", None, None, 1)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.record_conversation("r1", 1, key, {"turn": 1, "reply": {"content": "old"}})
        journal.record_conversation("r1", 1, key, {"turn": 2, "reply": {"content": "old"}})
        journal.record_conversation("r1", 1, ("ask", None, 3, 1), {"turn": 1, "reply": {}})
        journal.record_conversation("r1", 2, key, None)  # attempt 1 starts afresh
        journal.record_conversation("r1", 2, key, {"turn": 1, "reply": {"content": "new"}})
        held = journal.conversations("r1")
    assert held[key] == (2, [{"turn": 1, "reply": {"content": "new"}}])
    assert ("ask", None, 3, 1) in held  # another element's conversation stays
