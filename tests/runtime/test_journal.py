"""The SQLite journal: records as events arrive, reads back, and refuses bad files cleanly."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from plait.errors import UserError
from plait.runtime.events import (
    AttemptFailed,
    AttemptFinished,
    AttemptStarted,
    EventBus,
    RunFinished,
    RunStarted,
    StepFinished,
)
from plait.runtime.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalSink,
    UnknownRun,
    journal_path,
    merge_sessions,
    run_report,
)
from plait.runtime.masking import Masker

PLAN_JSON = {"plan": "demo", "steps": {"a": {}, "b": {}}}
STEPS = {
    "a": {"optional": False, "standby_for": None, "map": False},
    "b": {"optional": False, "standby_for": None, "map": False},
}


def _record_run(journal: Journal, run_id: str = "r1", *, finish: bool = True) -> JournalSink:
    """Drive a small run through a real EventBus into the journal sink."""
    sink = JournalSink(
        journal,
        compiled_plan=PLAN_JSON,
        plan_path="/x/demo.agent",
        raw_inputs={"token": "s3cret-value"},
    )
    bus = EventBus(run_id, [sink], mask=Masker(["s3cret-value"]).mask_event)
    bus.emit(RunStarted(plan="demo", inputs={"token": "s3cret-value"}, steps=STEPS))
    bus.emit(AttemptStarted(step="a", attempt=1))
    bus.emit(AttemptFailed(step="a", attempt=1, kind="transient", message="boom"))
    bus.emit(
        AttemptFinished(
            step="a", attempt=1, status="failed", duration_s=0.01, kind="transient", message="boom"
        )
    )
    bus.emit(AttemptStarted(step="a", attempt=2))
    bus.emit(AttemptFinished(step="a", attempt=2, status="succeeded", duration_s=0.02))
    sink.record_output("a", {"secret": "s3cret-value", "n": 1})
    bus.emit(
        StepFinished(
            step="a", status="succeeded", attempts=2, output={"secret": "s3cret-value", "n": 1}
        )
    )
    if finish:
        bus.emit(StepFinished(step="b", status="skipped", reason="condition_false"))
        bus.emit(RunFinished(outcome="succeeded", outputs={"n": 1}, duration_s=0.1))
    return sink


def test_journal_path_precedence(tmp_path: Path) -> None:
    assert journal_path("x.db", {"PLAIT_HOME": "/h"}) == Path("x.db")
    assert journal_path(None, {"PLAIT_HOME": "/h"}) == Path("/h/journal.db")
    assert journal_path(None, {}) == Path(".plait/journal.db")


def test_records_run_events_attempts_and_raw_outputs(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.db"
    with Journal.open(path) as journal:
        _record_run(journal)
    assert path.stat().st_mode & 0o777 == 0o600
    with Journal.open(path, create=False) as journal:
        (run,) = journal.list_runs()
        assert (run.run_id, run.plan, run.outcome, run.sessions) == ("r1", "demo", "succeeded", 1)
        assert run.plan_path == "/x/demo.agent"
        assert journal.inputs("r1") == {"token": "***"}
        assert journal.inputs("r1", raw=True) == {"token": "s3cret-value"}
        assert journal.compiled_plan("r1") == PLAN_JSON
        events = journal.events("r1")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        # events keep masked values; the step record keeps the real output for resume
        finished = [e for e in events if e["event"] == "step_finished" and e["step"] == "a"]
        assert finished[0]["output"] == {"secret": "***", "n": 1}
        steps = journal.finished_steps("r1")
        assert steps["a"]["output"] == {"secret": "s3cret-value", "n": 1}
        assert steps["b"]["status"] == "skipped"
        attempts = journal.attempts("r1")
        assert [(a.attempt, a.status, a.kind, a.message) for a in attempts] == [
            (1, "failed", "transient", "boom"),
            (2, "succeeded", None, None),
        ]


def test_report_from_events_and_unfinished_run(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db") as journal:
        _record_run(journal, "done")
        _record_run(journal, "crashed", finish=False)
        assert journal.report("done") is None
        sink = JournalSink(journal, compiled_plan=PLAN_JSON, plan_path=None, raw_inputs={})
        sink.run_id = "done"
        sink.store_report()
        stored = journal.report("done")
        assert stored is not None and stored["outcome"] == "succeeded"
        report = run_report(journal, "done")
        assert report.outcome == "succeeded"
        assert report.steps["a"].attempts == 2
        assert report.steps["a"].output == {"secret": "***", "n": 1}
        crashed = run_report(journal, "crashed")
        assert crashed.steps["a"].status == "succeeded"
        assert crashed.steps["b"].status == "pending"
        assert journal.run("crashed").outcome is None
        assert "b" not in journal.finished_steps("crashed")
        # most recent first
        assert [r.run_id for r in journal.list_runs()] == ["crashed", "done"]


def test_run_id_prefix_and_unknown(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db") as journal:
        _record_run(journal, "abc123")
        _record_run(journal, "abd456")
        assert journal.resolve_run_id("abc") == "abc123"
        with pytest.raises(UnknownRun, match="ambiguous"):
            journal.resolve_run_id("ab")
        with pytest.raises(UnknownRun, match="unknown run 'zzz'"):
            journal.resolve_run_id("zzz")
        with pytest.raises(UnknownRun):
            journal.resolve_run_id("a%")


def test_merge_sessions_keeps_each_step_from_its_deciding_session() -> None:
    s1 = [
        {"event": "run_started", "session": 1, "ts": "T1", "steps": {"a": {}, "b": {}}},
        {"event": "attempt_started", "session": 1, "step": "a", "attempt": 1},
        {"event": "step_finished", "session": 1, "step": "a", "status": "succeeded"},
        {"event": "attempt_started", "session": 1, "step": "b", "attempt": 1},
    ]
    s2 = [
        {"event": "run_started", "session": 2, "ts": "T2", "steps": {"a": {}, "b": {}}},
        {
            "event": "step_finished",
            "session": 2,
            "step": "a",
            "status": "succeeded",
            "resumed": True,
        },
        {"event": "attempt_started", "session": 2, "step": "b", "attempt": 1},
        {"event": "step_finished", "session": 2, "step": "b", "status": "succeeded"},
        {"event": "run_finished", "session": 2, "outcome": "succeeded"},
    ]
    merged = merge_sessions(s1 + s2)
    assert merged[0]["ts"] == "T1"
    assert [(e["event"], e.get("step"), e["session"]) for e in merged[1:]] == [
        ("attempt_started", "a", 1),
        ("step_finished", "a", 1),
        ("attempt_started", "b", 2),
        ("step_finished", "b", 2),
        ("run_finished", None, 2),
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a database at all" * 100)
    before = _digest(path)
    with pytest.raises(JournalError, match="corrupt or not an SQLite file"):
        Journal.open(path)
    assert _digest(path) == before


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with Journal.open(path) as journal:
        _record_run(journal)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = _digest(path)
    with pytest.raises(JournalError, match="newer plait"):
        Journal.open(path)
    assert _digest(path) == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="not a plait journal"):
        Journal.open(path)


def test_locked_journal_gives_clear_error_and_keeps_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_JOURNAL_BUSY_TIMEOUT", "0.2")
    path = tmp_path / "journal.db"
    with Journal.open(path) as journal:
        _record_run(journal, "first")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Journal.open(path) as journal, pytest.raises(JournalError, match="locked"):
            _record_run(journal, "second")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Journal.open(path) as journal:
        assert [r.run_id for r in journal.list_runs()] == ["first"]


def test_missing_journal_for_reading(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        Journal.open(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_run_without_events_reports_clearly(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db") as journal:
        journal.begin_run(
            run_id="early",
            plan="demo",
            plan_path=None,
            plan_sha256=None,
            compiled_plan=PLAN_JSON,
            inputs={},
            raw_inputs={},
            started_at="2026-01-01T00:00:00.000000Z",
        )
        with pytest.raises(UserError, match="no recorded events"):
            run_report(journal, "early")
