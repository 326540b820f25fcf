"""Sagas (SPEC section 10, "Compensation"): a failed run undoes finished steps, latest
first, after a deadline too; a signal stops them and lists what is owed as pending."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.consistency.conftest import Planner

pytestmark = pytest.mark.timeout(60)

TOOLS = """
import json, os, time
import plait

LOG = os.path.join(os.path.dirname(__file__), "undo.log")

@plait.tool(name="t.undo")
def undo(what: object, fail: bool = False, sleep: float = 0.0) -> str:
    time.sleep(sleep)
    if fail:
        raise plait.Permanent("cannot undo")
    with open(LOG, "a") as f:
        f.write(json.dumps(what) + "\\n")
    return "undone"
"""

SAGA = """
plan saga {
  use "./tools.py"
  step a = std.echo(value = "A") { compensate undo_a }
  step undo_a = t.undo(what = a.output) { timeout 5s }
  step b = std.echo(value = a.output) { compensate undo_b }
  step undo_b = t.undo(what = [b.output, "b"]) { timeout 5s }
  step c = std.echo(value = "C") { after b; compensate undo_c }
  step undo_c = t.undo(what = c.output, fail = true) { timeout 5s }
  step pay = std.fail(message = "card declined", kind = "permanent") { after c }
}
"""


def undone(folder: Path) -> list[object]:
    log = folder / "undo.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_failed_run_compensates_latest_first(planner: Planner) -> None:
    ran = planner.run(SAGA, tools=TOOLS)
    rep = ran.report
    assert rep.outcome == "failed"
    assert undone(planner.folder) == [["A", "b"], "A"]  # c's undo failed; b's, then a's
    assert [(c["step"], c["compensation"], c["status"]) for c in rep.compensations] == [
        ("c", "undo_c", "failed"),
        ("b", "undo_b", "succeeded"),
        ("a", "undo_a", "succeeded"),
    ]
    assert rep.compensations[0]["error"]["kind"] == "permanent"
    assert [e.compensation for e in ran.of("compensation_failed")] == ["undo_c"]
    assert rep.steps["undo_b"].status == "succeeded"
    names = [e.event for e in ran.events]
    assert names.index("step_finished") < names.index("run_finished")
    last_undo = max(i for i, e in enumerate(ran.events) if getattr(e, "step", None) == "undo_a")
    assert last_undo < names.index("run_finished")


def test_a_succeeded_run_compensates_nothing(planner: Planner) -> None:
    ran = planner.run(
        SAGA.replace(
            'std.fail(message = "card declined", kind = "permanent")', "std.echo(value = 1)"
        ),
        tools=TOOLS,
    )
    assert ran.report.outcome == "succeeded" and ran.report.compensations == []
    assert undone(planner.folder) == []
    assert ran.report.steps["undo_a"].status == "skipped"
    assert ran.report.steps["undo_a"].reason == "not_needed"


def test_compensations_run_after_the_deadline(planner: Planner) -> None:
    ran = planner.run(
        """
        plan late {
          use "./tools.py"
          deadline 1s
          step a = std.echo(value = "A") { compensate undo_a }
          step undo_a = t.undo(what = a.output, sleep = 1.2) { timeout 5s }
          step slow = std.sleep(seconds = 10) { after a }
        }
        """,
        tools=TOOLS,
    )
    assert ran.report.cancelled_by == "deadline" and ran.report.outcome == "failed"
    assert undone(planner.folder) == ["A"]
    assert ran.report.compensations[0]["status"] == "succeeded"


def _sigterm_run(folder: Path, text: str, wait_for: str) -> tuple[int, dict[str, object]]:
    (folder / "tools.py").write_text(TOOLS)
    plan = folder / "plan.agent"
    plan.write_text(text)
    report = folder / "report.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plait",
            "run",
            str(plan),
            "--quiet",
            "--report",
            str(report),
            "--journal",
            str(folder / "j.db"),
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    deadline = time.monotonic() + 20
    while not (folder / wait_for).exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=20)
    return code, json.loads(report.read_text())


def test_after_sigterm_nothing_is_compensated_and_all_is_listed_pending(tmp_path: Path) -> None:
    code, report = _sigterm_run(
        tmp_path,
        """
plan stopped {
  use "./tools.py"
  step a = std.echo(value = "A") { compensate undo_a }
  step undo_a = t.undo(what = a.output) { timeout 5s }
  step mark = file.write(path = "started", content = "x") { after a }
  step slow = std.sleep(seconds = 30) { after mark }
}
""",
        "started",
    )
    assert code == 143
    assert undone(tmp_path) == []
    assert [(c["step"], c["status"]) for c in report["compensations"]] == [("a", "pending")]


def test_sigterm_during_compensations_cancels_the_running_one(tmp_path: Path) -> None:
    code, report = _sigterm_run(
        tmp_path,
        """
plan stopped {
  use "./tools.py"
  step a = std.echo(value = "A") { compensate undo_a }
  step undo_a = t.undo(what = a.output) { timeout 5s }
  step b = std.echo(value = "B") { after a; compensate undo_b }
  step undo_b = t.undo(what = "B", sleep = 10) { timeout 20s }
  step mark = file.write(path = "undoing", content = "x") { after b }
  step pay = std.fail(message = "no") { after mark }
}
""",
        "undoing",
    )
    assert code == 143
    statuses = [(c["step"], c["status"]) for c in report["compensations"]]
    assert statuses == [("b", "cancelled"), ("a", "pending")]


def test_a_partly_succeeded_map_is_compensated_with_its_element_outputs(
    planner: Planner,
) -> None:
    ran = planner.run(
        """
        plan reserve {
          use "./tools.py"
          step book = for x in [1, 2, 3]: t.book(n = x) { compensate unbook }
          step unbook = t.undo(what = book.output) { timeout 5s }
        }
        """,
        tools=TOOLS
        + """
@plait.tool(name="t.book")
def book(n: int) -> str:
    if n == 2:
        raise plait.Permanent("sold out")
    return f"seat-{n}"
""",
    )
    assert ran.report.outcome == "failed"
    assert undone(planner.folder) == [["seat-1", None, "seat-3"]]
    assert [(c["step"], c["status"]) for c in ran.report.compensations] == [("book", "succeeded")]


def test_a_map_with_no_element_succeeded_is_not_compensated(planner: Planner) -> None:
    ran = planner.run(
        """
        plan reserve {
          use "./tools.py"
          step book = for x in [1, 2]: std.fail(message = "no") { compensate unbook }
          step unbook = t.undo(what = book.output) { timeout 5s }
        }
        """,
        tools=TOOLS,
    )
    assert ran.report.outcome == "failed"
    assert undone(planner.folder) == [] and ran.report.compensations == []


def test_body_steps_are_compensated_per_iteration_latest_first(planner: Planner) -> None:
    ran = planner.run(
        """
        plan rounds {
          use "./tools.py"
          loop rounds max 3 {
            step take = std.echo(value = "round ${loop.index}") { compensate give_back }
            step give_back = t.undo(what = [take.output, loop.index]) { timeout 5s }
          }
          step pay = std.fail(message = "card declined", kind = "permanent") { after rounds }
        }
        """,
        tools=TOOLS,
    )
    assert ran.report.outcome == "failed"
    assert undone(planner.folder) == [["round 2", 2], ["round 1", 1], ["round 0", 0]]
    assert [(c["step"], c["iteration"], c["status"]) for c in ran.report.compensations] == [
        ("take", 2, "succeeded"),
        ("take", 1, "succeeded"),
        ("take", 0, "succeeded"),
    ]
