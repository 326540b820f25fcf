"""RunSession: the journaled runs of the CLI, from Python; and `plait run --no-journal`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import plait
from plait.runtime.journal import Journal, run_report
from plait.runtime.session import RunSession
from plait.stdlib.registry import tool
from tests.runtime.planlib import P, R, S

CALLS: list[str] = []


@tool(name="session_test.count")
def count(label: str, value: Any = None) -> Any:
    """Record that it ran (the effect a resume must not repeat) and return `value`."""
    CALLS.append(label)
    return value


def _plan_file(folder: Path) -> Path:
    plan = P(
        S("a", "session_test.count", label="a", value=1),
        S("slow", "std.sleep", seconds=2.0, value="slept", after=["a"]),
        S("b", "session_test.count", label="b", value=R("slow.output")),
        outputs={"b": R("b.output")},
        name="session",
    )
    path = folder / "plan.json"
    path.write_text(plan.model_dump_json())
    return path


def test_run_plan_with_a_journal_records_the_run(tmp_path: Path) -> None:
    journal_file = tmp_path / "j.db"
    plan = P(S("a", "std.echo", value={"n": 1}), outputs={"n": R("a.output.n")}, name="tiny")
    report = plait.run_plan(plan, environ={}, journal=journal_file)
    assert report.outcome == "succeeded"
    with Journal.open(journal_file, create=False) as journal:
        record = journal.run(report.run_id)
        assert record.outcome == "succeeded" and record.sessions == 1
        assert journal.finished_steps(report.run_id)["a"]["output"] == {"n": 1}
        assert run_report(journal, report.run_id).outcome == "succeeded"


def test_run_plan_without_a_journal_records_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PLAIT_HOME", raising=False)
    report = plait.run_plan(P(S("a", "std.echo", value=1)), environ={})
    assert report.outcome == "succeeded"
    assert not (tmp_path / ".plait").exists()


def _stopping_after_a(session: RunSession) -> RunSession:
    """The session, stopped (as by a signal) once step `a` has finished."""

    def stop_after_a(event: Any) -> None:
        if event.event == "step_finished" and event.step == "a":
            assert session.runner.run_obj is not None
            session.runner.run_obj.stop("signal")

    session.runner.sinks.append(stop_after_a)
    return session


def test_a_stopped_session_resumes_from_python_without_repeating_steps(tmp_path: Path) -> None:
    CALLS.clear()
    path = _plan_file(tmp_path)
    journal_file = tmp_path / "j.db"
    session = _stopping_after_a(RunSession.start(path, journal=journal_file, environ={}))
    first = session.run_sync()
    assert first.outcome == "failed" and first.steps["slow"].status == "cancelled"
    assert CALLS == ["a"]

    again = RunSession.resume(first.run_id, journal=journal_file, environ={})
    assert again.note is None  # the plan file is where it was, unchanged
    second = asyncio.run(again.run())
    assert second.outcome == "succeeded" and second.outputs == {"b": "slept"}
    assert CALLS == ["a", "b"]  # `a` finished in the first session: not run again
    with Journal.open(journal_file, create=False) as journal:
        assert journal.run(first.run_id).sessions == 2


def test_two_sessions_sharing_one_open_journal_record_their_own_session(
    tmp_path: Path,
) -> None:
    """A run's typed events are queued as they are and get their session number when the
    writer makes their rows: a resume through the same open `Journal` must still store
    each session's events (and steps) under its own number."""
    CALLS.clear()
    path = _plan_file(tmp_path)
    with Journal.open(tmp_path / "j.db") as journal:
        first = _stopping_after_a(RunSession.start(path, journal=journal, environ={})).run_sync()
        second = RunSession.resume(first.run_id, journal=journal, environ={}).run_sync()
        assert second.outcome == "succeeded"
        events = journal.events(first.run_id)
        by_session = {n: [e["event"] for e in events if e.get("session", 1) == n] for n in (1, 2)}
    assert by_session[1][0] == "run_started" and by_session[2][0] == "run_started"
    assert "step_started" in by_session[2] and by_session[1].count("run_started") == 1
    with sqlite3.connect(tmp_path / "j.db") as db:
        steps = dict(
            db.execute("SELECT step, session FROM steps WHERE run_id = ?", (first.run_id,))
        )
    assert steps == {"a": 1, "slow": 2, "b": 2}


def _plait(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_journal_runs_and_records_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text("plan p {\n  step a = std.echo(value = 1)\n  output x = a.output\n}\n")
    result = _plait("run", str(plan), "--no-journal", "--json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"x": 1' in result.stdout
    assert not (tmp_path / ".plait").exists()
    recorded = _plait("run", str(plan), "--quiet", cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert (tmp_path / ".plait" / "journal.db").exists()


def test_no_journal_with_a_journal_path_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text("plan p {\n  step a = std.echo(value = 1)\n}\n")
    result = _plait("run", str(plan), "--no-journal", "--journal", "j.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "--no-journal" in result.stderr and "Traceback" not in result.stderr
