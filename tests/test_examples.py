"""Every example plan checks cleanly and, run offline, ends with its documented outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLAIT = [sys.executable, "-m", "plait"]
JOURNAL_HOME = tempfile.mkdtemp(prefix="plait-examples-")

# plan -> (extra arguments, expected outcome, expected exit code)
EXPECTED: dict[str, tuple[list[str], str, int]] = {
    "hello.agent": (["--input", "name=tests"], "succeeded", 0),
    "triage.agent": (["--input", "ticket=I was charged twice"], "degraded", 3),
    "research.agent": ([], "degraded", 3),
    "flaky_api.agent": ([], "degraded", 3),
    "python_tools.agent": ([], "succeeded", 0),
    "deadline.agent": ([], "failed", 1),
    "review_loop.agent": ([], "succeeded", 0),
    "react_agent.agent": ([], "succeeded", 0),
    "inventory.agent": ([], "failed", 1),
}


def run_example(name: str, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {
        **os.environ,
        "PLAIT_LLM_PROVIDER": "scripted:triage.rules.yaml",
        "PLAIT_HOME": JOURNAL_HOME,
    }
    proc = subprocess.run(
        [*PLAIT, "run", str(EXAMPLES / name), "--json", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.agent")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_checks_cleanly(name: str) -> None:
    proc = subprocess.run(
        [*PLAIT, "check", "--strict", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_outcome(name: str) -> None:
    args, outcome, code = EXPECTED[name]
    rc, report, stderr = run_example(name, *args)
    assert (report["outcome"], rc) == (outcome, code), stderr


def test_hello_retries_its_flaky_step() -> None:
    _, report, _ = run_example("hello.agent", "--input", "name=tests")
    assert report["outputs"] == {"greeting": "Hello, tests!", "shout": "HELLO, tests!"}
    assert report["steps"]["loud"]["status"] == "succeeded"
    assert report["steps"]["loud"]["attempts"] == 2


def test_triage_degrades_because_history_is_down() -> None:
    _, report, _ = run_example("triage.agent", "--input", "ticket=I was charged twice")
    steps = report["steps"]
    assert steps["history"]["status"] == "failed"
    assert steps["history"]["error"]["kind"] == "transient"
    assert steps["classify"]["status"] == "succeeded"
    assert steps["classify_by_rules"]["reason"] == "not_needed"
    assert steps["notify_failure"]["reason"] == "trigger_not_met"
    assert steps["escalate"]["reason"] == "condition_false"
    assert report["outputs"]["category"] == "billing"
    assert "refunded" in report["outputs"]["reply"]
    assert [r["step"] for r in report["reasons"]] == ["history"]


def test_research_tolerates_the_dead_source() -> None:
    _, report, _ = run_example("research.agent")
    fetch = report["steps"]["fetch"]
    assert fetch["status"] == "recovered"
    assert fetch["elements"]["total"] == 4
    assert fetch["elements"]["failed"] == 1
    assert [e["index"] for e in fetch["elements"]["errors"]] == [3]
    summaries = report["outputs"]["report"]["summaries"]
    assert summaries[3] == "(source unavailable)"
    assert all("Circuit breakers" in s for s in summaries[:3])


def test_flaky_api_breaker_and_rescues() -> None:
    _, report, _ = run_example("flaky_api.agent")
    steps = report["steps"]
    assert (steps["quote"]["status"], steps["quote"]["attempts"]) == ("succeeded", 3)
    assert steps["inventory"]["status"] == "recovered"
    assert steps["inventory"]["fallback_used"] == "cached_inventory"
    assert steps["shipping"]["status"] == "recovered"
    assert steps["shipping"]["error"]["kind"] == "breaker_open"
    assert report["outputs"] == {"price": 42, "stock": 7, "days": 5}


def test_python_tools_outputs() -> None:
    _, report, _ = run_example("python_tools.agent")
    assert report["outputs"]["slug"] == "resilient-agents-plainly"
    assert report["outputs"]["words"] == 3
    assert report["outputs"]["tagged"] == "resilient-agents-plainly #agents #reliability"
    assert json.loads(report["outputs"]["json"]) == {
        "title": "Resilient Agents, Plainly",
        "words": 3,
    }


def test_deadline_cancels_cleanly() -> None:
    _, report, _ = run_example("deadline.agent")
    steps = report["steps"]
    assert report["cancelled_by"] == "deadline"
    assert steps["slow"]["status"] == "cancelled"
    assert steps["combine"]["status"] == "cancelled"
    assert steps["retrying"]["error"]["retry"] == "deadline"
    assert report["outputs"] == {"quick": "done", "combined": None}
    assert report["duration_s"] < 5


def test_review_loop_stops_when_the_reviewer_approves() -> None:
    code, report, _ = run_example("review_loop.agent")
    assert code == 0 and report["outputs"]["rounds"] == 3
    assert report["outputs"]["final"].startswith("v3: ")
    loop = report["steps"]["review"]
    assert (loop["status"], loop["attempts"], loop["loop"]["max"]) == ("succeeded", 3, 4)
    assert [r["status"] for r in report["steps"]["critique"]["per_iteration"]] == ["succeeded"] * 3


def test_react_agent_recovers_from_a_flaky_tool_and_an_open_breaker(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    code, report, _ = run_example("react_agent.agent", "--events", str(events))
    assert code == 0
    step = report["steps"]["answer"]
    assert step["turns"] == 3
    assert step["tool_calls"] == {
        "search": {"calls": 1, "failures": 0},
        "weather": {"calls": 2, "failures": 2},
        "tools.calc": {"calls": 1, "failures": 0},
    }
    finished = [
        json.loads(line)
        for line in events.read_text().splitlines()
        if '"tool_call_finished"' in line
    ]
    outcome = {
        (e["turn"], e["tool"]): (e["status"], e["attempts"], e.get("kind")) for e in finished
    }
    assert outcome == {
        (1, "search"): ("succeeded", 3, None),  # failed twice, then retried
        (1, "weather"): ("failed", 1, "transient"),
        (2, "weather"): ("failed", 1, "breaker_open"),
        (2, "tools.calc"): ("succeeded", 1, None),
    }
    assert "1,418,000" in report["outputs"]["answer"]


def test_inventory_redecides_a_stale_reservation_and_undoes_the_unpaid_one() -> None:
    """inventory.agent's header: one reservation goes stale and is re-decided, none is
    lost, and the declined payment's reservation is compensated (10 - 3 = 7 left)."""
    _, report, _ = run_example("inventory.agent")
    steps = report["steps"]
    redecided = [n for n in ("reserve_a", "reserve_b") if steps[n]["redecisions"]]
    assert len(redecided) == 1
    agent = redecided[0][-1]
    assert steps[redecided[0]]["redecisions"][0]["rerun"] == [f"read_{agent}", f"plan_{agent}"]
    assert steps[f"read_{agent}"]["executions"] == 2
    assert [(c["step"], c["compensation"], c["status"]) for c in report["compensations"]] == [
        ("reserve_b", "release_b", "succeeded")
    ]
    assert json.loads((EXAMPLES / "inventory.json").read_text()) == {"widgets": 7}
