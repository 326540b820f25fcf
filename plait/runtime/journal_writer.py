"""Group commit for the journal: one writer thread commits queued records in ordered batches.

The scheduler must never wait for the disk. Records (an event row, a finished step's row)
are handed to `GroupCommitWriter.submit`, which only appends to a queue; the writer thread
takes everything queued, writes it in one transaction and commits it with
`synchronous=FULL` (one fsync per batch, not per step), then takes the next batch. It
commits at most every `BATCH_INTERVAL_S` and at least that soon after a record arrives, so
a busy run makes few large batches and a quiet one loses nothing to waiting.

Order: batches are committed in submission order and each is one transaction, so what is on
disk is always a prefix of what was submitted. A crash loses at most the batches not yet
committed; `plait resume` then runs again every step whose completion is not on disk (the
at-least-once promise of durable engines; docs/behaviour.md).

The connection is shared with the journal's own reads and one-off writes under one lock;
`flush()` waits until everything submitted so far is committed (reads call it first, so a
journal always reads its own writes). A failure in the writer is kept and raised by the next
`submit` or `flush`: nothing is written after it, so the prefix property holds.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

# The shortest time between two commits: long enough to gather a busy run's records into
# few transactions, short enough that a crash loses only the last few milliseconds.
BATCH_INTERVAL_S = 0.002

# The function making a row's parameters from what was queued (or an item's several rows)
Make = Callable[[Any], tuple[Any, ...] | Iterable[tuple[Any, ...]]]
# One record: an SQL statement, a function making its parameters, and what it makes them
# from. The writer thread makes the parameters (JSON text, mostly), so the scheduler's
# thread only queues; the rows of each statement go to one `executemany` per batch.
Record = tuple[str, Make, Any]
# The rows an item of a registered type stands for (`GroupCommitWriter(rows_of=...)`): per
# row, its statement and the function making its parameters from the item. Most of a run's
# records are such items (its events), queued as they are: a busy run's queue can hold
# tens of thousands, and a `Record` tuple around each was a tenth of its peak memory.
Rows = tuple[tuple[str, Make], ...]


class GroupCommitWriter:
    """A daemon thread committing submitted records in ordered batches (see module doc).

    `submit` takes no lock: it appends to a deque (atomic) and wakes the writer only when
    the writer is idle (once per batch, not per record); the writer takes everything queued
    when it wakes. `flush` queues a marker and waits until the batch holding it is
    committed, so it waits for exactly what was submitted before it, from any thread."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: threading.RLock,
        guard: Callable[[], Any],
        rows_of: Mapping[type, Rows] | None = None,
        on_taken: Callable[[], None] | None = None,
        keyed: Mapping[str, Collection[type]] | None = None,
    ) -> None:
        self._conn = conn
        self._rows_of = dict(rows_of or {})
        # statements whose rows are inserted in the order of their first value (a rowid),
        # with the item types whose rows come several at once, already in that order
        self._keyed = {sql: frozenset(types) for sql, types in (keyed or {}).items()}
        # called on the writer thread as soon as it has taken a batch off the queue
        self._on_taken = on_taken
        self._lock = lock  # held while the connection is in use, by any thread
        self._guard = guard  # a context manager turning SQLite errors into JournalErrors
        self._queue: deque[Any] = deque()  # Records, registered items, flush markers
        self._wake = threading.Event()
        self._idle = False  # the writer is waiting for `_wake` (or about to)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="plait-journal", daemon=True)
        self._thread.start()

    def submit(self, record: Any) -> None:
        """Queue one record (a `Record`, or an item of a type in `rows_of`); raises the
        writer's failure, if it had one."""
        if self._error is not None:
            raise self._error
        self._queue.append(record)
        if self._idle:
            self._wake.set()

    def flush(self) -> None:
        """Wait until everything submitted so far is committed (or the writer failed)."""
        if self._error is None:
            committed = threading.Event()
            self._queue.append(committed)
            self._wake.set()
            while not committed.wait(0.05) and self._error is None and self._thread.is_alive():
                pass
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Commit what is queued, stop the thread; raises the writer's failure, if any."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        queue, wake = self._queue, self._wake
        last_commit = 0.0
        while True:
            if not queue:
                if self._stopping:
                    return
                self._idle = True  # (then look again: a submit in between sets `wake`)
                if not queue and not self._stopping:
                    wake.wait()
                wake.clear()
                self._idle = False
                continue
            pause = last_commit + BATCH_INTERVAL_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # gather more records into this batch
            batch = [queue.popleft() for _ in range(len(queue))]
            try:
                if self._on_taken is not None:
                    self._on_taken()
                self._commit(batch)
            except BaseException as exc:
                self._error = exc
                batch += [queue.popleft() for _ in range(len(queue))]
                _set_markers(batch)
                return
            last_commit = time.monotonic()
            _set_markers(batch)

    def _commit(self, batch: list[Any]) -> None:
        statements = self._by_statement(batch)
        if not statements:
            return  # (flush markers only)
        with self._lock, self._guard():
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, (makes, items) in statements.items():
                    several = self._keyed.get(sql)
                    if several is None:
                        rows = _rows(makes, items)
                    else:
                        rows = _in_key_order(makes, items, several)
                    _insert_all(db, sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _by_statement(self, batch: list[Any]) -> dict[str, tuple[list[Make], list[Any]]]:
        """The batch's rows per statement (what makes each, and from what), each
        statement's in submission order. A batch is one transaction, so the order between
        tables does not matter, and one `executemany` per table is far cheaper than one per
        run of records (a step's events and its steps row alternate: two calls per
        step)."""
        statements: dict[str, tuple[list[Make], list[Any]]] = {}
        rows_of = self._rows_of
        for record in batch:
            if type(record) is tuple:
                rows: Rows = ((record[0], record[1]),)
                record = record[2]
            else:
                found = rows_of.get(type(record))
                if found is None:
                    if isinstance(record, threading.Event):
                        continue  # a flush marker
                    raise TypeError(f"the journal writer cannot store {type(record).__name__}")
                rows = found
            for sql, make in rows:
                same = statements.get(sql)
                if same is None:
                    same = statements[sql] = ([], [])
                same[0].append(make)
                same[1].append(record)
        return statements


def _set_markers(batch: list[Any]) -> None:
    for item in batch:
        if isinstance(item, threading.Event):
            item.set()


# `... VALUES (?,?,?)`: a statement whose rows can be sent several to one statement
_PLAIN_VALUES = re.compile(r"^(.*\bVALUES\s*)(\((?:\?\s*,\s*)*\?\))\s*$", re.DOTALL)
# Rows per statement: one prepared statement of this many rows serves every full chunk
# (SQLite before 3.32 allows 999 parameters per statement: 32 rows of up to 31 columns)
ROWS_PER_STATEMENT = 32


def _rows(makes: list[Make], items: list[Any]) -> Iterator[tuple[Any, ...]]:
    for make, item in zip(makes, items, strict=True):
        row = make(item)
        if type(row) is tuple:
            yield row
        else:  # an item standing for several rows (a block of events)
            yield from row


def _in_key_order(
    makes: list[Make], items: list[Any], several: frozenset[type]
) -> Iterator[tuple[Any, ...]]:
    """The rows `_rows` gives, ordered by their first value (the table's rowid) when each
    item of a type in `several` gives its rows in that order and the others come in that
    order (as a session's events do): an item's rows are merged in as they are made.

    Why: a rowid table whose rows arrive in key order fills each page before the next,
    but rows inserted between others split full pages. A run's plain events travel in
    blocks (`journal._EventBlock`) that are queued before the step_finished events
    numbered between theirs, so a batch in queue order left the events pages ~85% full
    (~35 bytes more per step). Rows in any other order are inserted all the same."""
    singles: Iterator[tuple[Any, ...]] = (
        make(item)  # type: ignore[misc]  # (one row each: not of a type in `several`)
        for make, item in zip(makes, items, strict=True)
        if type(item) not in several
    )
    streams: list[Iterable[tuple[Any, ...]]] = [
        make(item) for make, item in zip(makes, items, strict=True) if type(item) in several
    ]
    if not streams:
        return singles
    return heapq.merge(*streams, singles, key=operator.itemgetter(0))


def _insert_all(db: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> None:
    """Insert the rows (`_rows`, `_in_key_order`) in order, in statements of
    `ROWS_PER_STATEMENT` rows when `sql` is a plain `INSERT ... VALUES (?,...)` (the rest
    one by one).

    Why: Python's sqlite3 releases the GIL around every statement it steps, and the
    scheduler's thread takes it each time: with one row per step, a 1,000-step chain
    handed the GIL over about ten times per step. Rows are inserted in order, so a later
    `INSERT OR REPLACE` of the same key still wins. Each row is made as it is sent, not all
    of a batch's first: a busy run's batch holds tens of thousands, and while alive each
    counts towards the next run of the garbage collector, which then walks them."""
    plain = _PLAIN_VALUES.match(sql)
    if plain is None:
        db.executemany(sql, rows)
        return
    head, group = plain.groups()
    wide = head + ",".join([group] * ROWS_PER_STATEMENT)
    chain = itertools.chain.from_iterable
    while True:
        chunk = list(itertools.islice(rows, ROWS_PER_STATEMENT))
        if len(chunk) < ROWS_PER_STATEMENT:
            if chunk:
                db.executemany(sql, chunk)
            return
        db.execute(wide, tuple(chain(chunk)))
