"""Where the journal puts a run's events: after every session recorded before it, whatever
its run id (schema 5), and an older journal (schema 4, events keyed by the random run id in
a WITHOUT ROWID table) upgraded in place with every read unchanged.

Why it matters (`journal._SCHEMA_5`): with the run id leading the key, a run whose id sorted
before an older run's inserted each row right before that run's first row, its large
`run_started`, and SQLite read that row whole at every insert (a 10,000-step run's writer:
0.2 s of CPU alone in its journal, 4-5 s after one other run; bench/journal_growth.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from plait.runtime.journal import SCHEMA_VERSION, Journal, run_report
from plait.runtime.session import RunSession
from tests.runtime.planlib import P, R, S

LAST, FIRST = "ffffffffffffffff", "0000000000000000"  # ids sorting after and before the rest
TS = "2026-01-01T00:00:00.000000Z"


def _run(journal: Journal, run_id: str, steps: int = 5) -> None:
    plan = P(
        S("root", "std.echo", value=1),
        *[S(f"s{i}", "std.echo", value=R("root.output")) for i in range(steps)],
        name="fan",
    )
    report = RunSession.start(plan, journal=journal, run_id=run_id, environ={}).run_sync()
    assert report.outcome == "succeeded"


def _second_session(journal: Journal, run_id: str) -> None:
    """A resume's session, recorded through the journal's own API."""
    session = journal.begin_session(run_id, TS)
    assert session == 2
    journal.record_event(
        run_id, session, {"event": "step_started", "seq": 1, "ts": TS, "step": "s0"}
    )
    attempt = {"event": "attempt_started", "seq": 2, "ts": TS, "step": "s0", "attempt": 1}
    journal.record_event(run_id, session, attempt)
    journal.flush()


def _stored_order(path: Path) -> list[tuple[str, int]]:
    """(run id, session) of the events rows in the order they are stored, one per stretch."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT run_id, session FROM events ORDER BY rowid").fetchall()
        assert (
            rows == conn.execute("SELECT run_id, session FROM events ORDER BY sid, seq").fetchall()
        )
    stretches: list[tuple[str, int]] = []
    for run_id, session in rows:
        if not stretches or stretches[-1] != (run_id, session):
            stretches.append((run_id, session))
    return stretches


def test_each_session_s_events_are_stored_after_every_earlier_session_s(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        _run(journal, LAST)
        _run(journal, FIRST)  # sorts before the run already there
        _second_session(journal, LAST)  # a resume of the older run, after the newer one
    assert _stored_order(path) == [(LAST, 1), (FIRST, 1), (LAST, 2)]
    with sqlite3.connect(path) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
    assert "WITHOUT ROWID" not in sql.upper()  # rows are never compared with one another


# The events table of schema 2-4 (schema 1's had no WITHOUT ROWID; the upgrade is the same).
_EVENTS_4 = """
CREATE TABLE events (
    run_id  TEXT NOT NULL,
    session INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    event   TEXT NOT NULL,
    step    TEXT,
    ts      TEXT,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, session, seq)
) WITHOUT ROWID
"""


def _as_schema_4(path: Path) -> None:
    """Turn a journal into what plait wrote before schema 5: the same rows, keyed by run id."""
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE events RENAME TO new_events")
        conn.execute(_EVENTS_4)
        conn.execute(
            "INSERT INTO events SELECT run_id, session, seq, event, step, ts, data FROM new_events"
        )
        conn.execute("DROP TABLE new_events")
        conn.execute("DROP TABLE session_keys")
        conn.execute("PRAGMA user_version = 4")


def _reads(journal: Journal, run_ids: list[str]) -> dict[str, Any]:
    return {
        "runs": journal.list_runs(),
        **{
            run_id: (
                journal.events(run_id),
                journal.events(run_id, session=2),
                journal.attempts(run_id),
                journal.finished_steps(run_id),
                run_report(journal, run_id).to_json_dict(),
            )
            for run_id in run_ids
        },
    }


def test_a_schema_4_journal_is_upgraded_in_place_and_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        _run(journal, LAST)
        _run(journal, FIRST)
        _second_session(journal, LAST)
        before = _reads(journal, [LAST, FIRST])
    _as_schema_4(path)
    with Journal.open(path) as journal:
        assert _reads(journal, [LAST, FIRST]) == before
        middle = "8000000000000000"
        _run(journal, middle)  # a new run after the upgrade goes after the older rows
        assert [r.run_id for r in journal.list_runs()] == [middle, FIRST, LAST]
        assert len(journal.finished_steps(middle)) == 6
        assert journal.prune(keep=2) == [LAST]
        assert journal.events(LAST) == []
    assert _stored_order(path) == [(FIRST, 1), (middle, 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT run_id, session FROM session_keys ORDER BY sid").fetchall() == [
            (FIRST, 1),
            (middle, 1),
        ]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "old_events" not in tables
