"""Loops (SPEC section 11) through the real compiler and scheduler: iterations, `until`,
`max`, `every` on a fake clock, `loop.index` and `loop.previous`, a failing body step, the
loop's `timeout`, what the report and the events say, and the drawing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait.compiler.api import compile_source
from plait.compiler.graph import to_dot, to_mermaid
from plait.runtime.api import run_plan
from plait.runtime.clock import FakeClock
from plait.runtime.events import Event


def run(tmp_path: Path, body: str, **kw: Any) -> tuple[Any, list[Event]]:
    plan = tmp_path / "plan.agent"
    plan.write_text(f"plan loops {{\n{body}\n}}\n")
    events: list[Event] = []
    return run_plan(plan, events=events.append, **kw), events


def of(events: list[Event], name: str, step: str | None = None) -> list[Any]:
    return [
        e for e in events if e.event == name and (step is None or getattr(e, "step", None) == step)
    ]


REVIEW = """
  loop review max 4 until check.output.approved {
    step draft = std.echo(value = "draft ${loop.index} after ${loop.previous?.draft.output}")
    step check = std.echo(value = {approved: loop.index >= 2})
  }
  step publish = std.echo(value = review.output.draft)
  output text = publish.output
  output rounds = review.iterations
  output last = draft.output
"""


def test_a_loop_repeats_until_its_condition_holds(tmp_path: Path) -> None:
    report, events = run(tmp_path, REVIEW)
    assert report.outcome == "succeeded"
    text = "draft 2 after draft 1 after draft 0 after null"
    assert report.outputs == {"text": text, "rounds": 3, "last": text}
    loop = report.steps["review"]
    assert (loop.status, loop.attempts) == ("succeeded", 3)
    assert loop.loop == {
        "max": 4,
        "every": None,
        "until": "check.output.approved",
        "body": ["draft", "check"],
        "iterations": 3,
    }
    assert loop.output == {"draft": text, "check": {"approved": True}}
    draft = report.steps["draft"]
    assert draft.in_loop == "review"
    assert [(r["iteration"], r["status"], r["attempts"]) for r in draft.per_iteration] == [
        (0, "succeeded", 1),
        (1, "succeeded", 1),
        (2, "succeeded", 1),
    ]
    finished = of(events, "loop_iteration_finished", "review")
    assert [(e.iteration, e.until) for e in finished] == [(0, False), (1, False), (2, True)]
    assert [e.iteration for e in of(events, "step_finished", "draft")] == [0, 1, 2]
    assert len(of(events, "step_finished", "review")) == 1
    json_steps = report.to_json_dict()["steps"]
    assert json_steps["check"]["in_loop"] == "review"
    assert "loop" not in json_steps["publish"]


def test_without_until_a_loop_runs_max_iterations(tmp_path: Path) -> None:
    report, _ = run(
        tmp_path,
        """
  loop count max 3 {
    step tick = std.echo(value = loop.index)
  }
  output n = count.iterations
  output last = tick.output
""",
    )
    assert (report.outcome, report.outputs) == ("succeeded", {"n": 3, "last": 2})


def test_until_still_false_after_max_is_loop_exhausted(tmp_path: Path) -> None:
    report, _ = run(
        tmp_path,
        """
  loop never max 2 until tick.output == "done" {
    step tick = std.echo(value = "not yet")
  }
""",
    )
    loop = report.steps["never"]
    assert (loop.status, loop.attempts) == ("failed", 2)
    assert loop.error is not None and loop.error.kind == "loop_exhausted"
    assert report.outcome == "failed"
    assert [r.step for r in report.reasons] == ["never"]  # body steps decide nothing


def test_a_failing_body_step_fails_the_loop_without_until(tmp_path: Path) -> None:
    report, events = run(
        tmp_path,
        """
  loop work max 3 until ok.output {
    step ok = std.echo(value = false)
    step boom = std.fail(message = "broken in ${loop.index}") {
      after ok
    }
    step later = std.echo(value = 1) {
      after boom
    }
  }
  step next = std.echo(value = 1) {
    after work
  }
""",
    )
    loop = report.steps["work"]
    assert (loop.status, loop.caused_by, loop.attempts) == ("failed", "boom", 1)
    assert loop.error is not None and "broken in 0" in loop.error.message
    assert [e.until for e in of(events, "loop_iteration_finished")] == [None]
    assert report.steps["later"].status == "skipped"
    assert report.steps["next"].reason == "upstream_failed"


def test_an_optional_body_failure_makes_the_loop_recovered(tmp_path: Path) -> None:
    report, _ = run(
        tmp_path,
        """
  loop work max 2 {
    step maybe = std.fail(message = "no") {
      optional
    }
  }
""",
    )
    assert report.steps["work"].status == "recovered"
    assert report.outcome == "degraded"


def test_attempts_and_flaky_count_per_iteration(tmp_path: Path) -> None:
    report, events = run(
        tmp_path,
        """
  loop work max 2 {
    step flaky = std.flaky(fail_times = 1, value = loop.index) {
      retry 2 backoff 0ms
    }
  }
""",
    )
    assert [(r["iteration"], r["attempts"]) for r in report.steps["flaky"].per_iteration] == [
        (0, 2),
        (1, 2),
    ]
    started = of(events, "attempt_started", "flaky")
    assert [(e.iteration, e.attempt) for e in started] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    log = report.steps["flaky"].attempt_log
    assert [(a.iteration, a.attempt) for a in log] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    tool_calls = of(events, "step_finished", "flaky")
    assert [e.iteration for e in tool_calls] == [0, 1]


def test_every_pauses_between_iterations(tmp_path: Path) -> None:
    clock = FakeClock(autojump=True)
    report, events = run(
        tmp_path,
        """
  loop poll max 3 every 10s {
    step look = std.echo(value = loop.index)
  }
""",
        clock=clock,
    )
    assert report.steps["poll"].attempts == 3
    starts = [clock_time for clock_time in (e.ts for e in of(events, "loop_iteration_started"))]
    assert len(starts) == 3
    assert clock.now() >= 20.0  # two pauses of 10 s, none after the last iteration
    assert clock.now() < 30.0


def test_a_loop_timeout_fails_running_body_steps(tmp_path: Path) -> None:
    report, _ = run(
        tmp_path,
        """
  loop slow max 5 {
    timeout 300ms
    step nap = std.sleep(seconds = 5)
    step after_nap = std.echo(value = 1) {
      after nap
    }
  }
""",
    )
    loop = report.steps["slow"]
    assert loop.status == "failed" and loop.error is not None
    assert loop.error.kind == "timeout"
    assert report.steps["nap"].status == "failed"
    assert report.steps["after_nap"].status == "skipped"
    assert report.steps["after_nap"].caused_by == "slow"


def test_check_rejects_loop_names_outside_a_loop_and_a_bad_field() -> None:
    result = compile_source(
        "plan t {\n  step a = std.echo(value = loop.index)\n"
        "  loop l max 2 {\n    step b = std.echo(value = loop.indx)\n"
        "  }\n}\n",
        "t.agent",
    )
    messages = [d.message for d in result.diagnostics]
    assert "`loop` is read outside a loop's body" in messages
    assert "`loop` has no field `indx`" in messages


def test_a_loop_is_drawn_as_a_cluster_labelled_with_until_and_max() -> None:
    result = compile_source("plan t {\n" + REVIEW + "}\n", "t.agent")
    assert result.plan is not None
    dot = to_dot(result.plan)
    assert "subgraph cluster_review" in dot
    assert 'label="loop review · until check.output.approved · max 4"' in dot
    cluster = dot[dot.index("subgraph cluster_review") :]
    cluster = cluster[: cluster.index("}")]
    assert "s_draft" in cluster and "s_check" in cluster and "s_publish" not in cluster
    assert "s_review -> s_publish" in dot
    mermaid = to_mermaid(result.plan)
    assert (
        'subgraph cluster_review ["loop review · until check.output.approved · max 4"]' in mermaid
    )


def test_compiled_plan_shows_the_loop_and_its_body() -> None:
    result = compile_source("plan t {\n" + REVIEW + "}\n", "t.agent")
    assert result.plan is not None
    data = result.plan.model_dump(mode="json")
    review, draft = data["steps"]["review"], data["steps"]["draft"]
    assert (review["loop"]["max"], review["loop"]["body"]) == (4, ["draft", "check"])
    assert draft["in_loop"] == "review" and draft["depends_on"] == []
    assert data["steps"]["publish"]["depends_on"] == ["review"]


def test_the_events_as_json_give_back_each_iteration(tmp_path: Path) -> None:
    """`--events` and the journal keep a body step's `iteration`, so a report folded from
    them (`plait show`) has the same `per_iteration` as the live one."""
    from plait.runtime.events import event_from_dict
    from plait.runtime.report import ReportBuilder

    report, events = run(tmp_path, REVIEW)
    finished = [e.to_json_dict() for e in of(events, "step_finished", "draft")]
    assert [e["iteration"] for e in finished] == [0, 1, 2]
    builder = ReportBuilder()
    for event in events:
        builder.apply(event_from_dict(event.to_json_dict()))
    folded = builder.report().steps["draft"].per_iteration
    live = report.steps["draft"].per_iteration
    assert folded is not None and live is not None
    assert [(r["iteration"], r["status"]) for r in folded] == [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "succeeded"),
    ]
    assert all(r["duration_s"] is not None for r in folded)
    assert [r["iteration"] for r in folded] == [r["iteration"] for r in live]


def test_a_body_steps_rule_sees_the_outside_steps_it_reads(tmp_path: Path) -> None:
    report, _ = run(
        tmp_path,
        """
  step up = std.fail(message = "down")
  loop l max 1 {
    when all_done
    step reads = std.echo(value = up.output)
    step handles = std.echo(value = up.status) {
      when all_done
    }
  }
""",
    )
    reads, handles = report.steps["reads"], report.steps["handles"]
    assert (reads.status, reads.reason, reads.caused_by) == ("skipped", "upstream_failed", "up")
    assert (handles.status, handles.output) == ("succeeded", "failed")
    assert report.steps["l"].status == "succeeded"
