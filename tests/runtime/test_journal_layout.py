"""Where the journal puts a run's rows: after every session recorded before it, whatever its
run id, in tables where SQLite compares keys only (schemas 5-7), and an older journal
(schema 4: events keyed by the random run id; schemas 4 and 5: the per-run tables WITHOUT
ROWID; schemas 5 and 6: events with their run id and session, and a separate key index)
upgraded in place with every read unchanged.

Why it matters (`journal._SCHEMA_5`): in a WITHOUT ROWID table keyed by the run id, a run
whose id sorted before an older run's inserted each row right before that run's first row,
for events its large `run_started`, and SQLite read that row whole at every insert (a
10,000-step run's writer: 0.2 s of CPU alone in its journal, 4-5 s after one other run;
bench/journal_growth.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from plait.runtime.journal import SCHEMA_VERSION, Journal, run_report
from plait.runtime.journal_writer import _in_key_order
from plait.runtime.session import RunSession
from tests.runtime.planlib import P, R, S

LAST, FIRST = "ffffffffffffffff", "0000000000000000"  # ids sorting after and before the rest
TS = "2026-01-01T00:00:00.000000Z"
PER_RUN = ("steps", "plans", "elements", "iterations", "conversations")  # and events


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
    started = {"event": "step_started", "seq": 1, "ts": TS, "step": "s0"}
    journal.record_event(run_id, session, started)
    attempt = {"event": "attempt_started", "seq": 2, "ts": TS, "step": "s0", "attempt": 1}
    journal.record_event(run_id, session, attempt)
    journal.flush()


def _stored_order(path: Path, table: str = "events") -> list[tuple[str, int]]:
    """(run id, session) of the table's rows in the order they are stored, one per stretch."""
    with sqlite3.connect(path) as conn:
        if table == "events":  # (schema 7: the rows' ids are their keys, in stored order)
            rows = conn.execute(
                "SELECT k.run_id, k.session FROM event_rows e"
                " JOIN session_keys k ON k.sid = e.id >> 32 ORDER BY e.id"
            ).fetchall()
            keyed = conn.execute("SELECT run_id, session FROM events ORDER BY sid, seq")
            assert rows == keyed.fetchall()  # (the view of schema 6's columns)
        else:
            rows = conn.execute(f"SELECT run_id, session FROM {table} ORDER BY rowid").fetchall()
    stretches: list[tuple[str, int]] = []
    for run_id, session in rows:
        if not stretches or stretches[-1] != (run_id, session):
            stretches.append((run_id, session))
    return stretches


def _tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


def test_each_session_s_rows_are_stored_after_every_earlier_session_s(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        _run(journal, LAST)
        _run(journal, FIRST)  # sorts before the run already there
        _second_session(journal, LAST)  # a resume of the older run, after the newer one
    assert _stored_order(path) == [(LAST, 1), (FIRST, 1), (LAST, 2)]
    assert _stored_order(path, "steps") == [(LAST, 1), (FIRST, 1)]
    tables = _tables(path)  # rows are never compared with one another, only keys
    assert {"event_rows", *PER_RUN} <= set(tables)
    assert [name for name, sql in tables.items() if "WITHOUT ROWID" in sql.upper()] == []
    with sqlite3.connect(path) as conn:  # an event's id is the table's rowid: no other index
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event_rows'"
        ).fetchall()
        assert indexes == []
        assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'events'").fetchone() == (
            "view",
        )


def test_a_no_op_step_costs_under_900_bytes_of_journal(tmp_path: Path) -> None:
    """Schema 7's events rows hold no run id, session or separate key (schema 6: ~960 B a
    step here), and the writer inserts a batch's events in key order (pages left full)."""
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        _run(journal, LAST, steps=1000)
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert size / 1001 < 900, f"{size / 1001:.0f} bytes per step"


class _Block(list[tuple[int]]):
    """An item standing for several rows, in key order (as `journal._EventBlock`)."""


def test_the_writer_inserts_a_batch_s_events_in_key_order() -> None:
    """A block of plain events is queued before the step_finished events numbered between
    its own: merged, every row is appended (no page split; ~35 B a step above)."""
    items: list[Any] = [_Block([(1,), (2,), (4,)]), (3,), _Block([(5,), (7,)]), (6,), (8,)]
    makes: list[Any] = [iter if type(i) is _Block else tuple for i in items]
    assert list(_in_key_order(makes, items, frozenset({_Block}))) == [(n,) for n in range(1, 9)]
    # rows in another order (two sessions' events, say) are all inserted just the same
    items = [(9,), _Block([(1,), (5,)]), (3,)]
    makes = [iter if type(i) is _Block else tuple for i in items]
    rows = list(_in_key_order(makes, items, frozenset({_Block})))
    assert sorted(rows) == [(1,), (3,), (5,), (9,)]
    assert list(_in_key_order([tuple, tuple], [(2,), (1,)], frozenset({_Block}))) == [(2,), (1,)]


# The events table of schemas 5 and 6.
_EVENTS_6 = """
CREATE TABLE events (
    sid     INTEGER NOT NULL,
    run_id  TEXT NOT NULL,
    session INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    event   TEXT NOT NULL,
    step    TEXT,
    ts      TEXT,
    data    TEXT NOT NULL,
    PRIMARY KEY (sid, seq)
)
"""
# The events table of schemas 2-4 (schema 1's had no WITHOUT ROWID; the upgrade is the same).
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


def _as_schema(path: Path, version: int) -> None:
    """Turn a journal into what plait wrote as schema 4 (the same rows, events keyed by run
    id), 5 or 6 (events keyed by session key and number, with the run id and session), the
    other per-run tables WITHOUT ROWID before schema 6."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE rows_7 AS SELECT * FROM events")
        for name in ("events_update", "events_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP VIEW events")
        conn.execute("DROP TABLE event_rows")
        conn.execute(_EVENTS_6)
        conn.execute("INSERT INTO events SELECT * FROM rows_7 ORDER BY sid, seq")
        conn.execute("DROP TABLE rows_7")
        for table in PER_RUN if version < 6 else ():
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone()
            conn.execute(f"ALTER TABLE {table} RENAME TO new_{table}")
            conn.execute(sql + " WITHOUT ROWID")
            conn.execute(f"INSERT INTO {table} SELECT * FROM new_{table}")
            conn.execute(f"DROP TABLE new_{table}")
        if version == 4:
            conn.execute("ALTER TABLE events RENAME TO new_events")
            conn.execute(_EVENTS_4)
            conn.execute(
                "INSERT INTO events SELECT run_id, session, seq, event, step, ts, data"
                " FROM new_events"
            )
            conn.execute("DROP TABLE new_events")
            conn.execute("DROP TABLE session_keys")
        conn.execute(f"PRAGMA user_version = {version}")


def _reads(journal: Journal, run_ids: list[str]) -> dict[str, Any]:
    return {
        "runs": journal.list_runs(),
        **{
            run_id: (
                journal.events(run_id),
                journal.events(run_id, session=2),
                journal.attempts(run_id),
                journal.finished_steps(run_id),
                journal.compiled_plan(run_id),
                run_report(journal, run_id).to_json_dict(),
            )
            for run_id in run_ids
        },
    }


@pytest.mark.parametrize("version", [4, 5, 6])
def test_an_older_journal_is_upgraded_in_place_and_reads_the_same(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        _run(journal, LAST)
        _run(journal, FIRST)
        _second_session(journal, LAST)
        before = _reads(journal, [LAST, FIRST])
    _as_schema(path, version)
    assert ("WITHOUT ROWID" in _tables(path)["steps"]) == (version < 6)
    with Journal.open(path) as journal:
        assert _reads(journal, [LAST, FIRST]) == before
        middle = "8000000000000000"
        _run(journal, middle)  # a new run after the upgrade goes after the older rows
        assert [r.run_id for r in journal.list_runs()] == [middle, FIRST, LAST]
        assert len(journal.finished_steps(middle)) == 6
        assert journal.prune(keep=2) == [LAST]
        assert journal.events(LAST) == []
    assert _stored_order(path) == [(FIRST, 1), (middle, 1)]
    assert _stored_order(path, "steps") == [(FIRST, 1), (middle, 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        keys = conn.execute("SELECT run_id, session FROM session_keys ORDER BY sid").fetchall()
    assert keys == [(FIRST, 1), (middle, 1)]
    tables = _tables(path)
    assert not [name for name in tables if name.startswith(("old_", "new_"))]
    assert [name for name, sql in tables.items() if "WITHOUT ROWID" in sql.upper()] == []
    assert tables.keys() >= {"event_rows", "session_keys"} and "events" not in tables  # a view
