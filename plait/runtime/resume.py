"""Durable runs: attach the journal to a run, and continue a recorded run (`plait resume`).

A resume keeps every step the journal recorded as finished (`succeeded`, `recovered`,
`failed`, `skipped`) whose dependencies are kept too, seeds them into the scheduler with
their recorded results (real outputs), and runs the rest: steps that never started, were
running when the process died, or were `cancelled`. A kept step is never run again. The
run keeps its id (so `run.id` and idempotency keys stay the same); each resume is a new
*session* of it in the journal.

Which plan: the file the run was started from, if its SHA-256 is unchanged; if it changed,
refuse unless `force` (then the new plan is used and recorded steps it no longer has are
dropped); if the file is gone, the compiled plan stored in the journal.
Environment variables are not journaled: a resume reads them afresh.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.compiler.ir import CompiledPlan, Plan
from plait.errors import UserError
from plait.jsonstream import Entries, pieces
from plait.runtime.compensation import compensation_key
from plait.runtime.journal import FINISHED_STATUSES, Journal, JournalSink


def file_sha256(path: str | Path | None) -> str | None:
    """SHA-256 of a file's bytes, or None when there is no such file."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def plan_json(plan: Plan) -> Iterator[bytes]:
    """The plan as compact JSON (what the journal stores), in pieces: the text of
    `plan.model_dump_json()`, made by pydantic one step at a time. (In one go, a
    10,000-step plan's 7 MB of JSON, as text and as bytes, raised a run's peak memory by
    ~14 MB before it started.)"""
    skeleton = plan.model_copy(update={"steps": {}}).model_dump(mode="json")
    steps = Entries((name, step.model_dump(mode="json")) for name, step in plan.steps.items())
    document = Entries([(key, steps if key == "steps" else v) for key, v in skeleton.items()])
    return (piece.encode() for piece in pieces(document))


def attach_journal(
    runner: Any,
    journal: Journal,
    plan: Plan,
    plan_path: str | os.PathLike[str] | None,
    *,
    resume: bool = False,
    forced: bool = False,
    replace_plan: bool = False,
) -> JournalSink:
    """Record `runner`'s run (an `api.Runner`, not started yet) in `journal`.

    The sink is subscribed to the run's events and receives each step's unmasked output
    through the scheduler's `record_output` hook.
    """
    absolute = str(Path(plan_path).resolve()) if plan_path is not None else None
    sink = JournalSink(
        journal,
        compiled_plan=plan_json(plan),
        plan_path=absolute,
        plan_file_sha256=file_sha256(absolute),
        raw_inputs=runner.inputs,
        resume=resume,
        forced=forced,
        replace_plan=replace_plan,
    )
    runner.options.record_output = sink.record_output
    runner.options.record_element = sink.record_element
    runner.options.record_conversation = sink.record_conversation
    builder = getattr(runner, "builder", None)
    if builder is not None:  # the report says when the journal stopped recording
        sink.on_failure = lambda text: builder.add_warning("journal_failed", text)
    runner.sinks.insert(0, sink)  # first: the record is on disk before progress shows it
    return sink


def kept_steps(
    plan: Plan, finished: Mapping[str, Mapping[str, Any]], *, body_of: str | None = None
) -> dict[str, Mapping[str, Any]]:
    """The recorded steps a resume keeps: finished for good, in the plan, and with every
    dependency (and a standby's primary, a body step's loop) kept as well, so nothing kept
    was decided by a step that will run again. With `body_of`, `finished` holds the body
    steps of that loop recorded in the iteration a resume continues it at."""
    memo: dict[str, bool] = {}

    def keep(name: str) -> bool:
        if name not in memo:
            memo[name] = False  # a cycle (impossible in a checked plan) keeps nothing
            step = plan.steps.get(name)
            record = finished.get(name)
            ok = (
                step is not None
                and record is not None
                and record.get("status") in FINISHED_STATUSES
                and all(keep(d) for d in step.depends_on)
                and (step.standby_for is None or keep(step.standby_for))
                # a body step's record is its last iteration's: kept with its loop only
                and (step.in_loop in (None, body_of) or keep(step.in_loop))
            )
            memo[name] = ok
        return memo[name]

    return {name: finished[name] for name in plan.steps if keep(name)}


@dataclass
class ResumeSetup:
    """What a resume runs: the plan, the recorded inputs and the steps it keeps."""

    run_id: str
    plan: Plan
    plan_path: str | None
    raw_inputs: dict[str, Any]
    completed: dict[str, Mapping[str, Any]]
    replace_plan: bool  # a forced resume of a changed plan: record the new plan
    note: str | None  # something to tell the user (plan file gone, plan changed and forced)
    # finished elements of map steps that did not finish: a resume runs only the rest
    elements: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # compensations an earlier session recorded `succeeded`, one key per compensation
    # (`compensation_key`): a failed resume runs only the others
    compensated: list[str] = field(default_factory=list)
    # body steps of loops that did not finish, by iteration: the loop continues there
    iterations: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # conversations whose attempt did not end: (step, iteration, element) -> (attempt,
    # entries), continued in that attempt
    conversations: dict[tuple[str, int | None, int | None], tuple[int, list[dict[str, Any]]]] = (
        field(default_factory=dict)
    )


def prepare_resume(
    journal: Journal, run_id: str, *, force: bool, load: Callable[[str], Plan]
) -> ResumeSetup:
    """Everything `plait resume` needs; UserError for an unknown run or a changed plan.

    `load` compiles a plan file (the compiler's `load_plan`).
    """
    rid = journal.resolve_run_id(run_id)
    record = journal.run(rid)
    path = record.plan_path
    current = file_sha256(path)
    note = None
    replace = False
    if path is not None and current is not None:
        if record.plan_sha256 is not None and current != record.plan_sha256:
            if not force:
                raise UserError(
                    f"plan file {path} changed since run {rid} was recorded (sha256 "
                    f"{record.plan_sha256[:12]}… is now {current[:12]}…); resuming would mix "
                    "two plans. Restore the file, or pass --force to resume with the plan as "
                    "it is now (recorded steps it no longer has are dropped)"
                )
            note = f"note: plan file {path} changed since the run; resuming with it (--force)"
            replace = True
        plan = load(path)
    else:
        plan = CompiledPlan.model_validate(journal.compiled_plan(rid))
        if path is not None:
            note = f"note: plan file {path} is gone; resuming with the plan recorded in the journal"
    completed = kept_steps(plan, journal.finished_steps(rid))
    elements = {
        step: done
        for step, done in journal.finished_elements(rid).items()
        if step in plan.steps and step not in completed
    }
    iterations = {
        step: done
        for step, done in journal.finished_iterations(rid).items()
        if step in plan.steps and plan.steps[step].in_loop not in completed
    }
    return ResumeSetup(
        rid,
        plan,
        path,
        journal.inputs(rid, raw=True),
        completed,
        replace,
        note,
        elements,
        compensated_before(journal, rid),
        iterations,
        unfinished_conversations(journal, rid, plan, completed),
    )


def compensated_before(journal: Journal, run_id: str) -> list[str]:
    """The compensations earlier sessions of the run recorded `succeeded` (a key each)."""
    done = []
    for event in journal.events(run_id):
        if event.get("event") == "run_finished":
            for entry in event.get("compensations") or ():
                if entry.get("status") == "succeeded":
                    done.append(compensation_key(entry["step"], entry.get("iteration")))
    return done


def unfinished_conversations(
    journal: Journal, run_id: str, plan: Plan, completed: Mapping[str, Any]
) -> dict[tuple[str, int | None, int | None], tuple[int, list[dict[str, Any]]]]:
    """The model conversations a resume continues (SPEC section 11): for each step,
    iteration and element, the last attempt with a recorded reply or result, if that
    attempt did not end (no `attempt_finished` saying `succeeded` or `failed` since the
    session that last wrote to it: the process was killed, or the run interrupted)."""
    recorded = journal.conversations(run_id)
    if not recorded:
        return {}
    latest: dict[tuple[str, int | None, int | None], tuple[int, int, list[dict[str, Any]]]] = {}
    for (step, iteration, element, attempt), (session, entries) in recorded.items():
        if step in plan.steps and step not in completed:
            held = latest.get((step, iteration, element))
            if held is None or attempt > held[0]:
                latest[(step, iteration, element)] = (attempt, session, entries)
    ended = _ended_attempts(journal.events(run_id))
    return {
        key: (attempt, entries)
        for key, (attempt, session, entries) in latest.items()
        if ended.get((*key, attempt), 0) < session
    }


def _ended_attempts(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    """(step, iteration, element, attempt) -> the last session in which it ended by itself."""
    ended: dict[tuple[Any, ...], int] = {}
    for e in events:
        if e.get("event") == "attempt_finished" and e.get("status") in ("succeeded", "failed"):
            key = (e.get("step"), e.get("iteration"), e.get("element"), e.get("attempt"))
            ended[key] = max(ended.get(key, 0), int(e.get("session", 1)))
    return ended


def start_resume(runner: Any, journal: Journal, setup: ResumeSetup, *, forced: bool) -> JournalSink:
    """Seed the kept steps into `runner` and record its run as a new session."""
    runner.options.completed = setup.completed
    runner.options.completed_elements = setup.elements
    runner.options.compensated = tuple(setup.compensated)
    runner.options.completed_iterations = setup.iterations
    runner.options.conversations = setup.conversations
    return attach_journal(
        runner,
        journal,
        setup.plan,
        setup.plan_path,
        resume=True,
        forced=forced,
        replace_plan=setup.replace_plan,
    )
