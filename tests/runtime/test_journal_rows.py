"""The journal's rows for the events every step makes: the same records, made with less work
on the writer thread (one JSON text shared by a step's event and its record, remembered
texts for events whose fields repeat)."""

from __future__ import annotations

from pathlib import Path

from plait.runtime.events import AttemptStarted, StepFinished, StepStarted
from plait.runtime.journal import Journal
from plait.runtime.outcomes import StepOutcome, StepStatus


def _stamped(event: StepStarted | AttemptStarted | StepFinished, seq: int) -> None:
    event.seq, event.ts, event.run_id = seq, f"2026-01-01T00:00:00.{seq:06d}Z", "r1"


def test_repeating_events_read_back_as_written_past_the_remembered_ones(tmp_path: Path) -> None:
    # attempts of many map elements: more distinct field values than are remembered
    written: list[StepStarted | AttemptStarted] = []
    for n in range(600):
        event: StepStarted | AttemptStarted = (
            StepStarted(step=f"s{n}", standby_for="p" if n % 7 == 0 else None)
            if n % 2 == 0
            else AttemptStarted(step="m", attempt=1 + n % 3, element=n)
        )
        _stamped(event, n + 1)
        written.append(event)
    with Journal.open(tmp_path / "j.db") as journal:
        for event in written:
            journal.record_event("r1", 1, event)
        read = journal.events("r1")
    assert [{k: v for k, v in e.items() if k != "session"} for e in read] == [
        e.to_json_dict() for e in written
    ]


def test_a_step_record_keeps_its_real_output_and_its_event_the_masked_one(
    tmp_path: Path,
) -> None:
    real = StepOutcome(status=StepStatus.SUCCEEDED, attempts=1, output={"token": "s3cret"})
    plain = StepOutcome(status=StepStatus.SUCCEEDED, attempts=2, output=[1, "two"])
    masked = StepFinished(step="a", outcome=StepOutcome(**{**vars_of(real), "output": "***"}))
    shared = StepFinished(step="b", outcome=plain)
    _stamped(masked, 1)
    _stamped(shared, 2)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.record_event("r1", 1, masked, real.output)
        journal.record_event("r1", 1, shared, plain.output)
        events = {e["step"]: e for e in journal.events("r1")}
        steps = journal.finished_steps("r1")
    assert events["a"]["output"] == "***"
    assert steps["a"]["output"] == {"token": "s3cret"}
    assert events["b"]["output"] == steps["b"]["output"] == [1, "two"]
    assert steps["b"]["attempts"] == 2 and steps["b"]["ts"] == shared.ts


def vars_of(outcome: StepOutcome) -> dict[str, object]:
    return {name: getattr(outcome, name) for name in outcome.__dataclass_fields__}


def test_a_runs_rows_are_its_events_whichever_way_each_was_queued(tmp_path: Path) -> None:
    """Plain events travel to the writer as columns of a block, the others as themselves,
    interleaved as the run makes them (retries, failures, a standby, map elements, many
    plain steps): the journal gives back exactly the run's events, in order."""
    from typing import Any

    from plait.runtime.session import RunSession
    from tests.runtime import tools_for_tests as tt
    from tests.runtime.planlib import P, R, S, retry

    tt.reset()
    plan = P(
        S("root", "std.echo", value=1),
        *[S(f"s{i}", "std.echo", value=R("root.output")) for i in range(300)],
        S("hinted", "tt.hint", retry_after=0.0, fail_times=2, retry=retry(3)),
        S("broken", "tt.boom", optional=True),
        S("each", "std.echo", over=[1, 2, 3], value=R("x")),
        *[S(f"t{i}", "std.echo", value=R(f"s{i}.output")) for i in range(300)],
    )
    seen: list[Any] = []
    path = tmp_path / "j.db"
    session = RunSession.start(plan, journal=path, events=seen.append, environ={})
    report = session.run_sync()
    assert report.outcome == "degraded", report.outcome
    with Journal.open(path, create=False) as journal:
        stored = journal.events(session.run_id)
    assert [{k: v for k, v in e.items() if k != "session"} for e in stored] == [
        e.to_json_dict() for e in seen
    ]
    assert {e["event"] for e in stored} >= {"attempt_failed", "retry_scheduled", "step_finished"}


def test_plain_events_share_a_block_until_the_writer_takes_it(tmp_path: Path) -> None:
    from plait.runtime import journal as jmod
    from plait.runtime.events import AttemptFinished
    from plait.runtime.outcomes import AttemptStatus

    started = StepStarted(step="a")
    attempt = AttemptStarted(step="a", attempt=1)
    failed = AttemptFinished(
        step="a", attempt=1, status=AttemptStatus.FAILED, duration_s=0.25, message="no"
    )
    done = AttemptFinished(step="b", attempt=1, status=AttemptStatus.SUCCEEDED, duration_s=0.5)
    again = StepStarted(step="c")
    for n, event in enumerate([started, attempt, failed, done, again], start=1):
        _stamped(event, n)  # type: ignore[arg-type]
    with Journal.open(tmp_path / "j.db") as journal:
        journal.begin_run(
            run_id="r1",
            plan="p",
            plan_path=None,
            plan_sha256=None,
            compiled_plan={},
            inputs={},
            raw_inputs={},
            started_at=started.ts,
        )
        record = journal.event_recorder("r1", 1)
        record(started)
        block = journal._block
        assert isinstance(block, jmod._EventBlock)
        record(attempt)
        record(failed)  # not plain: queued as itself (the block stays open)
        record(done)
        assert journal._block is block and len(block.kinds) == 3
        journal.flush()  # the writer took the block: sealed, so the next event needs another
        assert block.sealed and journal._block is None
        record(again)
        assert journal._block is not None and journal._block is not block
        rows = journal.events("r1")
    assert [(e["seq"], e["event"], e["step"]) for e in rows] == [
        (1, "step_started", "a"),
        (2, "attempt_started", "a"),
        (3, "attempt_finished", "a"),
        (4, "attempt_finished", "b"),
        (5, "step_started", "c"),
    ]
    assert rows[3]["duration_s"] == 0.5 and rows[2]["message"] == "no"
