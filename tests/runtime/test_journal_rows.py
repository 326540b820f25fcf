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
