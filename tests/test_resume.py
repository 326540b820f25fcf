"""Resume: finished steps keep their recorded outputs and never run again; the rest runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from plait.compiler.ir import CompiledPlan
from plait.runtime.api import Runner
from plait.runtime.journal import Journal, run_report
from plait.runtime.resume import attach_journal, kept_steps, prepare_resume, start_resume
from plait.stdlib.registry import tool
from tests.runtime.planlib import P, R, S

CALLS: list[str] = []


@tool(name="resume_test.count")
def count(label: str, value: Any = None) -> Any:
    """Record that it ran (the side effect a resume must not repeat) and return `value`."""
    CALLS.append(label)
    return value


def _plan() -> CompiledPlan:
    return P(
        S("a", "resume_test.count", label="a", value={"token": "s3cret-token", "n": 1}),
        S("slow", "std.sleep", seconds=1.0, value="slept", after=["a"]),
        S("b", "resume_test.count", label="b", value=R("slow.output"), after=["slow"]),
        S("side", "resume_test.count", label="side", value=R("a.output.n")),
        inputs={"token": "secret"},
        outputs={"a_token": R("a.output.token"), "b": R("b.output"), "side": R("side.output")},
        name="resumable",
    )


def _run(runner: Runner, stop_after: str | None = None) -> Any:
    if stop_after is not None:

        def stopper(event: Any) -> None:
            if event.event == "step_finished" and event.step == stop_after:
                assert runner.run_obj is not None
                runner.run_obj.stop("signal")

        runner.sinks.append(stopper)
    return asyncio.run(runner.run())


def test_resume_after_cancel_runs_only_unfinished_steps(tmp_path: Path) -> None:
    CALLS.clear()
    plan = _plan()
    inputs = {"token": "s3cret-token"}
    with Journal.open(tmp_path / "j.db") as journal:
        runner = Runner(plan, inputs, environ={})
        attach_journal(runner, journal, plan, None)
        first = _run(runner, stop_after="side")
        assert first.steps["slow"].status == "cancelled"
        assert first.steps["b"].status == "cancelled"
        assert sorted(CALLS) == ["a", "side"]
        # the journal keeps the real output; the events and report are masked
        assert journal.finished_steps(runner.run_id)["a"]["output"]["token"] == "s3cret-token"
        assert first.steps["a"].output["token"] == "***"

        setup = prepare_resume(journal, runner.run_id, force=False, load=_no_file)
        assert set(setup.completed) == {"a", "side"}
        again = Runner(setup.plan, setup.raw_inputs, environ={}, run_id=setup.run_id)
        start_resume(again, journal, setup, forced=False)
        second = asyncio.run(again.run())
        assert sorted(CALLS) == ["a", "b", "side"]  # a and side did not run again
        assert second.outcome == "succeeded"
        assert second.outputs == {"a_token": "***", "b": "slept", "side": 1}
        assert second.steps["a"].attempts == 1
        whole = run_report(journal, setup.run_id)
        assert whole.outcome == "succeeded"
        assert whole.started_at == first.started_at  # the run began with its first session
        assert whole.steps["a"].started_at is not None
        assert journal.run(setup.run_id).sessions == 2


def _no_file(path: str) -> Any:
    raise AssertionError(f"no plan file expected, got {path}")


def test_kept_steps_drop_what_depends_on_unfinished_work() -> None:
    plan = P(
        S("a", "std.echo", value=1),
        S("b", "std.echo", value=R("a.output")),
        S("c", "std.echo", value=R("b.output"), fallback=["fb"]),
        S("fb", "std.echo", value=2),
    )
    finished = {
        "a": {"status": "cancelled"},  # cancelled: runs again
        "b": {"status": "skipped", "reason": "upstream_failed"},  # decided by a: runs again
        "c": {"status": "recovered"},
        "fb": {"status": "succeeded"},
    }
    assert kept_steps(plan, finished) == {}
    finished["a"] = {"status": "succeeded"}
    finished["b"] = {"status": "succeeded"}
    assert list(kept_steps(plan, finished)) == ["a", "b", "c", "fb"]
    del finished["c"]  # the primary did not finish: its standby's record is not kept
    assert list(kept_steps(plan, finished)) == ["a", "b"]


def test_changed_plan_file_is_refused_without_force(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan = _plan()
    plan_file.write_text(plan.model_dump_json())
    CALLS.clear()
    with Journal.open(tmp_path / "j.db") as journal:
        runner = Runner(plan, {"token": "s3cret-token"}, environ={})
        attach_journal(runner, journal, plan, plan_file)
        _run(runner, stop_after="side")
        plan_file.write_text(plan.model_dump_json(indent=2))
        with pytest.raises(Exception, match="changed since run"):
            prepare_resume(journal, runner.run_id, force=False, load=_load)
        setup = prepare_resume(journal, runner.run_id, force=True, load=_load)
        assert setup.replace_plan and setup.note and "--force" in setup.note
        plan_file.unlink()
        setup = prepare_resume(journal, runner.run_id, force=False, load=_no_file)
        assert setup.note is not None and "gone" in setup.note
        assert setup.plan.steps.keys() == plan.steps.keys()


def _load(path: str) -> Any:
    return CompiledPlan.model_validate_json(Path(path).read_text())
