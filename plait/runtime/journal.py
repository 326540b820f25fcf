"""The run journal: every run, event, attempt and finished step, in one SQLite file.

Where it lives: `--journal PATH`, else `$PLAIT_HOME/journal.db`, else `.plait/journal.db` in
the current folder. SQLite in WAL mode (readers never block the writer), the schema version in
`PRAGMA user_version`.

What it holds, per run (a run resumed keeps its id; each start or resume is a *session*):
the compiled plan as JSON, the plan file's path and SHA-256, the inputs twice (masked for
display, raw for resume), every event, every attempt (status, error, timing) and every
finished step with its real output; for resume also each finished map element, each loop
body step's result per iteration, and each model reply and tool-call result of a
conversation (SPEC section 11: these reach the disk before the conversation goes on).

Secrets: a resume must feed finished steps' real outputs and the real inputs back to the
scheduler, so `steps.result` and `runs.raw_inputs` hold values **unmasked**. They are read
only by `resume`; `runs`, `show`, `report` and `graph --run` read the masked copies (the
events, `runs.inputs` and the stored report). The journal file is created mode 0600 and its
folder 0700 for that reason.

Durability: events and finished steps go to a writer thread that commits them in ordered
batches (group commit, `journal_writer.py`), each batch one transaction synced with
`synchronous=FULL` (it survives a killed process and a power cut). The scheduler never waits
for the disk. What is on disk is always a prefix of the run's history, and a step's record
is committed with its `step_finished` event. After a crash a resume runs again every step
whose completion had not reached the disk yet (at most the last few milliseconds of
history): a step runs *at least* once, never twice after its completion was committed.
The run's start and end are written at once (the start before any step begins).

Size: an event row keeps its JSON without the fields that have columns (`event`, `seq`,
`ts`, `run_id`), and attempts are read from the events: a finished no-op step costs about
850 bytes (outputs aside; 1,000-step fan-out).

Layout (schemas 5-7): every table is a rowid table (none WITHOUT ROWID), so SQLite
compares keys, never whole rows, whatever their size. The events, four rows per step, are
rows of `event_rows` whose rowid is made of `sid`, a number given to each session in order
(`session_keys`), and the event's `seq`: a session's rows are appended at the end whatever
its run id, so what a run costs to record does not depend on the runs already recorded
(`_SCHEMA_5` says why; `bench/journal_growth.py` measures it), and the table is its own
index (`_SCHEMA_7`). `events` is a view with schema 6's columns (`sid`, `run_id`,
`session`, `seq`, ...) for other readers of the file. An older journal is upgraded when
opened, in one transaction (0.6 s for a 37.5 MB journal of schema 6, or 35 MB of schema 4).

A journal that is locked (after a busy timeout), corrupt, not a plait journal, or written by
a newer plait raises `JournalError` (a `UserError`: one line, exit 2). Nothing here
deletes or rewrites an existing record, except `prune` (`plait runs --prune`), on request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import operator
import os
import re
import sqlite3
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plait.errors import UserError
from plait.runtime.events import (
    EVENT_TYPES,
    AttemptFinished,
    AttemptStarted,
    Event,
    StepFinished,
    StepStarted,
    event_from_dict,
    outcome_json,
    plain_attempt,
    plain_attempt_text,
    stored_json,
    stored_text,
)
from plait.runtime.journal_writer import GroupCommitWriter, Rows

SCHEMA_VERSION = 7
DEFAULT_FOLDER = ".plait"
JOURNAL_FILE = "journal.db"
# Seconds to wait for another process's write lock before giving up with a clear error.
DEFAULT_BUSY_TIMEOUT_S = 5.0
BUSY_TIMEOUT_ENV = "PLAIT_JOURNAL_BUSY_TIMEOUT"

# Step statuses that end a step for good: such a step is kept by a resume.
FINISHED_STATUSES = frozenset({"succeeded", "recovered", "failed", "skipped"})
# Event fields kept in columns of the events table, so not repeated in its JSON.
_EVENT_COLUMNS = ("event", "seq", "ts", "run_id")
_NO_RECORD: Any = object()  # `record_event` without a step record
# Event fields the events table keeps in columns (not in an event's stored JSON).
_COLUMNS = frozenset({"seq", "ts", "run_id", "step"})
# Fields of a `step_finished` event a step's record does not repeat.
_STEP_RECORD_DROPS = frozenset({"event", "seq", "run_id", "step", "ts"})

_SCHEMA = """
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    plan          TEXT NOT NULL,
    plan_path     TEXT,
    plan_sha256   TEXT,
    compiled_plan TEXT NOT NULL,      -- schema 1: the CompiledPlan as JSON, since then '' (plans)
    inputs        TEXT NOT NULL,      -- masked, for display
    raw_inputs    TEXT NOT NULL,      -- unmasked, for resume only
    plait_version TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,               -- NULL while running or after a crash
    duration_s    REAL,
    sessions      INTEGER NOT NULL DEFAULT 1,
    report        TEXT                -- the whole run's report if stored (store_report), JSON
);
CREATE TABLE sessions (
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    session     INTEGER NOT NULL,     -- 1 for the first run, 2 for the first resume, ...
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT,
    forced      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, session)
);
CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    step        TEXT NOT NULL,
    session     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    attempts    INTEGER,
    finished_at TEXT,
    result      TEXT,                 -- the step's result with its REAL output (resume only)
    PRIMARY KEY (run_id, step)
)
"""
# Schema 2 adds this table (a schema 1 journal gets it when opened, nothing else changes):
# the compiled plan, zlib-compressed JSON, apart from the runs row that is updated at each
# session's start and end (SQLite rewrites a whole row, plan included, on each update).
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS plans (
    run_id        TEXT PRIMARY KEY,
    compiled_plan BLOB NOT NULL
)
"""


# Schema 3: map elements that finished, so a resume runs only the rest of a map
_SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS elements (
    run_id  TEXT NOT NULL,
    step    TEXT NOT NULL,
    element INTEGER NOT NULL,
    session INTEGER NOT NULL,
    result  TEXT NOT NULL,            -- the element's result with its REAL output (resume only)
    PRIMARY KEY (run_id, step, element)
)
"""

# Schema 4 (SPEC section 11): what a resume needs of loops and model conversations that did
# not finish. Each body step's result per iteration (the `steps` row holds only its last),
# and each model reply and tool-call result of a conversation as it arrives. -1 stands for
# "none" in `iteration` and `element` (they are part of the key).
_SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS iterations (
    run_id    TEXT NOT NULL,
    step      TEXT NOT NULL,          -- a loop's body step
    iteration INTEGER NOT NULL,
    session   INTEGER NOT NULL,
    result    TEXT NOT NULL,          -- its result in that iteration, REAL output (resume only)
    PRIMARY KEY (run_id, step, iteration)
);
CREATE TABLE IF NOT EXISTS conversations (
    run_id    TEXT NOT NULL,
    step      TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    element   INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    turn      INTEGER NOT NULL,
    call_id   TEXT NOT NULL,          -- empty for the model's reply of that turn
    session   INTEGER NOT NULL,
    entry     TEXT NOT NULL,          -- the reply or the tool call's result, REAL values
    PRIMARY KEY (run_id, step, iteration, element, attempt, turn, call_id)
)
"""

# Schema 5: events are keyed by a number per session, given in order (`session_keys`), not
# by the run's id, and kept in a rowid table: every session's rows are appended at the end
# of both B-trees, wherever its run's id sorts. Schemas 1-4 keyed them by
# (run_id, session, seq) in a WITHOUT ROWID table, where each row is a key of the B-tree:
# a run whose random id sorts before an older run's inserted every row right before that
# run's first row, its `run_started` (~800 KB of JSON for 10,000 steps, the per-step map,
# on overflow pages), and SQLite compares a key with a row on overflow pages by reading the
# row whole. Each insert read 800 KB: a 10,000-step fan-out's writer took 4-5 s of CPU
# instead of 0.2-0.25 s once a few runs were recorded (bench/journal_growth.py). In a rowid
# table rows are never compared, and the key index holds two small integers per row.
# Schema 6: the other tables too. Their rows are outputs, none large by construction, but
# a run sorting before another, whose steps finished in the order of their names, inserted
# each `steps` row right before the other run's first one: with a 1 MB output there, a
# 10,000-step run's writer took 4.5 s instead of 0.3. Now no table is WITHOUT ROWID: rows
# are never compared, only keys (`_rekey` rebuilds an older journal's tables).
# Schema 7: the events of a session are rows of `event_rows`, keyed by one integer made of
# the session's key and the event's number (`_SEQ_BITS`): the table is its own index, and a
# row holds neither the run id nor the session (`session_keys` has them). Schemas 5 and 6
# stored both on every row (four rows per step) and kept `(sid, seq)` in an index beside
# the table: a finished no-op step cost ~960 bytes, now ~850 (1,000-step fan-out; ~35 of
# it because the writer inserts a batch's events in key order, `_in_key_order`). The ids
# still grow with the sessions, so a session's rows are appended, and a rowid table
# compares keys only. `events` is a view with schema 6's columns, for other readers of the
# file (its rows can be updated and deleted through it, not inserted).
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)
_REKEYED = ("steps", "plans", "elements", "iterations", "conversations")
# An event's id in `event_rows`: its session's key times 2**32 plus its number in the
# session (`seq`, from 1; a session has far fewer than 2**32 events).
_SEQ_BITS = 32
_SEQ_SPAN = 1 << _SEQ_BITS
_SCHEMA_5 = """
CREATE TABLE IF NOT EXISTS session_keys (
    sid     INTEGER PRIMARY KEY,      -- the session's rows in `event_rows`: larger for later ones
    run_id  TEXT NOT NULL,
    session INTEGER NOT NULL,
    UNIQUE (run_id, session)
)
"""
_SCHEMA_7 = """
CREATE TABLE IF NOT EXISTS event_rows (
    id      INTEGER PRIMARY KEY,      -- session_keys.sid * 2**32 + seq
    event   TEXT NOT NULL,
    step    TEXT,
    ts      TEXT,
    data    TEXT NOT NULL             -- the event as JSON (masked, as emitted), columns aside
);
CREATE VIEW IF NOT EXISTS events AS
    SELECT k.sid AS sid, k.run_id AS run_id, k.session AS session, e.id - (k.sid << 32) AS seq,
        e.event AS event, e.step AS step, e.ts AS ts, e.data AS data
    FROM session_keys k JOIN event_rows e
        ON e.id BETWEEN k.sid << 32 AND (k.sid << 32) + 4294967295
"""
# (apart: a trigger's body holds a `;`)
_EVENTS_VIEW_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS events_update INSTEAD OF UPDATE ON events BEGIN
    UPDATE event_rows SET event = NEW.event, step = NEW.step, ts = NEW.ts, data = NEW.data
        WHERE id = (OLD.sid << 32) + OLD.seq;
END""",
    """CREATE TRIGGER IF NOT EXISTS events_delete INSTEAD OF DELETE ON events BEGIN
    DELETE FROM event_rows WHERE id = (OLD.sid << 32) + OLD.seq;
END""",
)
# An older journal's events (schemas 1-6, the table renamed), moved to `event_rows`.
_UPGRADE_7 = """
INSERT OR IGNORE INTO session_keys (run_id, session)
    SELECT run_id, session FROM old_events UNION SELECT run_id, session FROM sessions;
INSERT INTO event_rows (id, event, step, ts, data)
    SELECT (k.sid << 32) + e.seq, e.event, e.step, e.ts, e.data
    FROM old_events e JOIN session_keys k ON k.run_id = e.run_id AND k.session = e.session
    ORDER BY k.sid, e.seq;
DROP TABLE old_events
"""


class JournalError(UserError):
    """The journal cannot be used: locked, corrupt, not ours, or from a newer plait."""


class UnknownRun(UserError):
    """No recorded run has that id."""


def busy_timeout_s() -> float:
    """The busy timeout, from `PLAIT_JOURNAL_BUSY_TIMEOUT` (seconds) or the default."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_BUSY_TIMEOUT_S
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT_S


def journal_path(
    option: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """Where the journal is: `--journal`, else `$PLAIT_HOME/journal.db`, else `.plait/`."""
    if option:
        return Path(option)
    env = os.environ if env is None else env
    home = env.get("PLAIT_HOME")
    if home:
        return Path(home) / JOURNAL_FILE
    return Path(DEFAULT_FOLDER) / JOURNAL_FILE


@dataclass(frozen=True)
class RunRecord:
    """One recorded run as `plait runs` lists it."""

    run_id: str
    plan: str
    plan_path: str | None
    plan_sha256: str | None
    started_at: str
    finished_at: str | None
    outcome: str | None
    duration_s: float | None
    sessions: int
    cancelled_by: str | None = None  # "signal" for a run stopped by Ctrl-C or SIGTERM

    def status(self, live: bool) -> str:
        """What `plait runs` shows: the outcome, `interrupted` for a run stopped by a signal,
        and for a run with no outcome `running` (its process is alive) or `unfinished`."""
        if self.outcome is None:
            return "running" if live else "unfinished"
        return "interrupted" if self.cancelled_by == "signal" else self.outcome

    @property
    def finished(self) -> bool:
        """Ended on its own: nothing is left to resume (cancelled runs are not finished)."""
        return self.outcome is not None and self.cancelled_by is None


@dataclass(frozen=True)
class AttemptRecord:
    session: int
    step: str
    element: int | None
    attempt: int
    status: str | None
    kind: str | None
    message: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _field(event: Any, name: str) -> Any:
    """A field of an event, whether it is a typed event or already a dict."""
    if _typed(event):
        return getattr(event, name, None)
    return event.get(name)


def _typed(event: Any) -> bool:
    """A typed event, not a dict (a plain class check: `isinstance` of an ABC such as
    `Mapping` costs several times more, and the writer asks for every row)."""
    return isinstance(event, Event)


def _start_fields(event: Any) -> dict[str, Any]:
    """What `JournalSink` records of `run_started`: its JSON object without the per-step
    map (the plan has it; for a big plan converting it would take a while)."""
    if not _typed(event):
        return dict(event)
    started: dict[str, Any] = dataclasses.replace(event, steps={}).to_json_dict()
    return started


class Journal:
    """An open journal file. Use `Journal.open(path)`; close it (or use `with`)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        # the connection is shared by the caller's thread and the writer thread
        self._lock = threading.RLock()
        self._writer: GroupCommitWriter | None = None
        # each session's key in `events` (`session_keys.sid`), by run id and session
        self._sids: dict[tuple[str, int], int] = {}
        # the session each run records its typed events in, with its key (`event_recorder`)
        self._recording: dict[str, tuple[int, int]] = {}
        # the block plain events are added to, until anything else is queued (`_EventBlock`)
        self._block: _EventBlock | None = None
        self._block_lock = threading.Lock()

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Journal:
        """Open (and with `create`, make) the journal; raises JournalError saying why not."""
        if path.is_dir():
            raise JournalError(f"journal {path} is a folder, not a file")
        if not path.exists():
            if not create:
                raise JournalError(f"no journal at {path} (no run recorded there yet)")
            _make_file(path)
        timeout = busy_timeout_s()
        with _guard(path):
            # autocommit mode: every statement or explicit BEGIN..COMMIT is its own transaction
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        journal = cls(path, conn)
        try:
            with _guard(path):
                journal._prepare()
        except BaseException:
            conn.close()
            raise
        return journal

    def _prepare(self) -> None:
        # Read before any write: a file that is not ours, or is newer, must stay untouched.
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} was written by a newer plait (schema {version}, this "
                f"plait reads up to {SCHEMA_VERSION}); upgrade plait or pass --journal PATH"
            )
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and tables:
            raise JournalError(
                f"{self.path} is an SQLite file but not a plait journal; "
                "pass --journal PATH to use another file"
            )
        if version > 0 and "runs" not in tables:
            raise JournalError(f"journal {self.path} is damaged (its tables are missing)")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # every commit synced: a batch of the writer thread, or a run's start or end
        self._conn.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            self._create_schema()

    def _create_schema(self) -> None:
        """Create the tables (a new file), or bring an older journal's up to this schema in
        one transaction: add the tables of later schemas; from schema 6 and before, move
        the events to `event_rows` (schema 7); from schema 5 and before, rebuild the other
        WITHOUT ROWID tables as rowid tables (schema 6). Each a rewrite, once."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have done it while we waited for the lock.
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            kind = self._conn.execute(
                "SELECT type FROM sqlite_master WHERE name = 'events'"
            ).fetchone()
            moving = kind is not None and kind[0] == "table"  # schemas 1-6
            if moving:
                self._conn.execute("ALTER TABLE events RENAME TO old_events")
            statements = ";".join(
                ([_SCHEMA] if version == 0 else [])
                + [_SCHEMA_2, _SCHEMA_3, _SCHEMA_4, _SCHEMA_5, _SCHEMA_7]
                + ([_UPGRADE_7] if moving else [])
            )
            if version < SCHEMA_VERSION:
                for statement in [*statements.split(";"), *_EVENTS_VIEW_TRIGGERS]:
                    if statement.strip():
                        self._conn.execute(statement)
                for table in _REKEYED:
                    _rekey(self._conn, table)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close the file."""
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._writer = None
            self._conn.close()

    def flush(self) -> None:
        """Wait until every queued record is committed (raises the writer's failure)."""
        if self._writer is not None:
            self._writer.flush()

    def _submit(self, sql: str, make: Any, item: Any) -> None:
        self._submit_item((sql, make, item))

    def _submit_item(self, item: Any) -> None:
        """Queue a record, or an item standing for its rows (`_start_writer`)."""
        writer = self._writer
        if writer is None:
            writer = self._start_writer()
        writer.submit(item)

    def _start_writer(self) -> GroupCommitWriter:
        # (apart from `_submit`: its lambda would make a cell at every call)
        event_row = ((_INSERT_EVENT, self._typed_event_row),)
        rows_of: dict[type, Rows] = {cls: event_row for cls in EVENT_TYPES.values()}
        rows_of[_Finished] = ((_INSERT_EVENT, _finished_event_row), (_PUT_STEP, _finished_step_row))
        rows_of[_EventBlock] = ((_INSERT_EVENT, _EventBlock.rows),)
        writer = self._writer = GroupCommitWriter(
            self._conn,
            self._lock,
            lambda: _guard(self.path),
            rows_of,
            self._close_block,
            keyed={_INSERT_EVENT: (_EventBlock,)},
        )
        return writer

    def _typed_event_row(self, event: Event) -> tuple[Any, ...]:
        """The events row of a typed event queued as it is (`event_recorder`), in the session
        its run is recording."""
        return _session_event_row(self._recording[event.run_id][0], event)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, after everything queued (synced on commit: `durable` is
        kept for callers; every commit is)."""
        self.flush()
        with self._lock, _guard(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def begin_run(
        self,
        *,
        run_id: str,
        plan: str,
        plan_path: str | None,
        plan_sha256: str | None,
        compiled_plan: Mapping[str, Any] | bytes,
        inputs: Mapping[str, Any],
        raw_inputs: Mapping[str, Any],
        started_at: str,
        plait_version: str | None = None,
    ) -> int:
        """Record a new run (session 1); returns the session number. `compiled_plan`: the
        plan as JSON, or already packed by `pack_plan` (a big plan's JSON takes a while)."""
        with self._write(durable=True) as db:
            db.execute(
                "INSERT INTO runs (run_id, plan, plan_path, plan_sha256, compiled_plan, inputs,"
                " raw_inputs, plait_version, started_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    plan,
                    plan_path,
                    plan_sha256,
                    "",
                    _dumps(inputs),
                    _dumps(raw_inputs),
                    plait_version,
                    started_at,
                ),
            )
            _put_plan(db, run_id, compiled_plan)
            db.execute(
                "INSERT INTO sessions (run_id, session, started_at) VALUES (?,1,?)",
                (run_id, started_at),
            )
            sid = _session_key(db, run_id, 1)
        self._sids[run_id, 1] = sid
        return 1

    def begin_session(
        self,
        run_id: str,
        started_at: str,
        *,
        forced: bool = False,
        compiled_plan: Mapping[str, Any] | bytes | None = None,
        plan_sha256: str | None = None,
    ) -> int:
        """Record a resume of `run_id`: a new session; returns its number.

        With `compiled_plan` (a forced resume of a changed plan) the stored plan is replaced,
        so later resumes continue from what actually ran.
        """
        with self._write(durable=True) as db:
            row = db.execute("SELECT sessions FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRun(f"unknown run {run_id!r}")
            session = int(row[0]) + 1
            db.execute(
                "INSERT INTO sessions (run_id, session, started_at, forced) VALUES (?,?,?,?)",
                (run_id, session, started_at, int(forced)),
            )
            db.execute(
                "UPDATE runs SET sessions = ?, outcome = NULL, finished_at = NULL,"
                " duration_s = NULL WHERE run_id = ?",
                (session, run_id),
            )
            if compiled_plan is not None:
                db.execute(
                    "UPDATE runs SET compiled_plan = '', plan_sha256 = ? WHERE run_id = ?",
                    (plan_sha256, run_id),
                )
                _put_plan(db, run_id, compiled_plan)
            sid = _session_key(db, run_id, session)
        self._sids[run_id, session] = sid
        return session

    def _sid(self, run_id: str, session: int) -> int:
        """The session's key in `events`, made (and committed) if it has none yet: a run
        begun here has one already (`begin_run`, `begin_session`)."""
        sid = self._sids.get((run_id, session))
        if sid is None:
            with self._write() as db:
                sid = _session_key(db, run_id, session)
            self._sids[run_id, session] = sid
        return sid

    def record_event(
        self, run_id: str, session: int, event: Any, step_output: Any = _NO_RECORD
    ) -> None:
        """Queue one event (typed or a dict) for the writer thread; with `step_output` (on
        `step_finished`: the step's REAL output) the step's record too, committed in the
        same batch. Returns at once (`flush()` waits for the disk); the writer serialises
        the values shortly after, so they must not change meanwhile."""
        sid = self._sid(run_id, session)
        if step_output is _NO_RECORD:
            self._submit(_INSERT_EVENT, _event_row, (sid, event))
            return
        self._submit_item(_Finished(run_id, session, sid, event, step_output))  # (two rows)

    def event_recorder(self, run_id: str, session: int) -> Callable[[Any], None]:
        """`record_event(run_id, session, event)` for one session: a typed event of the run
        is queued as it is, without a record made for it (three events per step)."""
        recording = (self._sid(run_id, session), session)
        if self._recording.get(run_id, recording) != recording:
            self.flush()  # (what an earlier session queued is written as that session's)
        self._recording[run_id] = recording
        submit, typed = self._submit_item, frozenset(EVENT_TYPES.values())
        lock, sid = self._block_lock, recording[0]

        def record(event: Any) -> None:
            kind = _PLAIN_KINDS.get(type(event))
            if (
                kind is None
                or event.run_id != run_id
                or (kind == _ATTEMPT_FINISHED and not plain_attempt(event))
            ):
                if type(event) in typed and event.run_id == run_id:
                    submit(event)  # (as itself)
                else:
                    self.record_event(run_id, session, event)
                return
            with lock:
                block = self._block
                if block is None or block.sealed or len(block.kinds) >= _BLOCK_ROWS:
                    if block is not None:
                        block.sealed = True  # (full: nothing more is added to it)
                    block = self._block = _EventBlock(sid)
                    submit(block)
                block.add(event, kind)

        return record

    def _close_block(self) -> None:
        """The writer took what was queued: the block plain events were being added to is
        among it, so later ones go to a new block, queued after (see `_EventBlock`)."""
        with self._block_lock:
            if self._block is not None:
                self._block.sealed = True
                self._block = None

    def record_element(
        self, run_id: str, session: int, step: str, element: int, result: Mapping[str, Any]
    ) -> None:
        """Queue a finished map element's result (with its real output): a checkpoint."""
        self._submit(_PUT_ELEMENT, _element_row, (run_id, session, step, element, result))

    def finished_elements(self, run_id: str) -> dict[str, dict[int, dict[str, Any]]]:
        """Map elements recorded as finished, by step and index (real outputs)."""
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for row in self._query(
            "SELECT step, element, result FROM elements WHERE run_id = ?", (run_id,)
        ):
            out.setdefault(str(row[0]), {})[int(row[1])] = self._loads(row[2])
        return out

    def record_iteration(self, run_id: str, session: int, event: Any, output: Any) -> None:
        """Queue a loop body step's result in one iteration (its `step_finished`, with its
        real output), so a resume can continue the loop where it stopped."""
        self._submit(_PUT_ITERATION, _iteration_row, (run_id, session, event, output))

    def finished_iterations(self, run_id: str) -> dict[str, dict[int, dict[str, Any]]]:
        """Loop body steps' results, by step and iteration (real outputs; SPEC section 11)."""
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for row in self._query(
            "SELECT step, iteration, result FROM iterations WHERE run_id = ?", (run_id,)
        ):
            out.setdefault(str(row[0]), {})[int(row[1])] = self._loads(row[2])
        return out

    def record_conversation(
        self, run_id: str, session: int, key: ConversationKey, entry: Mapping[str, Any] | None
    ) -> None:
        """Queue one entry of a model conversation (a reply: `turn` and `reply`; a tool
        call's result: `turn`, `call_id` and `result`), or with `entry` None forget what an
        earlier session recorded under the same attempt (a conversation starting afresh:
        written at once, after everything queued, since the writer groups a batch's rows
        by statement and a queued DELETE could pass a later INSERT)."""
        if entry is None:
            with self._write() as db:
                db.execute(_FORGET_CONVERSATION, _conversation_key_row((run_id, key)))
        else:
            self._submit(_PUT_CONVERSATION, _conversation_row, (run_id, session, key, entry))

    def conversations(self, run_id: str) -> dict[ConversationKey, tuple[int, list[dict[str, Any]]]]:
        """Every recorded conversation attempt: the latest session that wrote to it, and
        its entries in the order of their turns (replies before tool results)."""
        out: dict[ConversationKey, tuple[int, list[dict[str, Any]]]] = {}
        rows = self._query(
            "SELECT step, iteration, element, attempt, session, entry FROM conversations"
            " WHERE run_id = ? ORDER BY step, iteration, element, attempt, turn, call_id",
            (run_id,),
        )
        for row in rows:
            key = (str(row[0]), _none(row[1]), _none(row[2]), int(row[3]))
            session, entries = out.get(key, (0, []))
            entries.append(self._loads(row[5]))
            out[key] = (max(session, int(row[4])), entries)
        return out

    def record_step(self, run_id: str, session: int, step: str, result: Mapping[str, Any]) -> None:
        """Store a finished step's result (with its real output), replacing an earlier one."""
        with self._write(durable=True) as db:
            _put_step(db, run_id, session, step, result)

    def finish_run(
        self,
        run_id: str,
        session: int,
        *,
        outcome: str,
        finished_at: str | None,
        duration_s: float | None,
        report: Mapping[str, Any] | None,
    ) -> None:
        """Record the run's end: outcome, time and (masked) report."""
        with self._write(durable=True) as db:
            db.execute(
                "UPDATE sessions SET finished_at = ?, outcome = ? WHERE run_id = ? AND session = ?",
                (finished_at, outcome, run_id, session),
            )
            first = db.execute("SELECT started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            total = _span_s(first[0], finished_at) if first else None
            db.execute(
                "UPDATE runs SET outcome = ?, finished_at = ?, duration_s = ?, report = ?"
                " WHERE run_id = ?",
                (
                    outcome,
                    finished_at,
                    total if total is not None else duration_s,
                    _dumps(report) if report is not None else None,
                    run_id,
                ),
            )

    def store_report(self, run_id: str, report: Mapping[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE runs SET report = ? WHERE run_id = ?", (_dumps(report), run_id))

    def prune(self, *, older_than: datetime | None = None, keep: int | None = None) -> list[str]:
        """Delete whole runs: those started before `older_than` and not among the `keep`
        most recent (either alone selects by itself). A run another process is running
        now is never deleted. Returns the deleted run ids."""
        runs = self.list_runs()
        chosen = []
        for position, run in enumerate(runs):
            if keep is not None and position < keep:
                continue
            if older_than is not None and not _started_before(run.started_at, older_than):
                continue
            if not RunLock(self.path, run.run_id).held_elsewhere():
                chosen.append(run.run_id)
        tables = [
            t
            for t in (
                "session_keys",
                "steps",
                "elements",
                "iterations",
                "conversations",
                "sessions",
                "plans",
                "runs",
            )
            if self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,))
        ]
        with self._write(durable=True) as db:
            for run_id in chosen:
                sids = db.execute("SELECT sid FROM session_keys WHERE run_id = ?", (run_id,))
                for (sid,) in sids.fetchall():
                    db.execute(
                        "DELETE FROM event_rows WHERE id BETWEEN ? AND ?",
                        (sid << _SEQ_BITS, ((sid + 1) << _SEQ_BITS) - 1),
                    )
                for table in tables:  # `runs` last: the others refer to it
                    db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        for key in [k for k in self._sids if k[0] in chosen]:
            del self._sids[key]
        for run_id in chosen:
            RunLock(self.path, run_id).path.unlink(missing_ok=True)
        return chosen

    # --- reading ------------------------------------------------------------------------

    def _loads(self, text: Any) -> Any:
        """A JSON column's value; a row that is not JSON (or not an object) means the file
        was damaged: a one-line JournalError, never a traceback."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:
            raise JournalError(
                f"journal {self.path} is damaged: a record is not JSON "
                f"({type(exc).__name__}); move it aside or pass "
                "--journal PATH"
            ) from None
        if not isinstance(value, dict):
            raise JournalError(
                f"journal {self.path} is damaged: a record is not a JSON "
                "object; move it aside or pass --journal PATH"
            )
        return value

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        self.flush()  # a journal reads its own writes
        with self._lock, _guard(self.path):
            cur = self._conn.execute(sql, args)
            cur.row_factory = sqlite3.Row
            return list(cur.fetchall())

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, most recent first."""
        sql = (
            "SELECT run_id, plan, plan_path, plan_sha256, started_at, finished_at, outcome,"
            " duration_s, sessions, (SELECT json_extract(e.data, '$.cancelled_by')"
            f" FROM session_keys k JOIN event_rows e ON {_SESSION_ROWS}"
            " WHERE k.run_id = runs.run_id AND e.event = 'run_finished'"
            " ORDER BY k.session DESC, e.id DESC LIMIT 1) AS cancelled_by"
            " FROM runs ORDER BY started_at DESC, rowid DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [RunRecord(**dict(r)) for r in self._query(sql)]

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of a run given by its id or an unambiguous prefix; UnknownRun if none."""
        rows = self._query("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        if rows:
            return str(rows[0][0])
        like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\'", (like,))
        if len(rows) == 1 and run_id:
            return str(rows[0][0])
        if len(rows) > 1 and run_id:
            raise UnknownRun(
                f"run id {run_id!r} is ambiguous: it starts "
                f"{len(rows)} recorded runs; give more characters"
            )
        raise UnknownRun(
            f"unknown run {run_id!r} in journal {self.path} (`plait runs` lists the recorded runs)"
        )

    def run(self, run_id: str) -> RunRecord:
        rid = self.resolve_run_id(run_id)
        return next(r for r in self.list_runs() if r.run_id == rid)

    def _run_field(self, run_id: str, column: str) -> Any:
        rows = self._query(f"SELECT {column} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"unknown run {run_id!r}")
        return rows[0][0]

    def compiled_plan(self, run_id: str) -> dict[str, Any]:
        text = self._run_field(run_id, "compiled_plan")  # schema 1 kept it in the row
        if not text:
            rows = self._query("SELECT compiled_plan FROM plans WHERE run_id = ?", (run_id,))
            text = zlib.decompress(rows[0][0]) if rows else b"{}"
        return dict(self._loads(text))

    def inputs(self, run_id: str, *, raw: bool = False) -> dict[str, Any]:
        """The run's inputs: masked for display, or `raw` (with secrets) for a resume."""
        return dict(self._loads(self._run_field(run_id, "raw_inputs" if raw else "inputs")))

    def report(self, run_id: str) -> dict[str, Any] | None:
        """The stored report of the run after its last session (masked); None when no session
        ended normally (a crash): fold the events with `run_report` instead."""
        text = self._run_field(run_id, "report")
        return dict(self._loads(text)) if text else None

    def events(self, run_id: str, session: int | None = None) -> list[dict[str, Any]]:
        """Every event of the run (or of one session), in order; each gets its `session`."""
        sql = (
            "SELECT k.session, e.data, e.event, e.id - (k.sid << 32), e.ts, e.step"
            f" FROM session_keys k JOIN event_rows e ON {_SESSION_ROWS} WHERE k.run_id = ?"
        )
        args: tuple[Any, ...] = (run_id,)
        if session is not None:
            sql += " AND k.session = ?"
            args += (session,)
        out = []
        for row in self._query(sql + " ORDER BY k.session, e.id", args):
            # the columns first (an event's JSON leaves them out; older rows repeat them)
            event = {"event": row[2], "seq": row[3], "ts": row[4], "run_id": run_id}
            if row[5] is not None:
                event["step"] = row[5]
            event.update(self._loads(row[1]))
            full = _full_event(event)
            full["session"] = row[0]
            out.append(full)
        return out

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of the run, read from its events, in the order they started."""
        return attempts_of(self.events(run_id))

    def finished_steps(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every step recorded as finished for good, with its real (unmasked) result.

        `cancelled` steps are left out: a resume runs them again.
        """
        rows = self._query(
            "SELECT step, status, result, finished_at FROM steps WHERE run_id = ?", (run_id,)
        )
        return {
            str(r[0]): {**self._loads(r[2]), "ts": r[3]}
            for r in rows
            if r[1] in FINISHED_STATUSES and r[2]
        }


def pack_plan(compiled_plan: Mapping[str, Any] | bytes | Iterable[bytes]) -> bytes:
    """The plans table's form of a compiled plan: zlib-compressed JSON. Give the JSON as
    bytes, or as pieces of bytes, when you have it (`resume.plan_json`): for a big plan it
    is much faster to make, and in pieces it is never whole in memory."""
    if isinstance(compiled_plan, Mapping):
        return zlib.compress(_dumps(compiled_plan).encode(), 6)
    if isinstance(compiled_plan, bytes):
        return zlib.compress(compiled_plan, 6)
    packer = zlib.compressobj(6)
    packed = [packer.compress(piece) for piece in compiled_plan]
    packed.append(packer.flush())
    return b"".join(packed)


def _put_plan(
    db: sqlite3.Connection, run_id: str, compiled_plan: Mapping[str, Any] | bytes
) -> None:
    """Store a plan: its JSON object, or bytes that `pack_plan` made already."""
    packed = compiled_plan if isinstance(compiled_plan, bytes) else pack_plan(compiled_plan)
    db.execute(
        "INSERT OR REPLACE INTO plans (run_id, compiled_plan) VALUES (?, ?)", (run_id, packed)
    )


_INSERT_EVENT = "INSERT INTO event_rows (id, event, step, ts, data) VALUES (?,?,?,?,?)"
# `event_rows` of the session `k` (`session_keys`): a range of ids, read in the table's order
_SESSION_ROWS = "e.id BETWEEN k.sid << 32 AND (k.sid << 32) + 4294967295"
_PUT_STEP = (
    "INSERT OR REPLACE INTO steps (run_id, step, session, status, reason, attempts,"
    " finished_at, result) VALUES (?,?,?,?,?,?,?,?)"
)


_PUT_ELEMENT = (
    "INSERT OR REPLACE INTO elements (run_id, step, element, session, result) VALUES (?,?,?,?,?)"
)


_PUT_ITERATION = (
    "INSERT OR REPLACE INTO iterations (run_id, step, iteration, session, result)"
    " VALUES (?,?,?,?,?)"
)
_PUT_CONVERSATION = (
    "INSERT OR REPLACE INTO conversations (run_id, step, iteration, element, attempt, turn,"
    " call_id, session, entry) VALUES (?,?,?,?,?,?,?,?,?)"
)
_FORGET_CONVERSATION = (
    "DELETE FROM conversations WHERE run_id = ? AND step = ? AND iteration = ?"
    " AND element = ? AND attempt = ?"
)
# A conversation attempt: (step, iteration, element, attempt), None where there is none.
ConversationKey = tuple[str, int | None, int | None, int]


def _none(value: Any) -> int | None:
    """-1 in a key column means none."""
    return None if value is None or int(value) < 0 else int(value)


def _conversation_key_row(item: tuple[str, ConversationKey]) -> tuple[Any, ...]:
    run_id, (step, iteration, element, attempt) = item
    return (run_id, step, _minus(iteration), _minus(element), attempt)


def _minus(value: int | None) -> int:
    return -1 if value is None else value


def _conversation_row(
    item: tuple[str, int, ConversationKey, Mapping[str, Any]],
) -> tuple[Any, ...]:
    run_id, session, key, entry = item
    turn, call_id = int(entry["turn"]), str(entry.get("call_id") or "")
    return (*_conversation_key_row((run_id, key)), turn, call_id, session, _dumps(entry))


def _iteration_row(item: tuple[str, int, Any, Any]) -> tuple[Any, ...]:
    """An iterations row: a body step's `step_finished` in one iteration, real output."""
    run_id, session, event, _ = item
    row = _step_row(item)
    return (run_id, row[1], _field(event, "iteration"), session, row[7])


def _element_row(item: tuple[str, int, str, int, Mapping[str, Any]]) -> tuple[Any, ...]:
    run_id, session, step, element, result = item
    return (run_id, step, element, session, _dumps(result))


def _event_row(item: tuple[int, Any]) -> tuple[Any, ...]:
    """An `event_rows` row (made on the writer thread) of (session key, event): the JSON
    leaves out the column fields and every field at its default (`journal.events` gives
    them back)."""
    return _session_event_row(*item)


def _session_event_row(sid: int, event: Any) -> tuple[Any, ...]:
    """`_event_row` of one session's event (see `Journal.event_recorder`): its id is the
    session's key and its number (`_SEQ_BITS`)."""
    if isinstance(event, Event):  # (`_typed`, inline: the writer asks for every row)
        return (
            (sid << _SEQ_BITS) + event.seq,
            event.event,
            getattr(event, "step", None),
            event.ts,
            _stored_text(event),
        )
    data = dict(event)
    name, seq, ts = data.pop("event"), data.pop("seq"), data.pop("ts")
    data.pop("run_id", None)
    step = data.get("step")
    if step is not None:
        del data["step"]  # (a null `step` stays: the column cannot tell it from none)
    return ((sid << _SEQ_BITS) + seq, name, step, ts, _dumps(data))


def _step_row(item: tuple[str, int, Any, Any]) -> tuple[Any, ...]:
    """A steps row: the `step_finished` event's outcome with the real output (fields at
    their defaults left out: a resume reads them with `.get`)."""
    run_id, session, event, output = item
    if _typed(event):
        outcome = event.outcome
        if output is not outcome.output:  # (masked in the event)
            outcome = dataclasses.replace(outcome, output=output)
        return (
            run_id,
            event.source if event.event == "probe_finished" else event.step,
            session,
            str(outcome.status),
            None if outcome.reason is None else str(outcome.reason),
            outcome.attempts,
            event.ts,
            _with_execution(outcome_json(outcome).decode(), getattr(event, "execution", None)),
        )
    result = dict(event)
    if isinstance(result.get("outcome"), Mapping):  # (`execution_finished`, `probe_finished`)
        if result.get("event") == "probe_finished":
            result["step"] = result.get("source")
        result = {**result.pop("outcome"), **result}
    result["output"] = output
    # what a resume reads with `.get`: empty fields and those with columns left out
    kept = {
        k: v
        for k, v in result.items()
        if k not in _STEP_RECORD_DROPS and v is not None and v is not False
    }
    kept["output"] = output  # (null included: it is the step's value)
    return (
        run_id,
        result.get("step"),
        session,
        result.get("status"),
        result.get("reason"),
        result.get("attempts"),
        result.get("ts"),
        _dumps(kept),
    )


# Plain events per block at most (a busy loop turn queues a few hundred steps' events)
_BLOCK_ROWS = 4096
# `_EventBlock.kinds`: what each row is
_STEP_STARTED, _ATTEMPT_STARTED, _ATTEMPT_FINISHED = 0, 1, 2
_KIND_NAMES = ("step_started", "attempt_started", "attempt_finished")
# the event classes queued in blocks (an `attempt_finished` only when `plain_attempt`)
_PLAIN_KINDS = {
    StepStarted: _STEP_STARTED,
    AttemptStarted: _ATTEMPT_STARTED,
    AttemptFinished: _ATTEMPT_FINISHED,
}


class _EventBlock:
    """A session's plain events queued one after another, as columns: `step_started` and
    `attempt_started` with their stored text (remembered, shared), and plainly succeeded
    `attempt_finished` events as their three numbers. The scheduler makes three such
    events per step, and a busy run's writer gets to them only after the run: queued as
    objects, they kept ~0.5 KB a step alive until then (the run's peak memory); as columns
    they keep ~60 bytes each, in a few large buffers freed at once.

    A block is queued when its first event is added, and the scheduler's thread adds the
    next ones to it until the writer takes what is queued (`Journal._close_block` seals it
    then, under `Journal._block_lock`); later events go to a new block, queued after
    everything taken. So each batch still holds a prefix of the run's history: an event
    added to a block after something else was queued is in that same batch, or in a
    later one with everything after it. (Within a batch, one transaction, order does not
    matter: a block's rows are events rows, each with its own key.)"""

    __slots__ = (
        "attempts",
        "durations",
        "kinds",
        "queued",
        "sealed",
        "seqs",
        "sid",
        "stamps",
        "steps",
        "texts",
    )

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.sealed = False
        self.kinds = bytearray()
        self.seqs = array("q")
        self.steps: list[str] = []
        self.stamps: list[str] = []
        self.texts: list[str | None] = []
        # the attempt, duration and queueing time (NaN: none) of each `attempt_finished`
        self.attempts = array("q")
        self.durations = array("d")
        self.queued = array("d")

    def add(self, event: Any, kind: int) -> None:
        self.kinds.append(kind)
        self.seqs.append(event.seq)
        self.steps.append(event.step)
        self.stamps.append(event.ts)
        if kind == _ATTEMPT_FINISHED:  # a plainly succeeded attempt: its numbers
            self.texts.append(None)
            self.attempts.append(event.attempt)
            self.durations.append(event.duration_s)
            queued = event.queued_s
            self.queued.append(_NAN if queued is None else queued)
        else:  # (remembered by its values: `_MEMOS`)
            self.texts.append(_stored_text(event))

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Its events rows, as `_session_event_row` makes them from the events, in order,
        made as they are sent (one at a time: between two statements the writer hands the
        GIL back to the event loop, so making a whole block's rows at once would hold the
        loop up; `journal_writer._in_key_order` merges them with the other events)."""
        assert self.sealed  # (by `Journal._close_block`: nothing is added to it any more)
        base = self.sid << _SEQ_BITS
        seqs, steps, stamps, texts = self.seqs, self.steps, self.stamps, self.texts
        attempts, durations, queued = self.attempts, self.durations, self.queued
        finished = 0
        for i, kind in enumerate(self.kinds):
            text = texts[i]
            if text is None:
                waited: float | None = queued[finished]
                text = plain_attempt_text(
                    attempts[finished],
                    durations[finished],
                    None if waited != waited else waited,  # (NaN: none)
                )
                finished += 1
            yield (base + seqs[i], _KIND_NAMES[kind], steps[i], stamps[i], text)


_NAN = float("nan")


class _Finished:
    """A finished step's event and record, queued as two rows made from one JSON text
    when they can share it (when `_finished_event_row` runs first, as it does unless a
    batch begins between the two: then each makes its own)."""

    __slots__ = ("event", "output", "run_id", "session", "sid", "text")

    def __init__(self, run_id: str, session: int, sid: int, event: Any, output: Any) -> None:
        self.run_id, self.session, self.sid = run_id, session, sid
        self.event, self.output = event, output
        self.text: str | None = None


def _finished_event_row(finished: _Finished) -> tuple[Any, ...]:
    row = _session_event_row(finished.sid, finished.event)
    event = finished.event
    # a step_finished stored as its bare outcome (`stored_json`), real output unmasked
    if (
        type(event) is StepFinished
        and not event.resumed
        and event.iteration is None
        and finished.output is event.outcome.output
    ):
        finished.text = row[4]
    return row


def _finished_step_row(finished: _Finished) -> tuple[Any, ...]:
    """The step's row: `_step_row`'s, with the event's JSON when that is the same text."""
    text, event = finished.text, finished.event
    if text is None:
        return _step_row((finished.run_id, finished.session, event, finished.output))
    outcome = event.outcome
    reason = None if outcome.reason is None else str(outcome.reason)
    return (
        finished.run_id,
        event.step,
        finished.session,
        str(outcome.status),
        reason,
        outcome.attempts,
        event.ts,
        text,
    )


# Events whose stored fields nearly always repeat (`{}`, `{"attempt":1}`): their JSON text
# is remembered by their values, so most are stored without pydantic. At most
# `_MEMO_SIZE` texts per class (a map's element numbers, say, do not repeat).
_MEMO_SIZE = 256
_MEMOS: dict[type[Event], tuple[Callable[[Event], Any], dict[Any, str]]] = {
    cls: (
        operator.attrgetter(*(f.name for f in dataclasses.fields(cls) if f.name not in _COLUMNS)),
        {},
    )
    for cls in (StepStarted, AttemptStarted)
}


def _stored_text(event: Event) -> str:
    """`stored_json` of a typed event, as text."""
    memo = _MEMOS.get(type(event))
    if memo is None:
        return stored_text(event)
    values_of, texts = memo
    values = values_of(event)
    text = texts.get(values)
    if text is None:
        text = stored_json(event).decode()
        if len(texts) < _MEMO_SIZE:
            texts[values] = text
    return text


def _with_execution(record: str, execution: int | None) -> str:
    """A step's record from its Nth execution says N (a resume continues the count)."""
    if not execution or execution < 2:
        return record
    data = json.loads(record)
    data["execution"] = execution
    return _dumps(data)


def _full_event(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored event's JSON object as `--events` writes it (the fields at their defaults,
    which the journal leaves out, back in); one this plait cannot read stays as stored."""
    try:
        return event_from_dict(stored).to_json_dict()
    except (ValueError, TypeError, KeyError):
        return stored


def attempts_of(events: list[dict[str, Any]]) -> list[AttemptRecord]:
    """The attempts a run's events describe (`attempt_started` opens one, `attempt_failed`
    and `attempt_finished` fill it in), in the order they started."""
    records: list[dict[str, Any]] = []
    open_: dict[tuple[Any, ...], dict[str, Any]] = {}
    for e in events:
        name = e.get("event")
        key = (e.get("session", 1), e.get("step"), e.get("element"), e.get("attempt"))
        if name == "attempt_started":
            opened = {
                "session": key[0],
                "step": key[1],
                "element": key[2],
                "attempt": key[3],
                "status": None,
                "kind": None,
                "message": None,
                "started_at": e.get("ts"),
                "finished_at": None,
                "duration_s": None,
            }
            records.append(opened)
            open_[key] = opened
            continue
        record = open_.get(key)
        if record is None:
            continue
        if name == "attempt_failed":
            record.update(kind=e.get("kind"), message=e.get("message"))
        elif name == "attempt_finished":
            record.update(
                status=e.get("status"),
                finished_at=e.get("ts"),
                duration_s=e.get("duration_s"),
                kind=e.get("kind") or record["kind"],
                message=e.get("message") or record["message"],
            )
    return [AttemptRecord(**r) for r in records]


def _put_step(
    db: sqlite3.Connection, run_id: str, session: int, step: str, result: Mapping[str, Any]
) -> None:
    event = {**result, "step": step}
    db.execute(_PUT_STEP, _step_row((run_id, session, event, result.get("output"))))


def _session_key(db: sqlite3.Connection, run_id: str, session: int) -> int:
    """The session's key in `events` (in a write transaction), made the first time: one
    larger than every key in the journal, so its rows go after every other session's."""
    db.execute(
        "INSERT OR IGNORE INTO session_keys (run_id, session) VALUES (?, ?)", (run_id, session)
    )
    row = db.execute(
        "SELECT sid FROM session_keys WHERE run_id = ? AND session = ?", (run_id, session)
    ).fetchone()
    return int(row[0])


def _rekey(conn: sqlite3.Connection, table: str) -> None:
    """Rebuild `table` as a rowid table with the same columns, key and rows if it is a
    WITHOUT ROWID table (a journal of schema 5 or before; see `_SCHEMA_5`)."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if row is None or not _WITHOUT_ROWID.search(row[0]):
        return
    columns = ", ".join(f'"{c[1]}"' for c in conn.execute(f'PRAGMA table_info("{table}")'))
    conn.execute(f'ALTER TABLE "{table}" RENAME TO "old_{table}"')
    conn.execute(_WITHOUT_ROWID.sub(")", row[0]))
    conn.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "old_{table}"')
    conn.execute(f'DROP TABLE "old_{table}"')


def _started_before(started_at: str, cutoff: datetime) -> bool:
    try:
        started = datetime.fromisoformat(started_at)
    except ValueError:
        return False  # an unreadable time: keep the run
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return started < cutoff


def _span_s(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return round(
            (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 6
        )
    except ValueError:
        return None


def _make_file(path: Path) -> None:
    """Create the journal file (and its folder) readable by the owner only: it holds secrets."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise JournalError(f"cannot create journal {path}: {exc.strerror or exc}") from None


@contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Turn SQLite failures into one-line JournalErrors that say what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise JournalError(
                f"journal {path} is locked by another process (waited {busy_timeout_s():g}s);"
                f" try again, or pass --journal PATH"
            ) from None
        if "unable to open" in text or "readonly" in text:
            raise JournalError(f"cannot open journal {path}: {text}") from None
        raise JournalError(
            f"journal {path} is damaged: {text}; move it aside or pass --journal PATH"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"journal {path} is damaged: corrupt or not an SQLite file ({exc}); move it aside "
            "or pass --journal PATH (plait will not overwrite it)"
        ) from None


# Events whose `outcome` replaces a finished step's result (SPEC section 10).
# The events of every attempt that the sink only records, without looking at them first
# (any other event goes through `_record`, which decides).
_ONLY_RECORDED = frozenset({"step_started", "attempt_started", "attempt_finished"})
_REPLACING = frozenset({"execution_finished", "probe_finished"})


class JournalSink:
    """An event-bus sink that records a run in the journal as its events arrive.

    Give it what the events do not carry: the compiled plan (JSON, as an object, as bytes
    or as pieces of bytes: `resume.plan_json`), the plan file's path
    and the raw inputs. For a resume pass `resume=True`: the run's row exists and a new
    session starts. `record_output` receives a finished step's *unmasked* output from the
    scheduler just before its `step_finished` (events carry masked values only).
    """

    def __init__(
        self,
        journal: Journal,
        *,
        compiled_plan: Mapping[str, Any] | bytes | Iterable[bytes],
        plan_path: str | None,
        raw_inputs: Mapping[str, Any],
        plan_file_sha256: str | None = None,
        resume: bool = False,
        forced: bool = False,
        replace_plan: bool = False,
    ) -> None:
        self.journal = journal
        # packed now, before the run: a 10,000-step plan is ~7 MB of JSON, and the run's
        # clock starts before `run_started` is recorded (the JSON itself is not kept)
        self.packed_plan = pack_plan(compiled_plan) if replace_plan or not resume else None
        self.plan_path = plan_path
        # The hash a resume compares the plan file with: of the file given to `run` (which
        # may be compiled JSON), falling back to the report's `plan_sha256`.
        self.plan_file_sha256 = plan_file_sha256
        self.raw_inputs = raw_inputs
        self.resume = resume
        self.forced = forced
        self.replace_plan = replace_plan
        self.run_id: str | None = None
        self.session = 0
        # `journal.record_event` bound to this run's session, once it has begun
        self._record_event: Callable[[Any], None] | None = None
        self._raw_outputs: dict[str, Any] = {}
        # Why the journal stopped recording this run (it is an observer: the run goes on)
        self.failure: str | None = None
        self.on_failure: Callable[[str], None] | None = None

    def record_output(self, step: str, output: Any) -> None:
        """Keep a step's real output until its `step_finished` is recorded."""
        self._raw_outputs[step] = output

    def record_element(self, step: str, element: int, result: Mapping[str, Any]) -> None:
        """A map element finished: checkpoint it (real output), so a resume keeps it."""
        if self.failure is not None or self.run_id is None:
            return
        try:
            self.journal.record_element(self.run_id, self.session, step, element, result)
        except Exception as exc:  # (an observer: whatever failed, the run goes on)
            self.fail(exc)

    async def record_conversation(
        self, key: ConversationKey, entry: Mapping[str, Any] | None
    ) -> None:
        """A model reply or tool-call result arrived (SPEC section 11): on disk before the
        conversation goes on, so a killed run's resume repeats no finished tool call. With
        `entry` None, a conversation attempt starts afresh: forget an earlier session's."""
        if self.failure is not None or self.run_id is None or (entry is None and not self.resume):
            return
        try:
            if entry is None:  # (a write of its own, off the event loop)
                await asyncio.to_thread(
                    self.journal.record_conversation, self.run_id, self.session, key, None
                )
                return
            self.journal.record_conversation(self.run_id, self.session, key, entry)
            await asyncio.to_thread(self.journal.flush)
        except Exception as exc:  # (an observer: whatever failed, the run goes on)
            self.fail(exc)

    def __call__(self, event: Any) -> None:
        if self.failure is not None:
            return
        if self.run_id is None and _field(event, "event") == "run_started":
            self._start(_start_fields(event))  # a journal unusable from the start: exit 2
        try:
            self._record(event)
        except Exception as exc:  # (an observer: whatever failed, the run goes on)
            self.fail(exc)

    def handler_for(self, cls: type[Any]) -> Callable[[Any], None] | None:
        """The bus calls these directly (`events.RoutedSink`): the three events of every
        attempt are queued as they are, without looking at their name or fields first."""
        if cls.event in _ONLY_RECORDED:
            return self._queue_event
        if cls.event == "step_finished":
            return self._step_finished
        return self

    def _queue_event(self, event: Any) -> None:
        """An event that is only recorded (`_ONLY_RECORDED`)."""
        if self.failure is not None or self._record_event is None:
            return
        try:
            self._record_event(event)
        except Exception as exc:  # (an observer: whatever failed, the run goes on)
            self.fail(exc)

    def _step_finished(self, event: Any) -> None:
        """A typed `step_finished`: recorded with the step's row (its real output), unless
        the step was kept by a resume (its row is there already). What `_record` does for
        it, without looking up fields by name."""
        if self.failure is not None or self.run_id is None:
            return
        raw = self._raw_outputs.pop(event.step, _NO_RECORD)
        try:
            if event.resumed:
                self.journal.record_event(self.run_id, self.session, event)
            else:
                output = event.output if raw is _NO_RECORD else raw
                self.journal.record_event(self.run_id, self.session, event, output)
                if event.iteration is not None:  # a loop's body step (SPEC section 11)
                    self.journal.record_iteration(self.run_id, self.session, event, output)
        except Exception as exc:  # (an observer: whatever failed, the run goes on)
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Stop recording: the run goes on and says so (a warning on stderr and in the
        report); what was recorded so far stays, but the run cannot be resumed from it."""
        if self.failure is not None:
            return
        text = (
            str(exc)
            if isinstance(exc, JournalError)
            else (f"journal {self.journal.path}: {type(exc).__name__}: {exc}")
        )
        self.failure = (
            f"{text}; the run went on without its journal, so `plait resume` cannot continue it"
        )
        import sys

        print(f"warning: {self.failure}", file=sys.stderr, flush=True)
        if self.on_failure is not None:
            self.on_failure(self.failure)

    def _record(self, event: Any) -> None:
        name = _field(event, "event")
        if self.run_id is None:
            return  # nothing to attach events to before run_started
        if name in _REPLACING and _field(event, "outcome") is not None:
            # a later execution's result (or a probe's) replaces the step's: a resume keeps
            # the latest
            step = _field(event, "source" if name == "probe_finished" else "step")
            raw = self._raw_outputs.pop(str(step), _NO_RECORD)
            output = _field(event, "output") if raw is _NO_RECORD else raw
            self.journal.record_event(self.run_id, self.session, event, output)
            return
        if name == "step_finished":
            raw = self._raw_outputs.pop(str(_field(event, "step")), _NO_RECORD)
            if not _field(event, "resumed"):  # (a resumed step's record is already there)
                output = _field(event, "output") if raw is _NO_RECORD else raw
                self.journal.record_event(self.run_id, self.session, event, output)
                if _field(event, "iteration") is not None:
                    self.journal.record_iteration(self.run_id, self.session, event, output)
                return
        self.journal.record_event(self.run_id, self.session, event)
        if name == "run_finished":
            self.journal.finish_run(
                self.run_id,
                self.session,
                outcome=str(_field(event, "outcome")),
                finished_at=_field(event, "ts"),
                duration_s=_field(event, "duration_s"),
                report=None,
            )

    def _start(self, data: Mapping[str, Any]) -> None:
        self.run_id = str(data.get("run_id"))
        if self.resume:
            self.session = self.journal.begin_session(
                self.run_id,
                str(data.get("ts")),
                forced=self.forced,
                compiled_plan=self.packed_plan,
                plan_sha256=self.plan_file_sha256 or data.get("plan_sha256"),
            )
        else:
            self.session = self._begin_run(self.run_id, data)
        self._record_event = self.journal.event_recorder(self.run_id, self.session)

    def _begin_run(self, run_id: str, data: Mapping[str, Any]) -> int:
        assert self.packed_plan is not None  # (packed for every new run)
        return self.journal.begin_run(
            run_id=run_id,
            plan=str(data.get("plan")),
            plan_path=self.plan_path,
            plan_sha256=self.plan_file_sha256 or data.get("plan_sha256"),
            compiled_plan=self.packed_plan,
            inputs=data.get("inputs") or {},
            raw_inputs=self.raw_inputs,
            started_at=str(data.get("ts")),
            plait_version=data.get("plait_version"),
        )

    def store_report(self) -> None:
        """Keep the whole run's report (masked, all sessions folded) in `runs.report`, for
        readers of the journal that do not fold events themselves. plait itself does not:
        it folds the events (`run_report`), so the journal holds each fact once."""
        if self.run_id is not None:
            self.journal.store_report(
                self.run_id, run_report(self.journal, self.run_id).to_json_dict()
            )


def merge_sessions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run's events across sessions, cut to what a report of the whole run folds.

    Each step keeps the events of the session that decided it: the last one where it really
    finished (a `step_finished` marked `resumed` only repeats an earlier session's), else the
    last one where it appeared. The run starts with the first session's `run_started` (its
    time) carrying the last session's step list (a forced resume may change the plan), and
    ends with the last session's `run_finished`, if it has one.
    """
    if not events:
        return []
    last = max(int(e.get("session", 1)) for e in events)
    starts = [e for e in events if e.get("event") == "run_started"]
    if not starts:
        return []
    run_started = dict(starts[0])
    run_started["steps"] = starts[-1].get("steps", {})
    deciding = _deciding_sessions(events)
    kept = [run_started]
    for e in events:
        name, step = e.get("event"), e.get("step")
        if name in ("run_started", "run_finished"):
            continue
        if step is not None and name != "fallback_started" and step not in run_started["steps"]:
            continue
        if step is None or name in _RUN_SCOPED or deciding.get(step) == e.get("session"):
            kept.append(e)
    kept += [e for e in events if e.get("event") == "run_finished" and e.get("session") == last]
    return kept


# Events that name a step but describe a resource: they stay whatever session they are in.
_RUN_SCOPED = frozenset({"breaker_opened", "breaker_half_open", "breaker_closed"})


def _deciding_sessions(events: list[dict[str, Any]]) -> dict[str, int]:
    finished: dict[str, int] = {}
    seen: dict[str, int] = {}
    for e in events:
        step = e.get("step")
        if step is None:
            continue
        session = int(e.get("session", 1))
        seen[step] = max(seen.get(step, 0), session)
        name = e.get("event")
        if (name == "step_finished" and not e.get("resumed")) or name == "execution_finished":
            finished[step] = session  # (a later execution decides the step's result)
    return {step: finished.get(step, seen[step]) for step in seen}


def run_report(journal: Journal, run_id: str) -> Any:
    """The report of a recorded run (a `RunReport`), folded from its events, all sessions.

    Works for a run that crashed too: steps that had started show as `running` while the
    run's process is alive and `unfinished` once it is gone (killed), steps that had not
    started as `pending`; the outcome is what the finished steps decide so far.
    """
    from plait.runtime.outcomes import StepProgress
    from plait.runtime.report import ReportBuilder

    events = merge_sessions(journal.events(run_id))
    if not events:
        raise UserError(
            f"run {run_id} has no recorded events: it stopped as it started "
            "(`plait resume` runs it from the beginning)"
        )
    builder = ReportBuilder()
    for data in events:
        data = {k: v for k, v in data.items() if k != "session"}
        builder.apply(event_from_dict(data))
    report = builder.report()
    if not RunLock(journal.path, run_id).held_elsewhere():
        for step in report.steps.values():
            if step.status == StepProgress.RUNNING:
                step.status = StepProgress.UNFINISHED  # its process is gone: nothing runs it
    return report


class RunInProgress(UserError):
    """Another process is running or resuming this run right now."""


class RunLock:
    """Held while one process runs or resumes a recorded run, so two processes never run
    the same steps at once (a second `plait resume` of a run still going would repeat its
    effects).

    An exclusive `flock` on `<journal>.locks/<run_id>`: the operating system releases it
    when the process ends in any way, `kill -9` included, so a crashed run can always be
    resumed and there is no stale lock to clean up. The file holds the owner's pid, for the
    message. Advisory: it guards plait against plait.
    """

    def __init__(self, journal_path: Path, run_id: str) -> None:
        self.path = journal_path.with_name(journal_path.name + ".locks") / run_id
        self._file: Any = None

    def acquire(self) -> None:
        """Take the lock at once or raise RunInProgress naming the process holding it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise RunInProgress(
                f"run {self.path.name} is in progress in another process (pid {owner}); "
                "wait for it to end or stop it (Ctrl-C), then resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def held_elsewhere(self) -> bool:
        """Whether a process (this one through another lock, or another) runs the run now."""
        import fcntl

        try:
            handle = open(self.path)  # noqa: SIM115 - closed below
        except OSError:
            return False  # never locked: no process has run it since locks existed
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            handle.close()
        return False

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
