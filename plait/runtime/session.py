"""A journaled, traced run: what `plait run` and `plait resume` do around the scheduler.

A `RunSession` is a prepared `Runner` plus its observers, opened and closed in one place:
OpenTelemetry tracing (when asked, or switched on by `OTEL_*` variables), the journal
(recording a new run, or continuing a recorded one as a new session), and the run lock that
keeps two processes from running one recorded run at once. The CLI only parses arguments
and prints; the Python API gets the same durable runs:

    session = RunSession.start("plan.agent", {"ticket": "…"}, journal=".plait/journal.db")
    report = session.run_sync()          # or: await session.run()
    again = RunSession.resume(report.run_id, journal=".plait/journal.db").run_sync()

`journal=None` runs without a journal (what `run_plan` does, and `plait run --no-journal`).
Opening and closing: `with session:` around your own `runner.run()` (the CLI does this, to
add its progress and `--events` sinks), or `run()` / `run_sync()`, which do both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plait.runtime.api import PlanLike, Runner, load_plan, new_runner
from plait.runtime.clock import Clock
from plait.runtime.events import Sink
from plait.runtime.journal import Journal, JournalSink, RunLock, journal_path
from plait.runtime.report import RunReport
from plait.runtime.resume import ResumeSetup, attach_journal, prepare_resume, start_resume
from plait.runtime.scheduler import Injection

JournalLike = Journal | str | os.PathLike[str]


def open_journal(path: str | os.PathLike[str] | None, *, create: bool) -> Journal:
    """The journal at `path`, else `$PLAIT_HOME/journal.db`, else `.plait/journal.db`
    (JournalError, a UserError, when it cannot be used)."""
    return Journal.open(journal_path(path), create=create)


class RunSession:
    """One run of a plan with its observers; see the module docstring.

    `journal`: an open `Journal` (left open), a path (opened and closed here), or None.
    `resume`: what `prepare_resume` found, to continue a recorded run instead of starting one.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        journal: JournalLike | None = None,
        plan_path: str | os.PathLike[str] | None = None,
        trace: str | None = None,
        resume: ResumeSetup | None = None,
        force: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if resume is not None and journal is None:
            raise ValueError("a resumed run needs the journal it was recorded in")
        self.runner = runner
        self.plan_path = plan_path
        self.trace = trace
        self.resume_setup = resume
        self.force = force
        self.environ = os.environ if environ is None else environ
        self._journal_arg = journal
        self.journal: Journal | None = journal if isinstance(journal, Journal) else None
        self._owns_journal = False
        self.sink: JournalSink | None = None
        self.tracing: Any = None
        self._lock: RunLock | None = None
        self._open = False

    # --- building --------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        path_or_plan: PlanLike,
        inputs: Mapping[str, Any] | None = None,
        *,
        journal: JournalLike | None = None,
        trace: str | None = None,
        seed: int | None = None,
        inject: Mapping[str, Injection] | Iterable[str] | None = None,
        events: Sink | Iterable[Sink] | None = None,
        clock: Clock | None = None,
        run_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RunSession:
        """A new run of a plan (a `.agent` or compiled JSON path, or a Plan)."""
        runner = new_runner(
            path_or_plan,
            inputs,
            seed=seed,
            inject=inject,
            events=events,
            clock=clock,
            run_id=run_id,
            environ=environ,
        )
        return cls(
            runner,
            journal=journal,
            plan_path=plan_path_of(path_or_plan),
            trace=trace,
            environ=environ,
        )

    @classmethod
    def resume(
        cls,
        run_id: str,
        *,
        journal: JournalLike | None = None,
        force: bool = False,
        trace: str | None = None,
        events: Sink | Iterable[Sink] | None = None,
        environ: Mapping[str, str] | None = None,
        files: Iterable[str | os.PathLike[str]] = (),
        clock: Clock | None = None,
    ) -> RunSession:
        """Continue a recorded run (`plait resume`); UserError for an unknown run, or for a
        plan file changed since the run (unless `force`). `note` says what to tell a user.
        `clock` as for `start` (the ages of kept outputs are measured on it)."""
        opened = journal if isinstance(journal, Journal) else open_journal(journal, create=False)
        try:
            setup = prepare_resume(opened, run_id, force=force, load=load_plan)
            runner = Runner(
                setup.plan,
                setup.raw_inputs,
                run_id=setup.run_id,
                events=events,
                environ=environ,
                files=files,
                clock=clock,
            )
        except BaseException:
            if opened is not journal:
                opened.close()
            raise
        session = cls(
            runner,
            journal=opened,
            plan_path=setup.plan_path,
            trace=trace,
            resume=setup,
            force=force,
            environ=environ,
        )
        session._owns_journal = opened is not journal
        return session

    @property
    def run_id(self) -> str:
        return self.runner.run_id

    @property
    def note(self) -> str | None:
        """For a resume: the plan file is gone, or changed and `force` was given."""
        return self.resume_setup.note if self.resume_setup is not None else None

    # --- running ---------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False) -> RunReport:
        """Open the observers, run, close them (the journal keeps the whole run's report)."""
        with self:
            return await self.runner.run(handle_signals=handle_signals)

    def run_sync(self) -> RunReport:
        """`run()` on a fresh event loop."""
        return asyncio.run(self.run())

    # --- opening and closing ---------------------------------------------------------

    def __enter__(self) -> RunSession:
        if self._open:
            raise RuntimeError("a RunSession runs once")
        self._open = True
        try:
            self._start_tracing()  # before the journal: a missing package leaves no record
            self._attach_journal()
        except BaseException as exc:
            self._close(type(exc))
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._close(exc_type)

    def _start_tracing(self) -> None:
        from plait.runtime.tracing import start_tracing, tracing_mode

        mode = tracing_mode(self.trace, self.environ)
        if mode is not None:
            plan_json = self.runner.plan.model_dump(mode="json")
            self.tracing = start_tracing(mode, plan_json, env=self.environ)
            self.runner.sinks.append(self.tracing.sink)

    def _attach_journal(self) -> None:
        if self._journal_arg is None:
            return
        if self.journal is None:
            self.journal = open_journal(self._journal_arg, create=True)  # type: ignore[arg-type]
            self._owns_journal = True
        # one process at a time runs a recorded run (the lock goes when this one ends, however)
        lock = RunLock(self.journal.path, self.runner.run_id)
        lock.acquire()
        self._lock = lock
        if self.resume_setup is not None:
            self.sink = start_resume(
                self.runner, self.journal, self.resume_setup, forced=self.force
            )
        else:
            self.sink = attach_journal(self.runner, self.journal, self.runner.plan, self.plan_path)

    def _close(self, exc_type: type[BaseException] | None) -> None:
        del exc_type  # everything is closed alike; a failed run's records are kept too
        try:
            if self.tracing is not None:
                self.tracing.shutdown()
                self.tracing = None
        finally:
            try:
                if self.journal is not None and self.sink is not None:
                    self._flush_journal()
            finally:
                self._release()

    def _flush_journal(self) -> None:
        """The whole run on disk when the session ends; a journal that failed meanwhile
        was reported by its sink (the run itself is not lost)."""
        assert self.journal is not None and self.sink is not None
        if self.sink.failure is not None:
            return
        try:
            self.journal.flush()
        except Exception as exc:  # (the writer's failure, whatever it was: the run is kept)
            self.sink.fail(exc)

    def _release(self) -> None:
        """The lock first (the journal may fail to close), then the journal if ours."""
        try:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        finally:
            if self.journal is not None and self._owns_journal:
                try:
                    self.journal.close()
                except Exception as exc:  # (the writer's failure, whatever it was)
                    if self.sink is None:
                        raise
                    self.sink.fail(exc)


def plan_path_of(path_or_plan: PlanLike) -> Path | None:
    """The plan file a run was started from, when it was given as a path."""
    if isinstance(path_or_plan, str | os.PathLike):
        return Path(path_or_plan)
    return None
