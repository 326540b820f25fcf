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

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

# The shortest time between two commits: long enough to gather a busy run's records into
# few transactions, short enough that a crash loses only the last few milliseconds.
BATCH_INTERVAL_S = 0.002

# One record: an SQL statement, a function making its parameters, and what it makes them
# from. The writer thread makes the parameters (JSON text, mostly), so the scheduler's
# thread only queues; runs of records with the same statement go to one `executemany`.
Record = tuple[str, Callable[[Any], tuple[Any, ...]], Any]


class GroupCommitWriter:
    """A daemon thread committing submitted records in ordered batches (see module doc)."""

    def __init__(
        self, conn: sqlite3.Connection, lock: threading.RLock, guard: Callable[[], Any]
    ) -> None:
        self._conn = conn
        self._lock = lock  # held while the connection is in use, by any thread
        self._guard = guard  # a context manager turning SQLite errors into JournalErrors
        self._queue: list[Record] = []
        self._ready = threading.Condition(threading.Lock())
        self._submitted = 0
        self._committed = 0
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="plait-journal", daemon=True)
        self._thread.start()

    def submit(self, record: Record) -> None:
        """Queue one record; raises the writer's failure, if it had one."""
        with self._ready:
            if self._error is not None:
                raise self._error
            self._queue.append(record)
            self._submitted += 1
            if len(self._queue) == 1:
                self._ready.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted so far is committed (or the writer failed)."""
        with self._ready:
            target = self._submitted
            while self._committed < target and self._error is None:
                self._ready.wait()
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        """Commit what is queued, stop the thread; raises the writer's failure, if any."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        last_commit = 0.0
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
            pause = last_commit + BATCH_INTERVAL_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # gather more records into this batch
            with self._ready:
                batch, self._queue = self._queue, []
            try:
                self._commit(batch)
            except BaseException as exc:
                with self._ready:
                    self._error = exc
                    self._queue.clear()
                    self._ready.notify_all()
                return
            last_commit = time.monotonic()
            with self._ready:
                self._committed += len(batch)
                self._ready.notify_all()

    def _commit(self, batch: list[Record]) -> None:
        with self._lock, self._guard():
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, group in itertools.groupby(batch, key=itemgetter(0)):
                    db.executemany(sql, [make(item) for _, make, item in group])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
