"""The journal's writer thread: ordered group commits, read-your-writes, a failure that
surfaces, small records, and schema 1 journals still read."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from plait.compiler.ir import CompiledPlan
from plait.runtime.journal import SCHEMA_VERSION, Journal, JournalError
from plait.runtime.journal_writer import GroupCommitWriter
from plait.runtime.session import RunSession
from tests.runtime.planlib import P, R, S


def test_records_are_committed_in_order_and_flush_waits_for_them(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, seen INTEGER)")
    writer = GroupCommitWriter(conn, threading.RLock(), _no_guard)
    # each record sees how many were committed before it: a prefix, in submission order
    for n in range(2000):
        writer.submit(("INSERT INTO t VALUES (?, (SELECT count(*) FROM t))", _pair, n))
    writer.flush()
    rows = conn.execute("SELECT n, seen FROM t ORDER BY n").fetchall()
    assert rows == [(n, n) for n in range(2000)]
    writer.close()
    conn.close()


def test_interleaved_tables_and_a_flush_from_another_thread(tmp_path: Path) -> None:
    # a step's events and its steps row alternate; each table keeps its own order, and a
    # flush from any thread returns once what it submitted before is on disk
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE a (n INTEGER PRIMARY KEY, seen INTEGER)")
    conn.execute("CREATE TABLE b (n INTEGER PRIMARY KEY, seen INTEGER)")
    writer = GroupCommitWriter(conn, threading.RLock(), _no_guard)
    seen_after_flush: list[int] = []

    def other_thread() -> None:
        for n in range(500):
            writer.submit(("INSERT INTO b VALUES (?, (SELECT count(*) FROM b))", _pair, n))
        writer.flush()
        reader = sqlite3.connect(tmp_path / "w.db")
        seen_after_flush.append(reader.execute("SELECT count(*) FROM b").fetchone()[0])
        reader.close()

    helper = threading.Thread(target=other_thread)
    helper.start()
    for n in range(1000):
        writer.submit(("INSERT INTO a VALUES (?, (SELECT count(*) FROM a))", _pair, n))
    helper.join()
    writer.close()
    assert seen_after_flush == [500]
    assert conn.execute("SELECT n, seen FROM a ORDER BY n").fetchall() == [
        (n, n) for n in range(1000)
    ]
    assert conn.execute("SELECT n, seen FROM b ORDER BY n").fetchall() == [
        (n, n) for n in range(500)
    ]
    conn.close()


class _Both:
    """An item standing for a row in each of two tables (as a finished step's event and
    its steps row), queued without a record of its own."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_a_registered_item_makes_its_rows_in_order_with_records_around_it(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE a (n INTEGER PRIMARY KEY, seen INTEGER)")
    conn.execute("CREATE TABLE b (n INTEGER PRIMARY KEY, seen INTEGER)")
    into_a = "INSERT INTO a VALUES (?, (SELECT count(*) FROM a))"
    into_b = "INSERT INTO b VALUES (?, (SELECT count(*) FROM b))"
    rows_of = {_Both: ((into_a, lambda item: (item.n,)), (into_b, lambda item: (item.n,)))}
    writer = GroupCommitWriter(conn, threading.RLock(), _no_guard, rows_of)
    for n in range(300):
        writer.submit(_Both(2 * n))
        writer.submit((into_a, _pair, 2 * n + 1))  # a plain record between items
    writer.flush()
    assert conn.execute("SELECT n, seen FROM a ORDER BY n").fetchall() == [
        (n, n) for n in range(600)
    ]
    assert conn.execute("SELECT n FROM b ORDER BY n").fetchall() == [(2 * n,) for n in range(300)]
    writer.submit(object())  # neither a record nor registered: the writer fails, loudly
    with pytest.raises(TypeError, match="cannot store object"):
        writer.flush()
    conn.close()


def _pair(n: int) -> tuple[int]:
    return (n,)


class _no_guard:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_failed_batch_is_raised_and_nothing_after_it_is_written(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    writer = GroupCommitWriter(conn, threading.RLock(), _no_guard)
    writer.submit(("INSERT INTO t VALUES (?)", _pair, 1))
    writer.flush()
    writer.submit(("INSERT INTO t VALUES (?)", _pair, 1))  # the same key: the batch fails
    with pytest.raises(sqlite3.IntegrityError):
        writer.flush()
    with pytest.raises(sqlite3.IntegrityError):
        writer.submit(("INSERT INTO t VALUES (?)", _pair, 2))
    with pytest.raises(sqlite3.IntegrityError):
        writer.close()
    assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    conn.close()


def _fan_out(n: int) -> CompiledPlan:
    return P(
        S("root", "std.echo", value=1),
        *[S(f"s{i}", "std.echo", value=R("root.output")) for i in range(n)],
        name="fan",
    )


def test_a_no_op_step_costs_under_1_kb_of_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    report = RunSession.start(_fan_out(1000), journal=path, environ={}).run_sync()
    assert report.outcome == "succeeded"
    size = path.stat().st_size + _wal_size(path)
    assert size / 1001 < 1024, f"{size / 1001:.0f} bytes per step"


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_journal_reads_its_own_writes_while_the_writer_runs(tmp_path: Path) -> None:
    seen: list[int] = []
    with Journal.open(tmp_path / "j.db") as journal:
        session = RunSession.start(_fan_out(50), journal=journal, environ={})

        def peek(event: Any) -> None:
            if event.event == "step_finished" and event.step == "s10":
                # the journal's own read waits for what was queued before it
                seen.append(len(journal.finished_steps(session.run_id)))

        session.runner.sinks.append(peek)
        session.run_sync()
        assert seen and seen[0] >= 2  # root and s10 at least (s10 is queued before peek)
        assert len(journal.finished_steps(session.run_id)) == 51


def test_a_schema_1_journal_is_upgraded_in_place_and_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Journal.open(path) as journal:  # a schema 2 file, then made to look like schema 1
        RunSession.start(
            P(S("a", "std.echo", value=1), name="old"), journal=journal, run_id="r-old", environ={}
        ).run_sync()
    conn = sqlite3.connect(path)
    plan_json = json.dumps({"plan": "old", "steps": {}})
    conn.execute("UPDATE runs SET compiled_plan = ?", (plan_json,))
    conn.execute("DROP TABLE plans")
    # a schema 1 event row repeated every field in its JSON
    conn.execute(
        "UPDATE events SET data = json_set(data, '$.event', event, '$.seq', seq,"
        " '$.ts', ts, '$.run_id', run_id)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Journal.open(path) as journal:
        assert journal.compiled_plan("r-old") == {"plan": "old", "steps": {}}
        events = journal.events("r-old")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert journal.finished_steps("r-old")["a"]["output"] == 1
        RunSession.start(
            P(S("b", "std.echo", value=2), name="new"), journal=journal, run_id="r-new", environ={}
        ).run_sync()
        assert journal.compiled_plan("r-new")["plan"] == "new"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_newer_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match="newer plait"):
        Journal.open(path)


def test_a_writer_bug_of_any_kind_leaves_the_run_going_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal is an observer: if making its rows fails in a way nobody planned for (a
    KeyError here), the run still finishes and its report says the journal stopped."""
    from plait.runtime import journal as journal_module

    def broken(self: Any) -> Any:
        raise KeyError("no such column")

    monkeypatch.setattr(journal_module._EventBlock, "rows", broken)
    report = RunSession.start(_fan_out(200), journal=tmp_path / "j.db", environ={}).run_sync()
    assert report.outcome == "succeeded" and len(report.steps) == 201
    (warning,) = [w for w in report.warnings if w.kind == "journal_failed"]
    assert "KeyError" in warning.message and "went on without its journal" in warning.message
