"""`fresh DUR` at run time (SPEC section 10, "Freshness"): data older than its bound is read
again before a reader's `if` and before each attempt evaluates its arguments. The slow path
runs on the fake clock (a 10 s retry backoff takes no real time)."""

from __future__ import annotations

import pytest

from plait.runtime.clock import FakeClock
from tests.consistency.conftest import Planner

pytestmark = pytest.mark.timeout(60)

TOOLS = """
import os
import plait

COUNT = os.path.join(os.path.dirname(__file__), "reads")

@plait.tool(name="t.read")
async def read(fail_after: int = 99) -> int:
    # counts its calls in a file, so the count survives a resume's fresh import
    with open(COUNT, "a") as f:
        f.write(".")
    with open(COUNT) as f:
        n = len(f.read())
    if n > fail_after:
        raise plait.Permanent("the source is gone")
    return n
"""


def slow_reader(policy: str = "", read_args: str = "") -> str:
    return f"""
    plan slow {{
      use "./tools.py"
      step src = t.read({read_args}) {{ fresh 5s }}
      step reader = std.echo(value = src.output) {{ retry 2 {policy} backoff 10s }}
    }}
    """


def test_an_expired_output_is_read_again_before_an_attempt(planner: Planner) -> None:
    ran = planner.run(
        slow_reader(), tools=TOOLS, clock=FakeClock(autojump=True), inject=["reader=transient:1"]
    )
    assert ran.report.outcome == "succeeded", ran.report.reasons
    # attempt 1 read the first output; 10 s later the second attempt refreshed it first
    assert ran.step("reader").output == 2
    refreshed = ran.of("refreshed")
    assert [(e.step, e.reader) for e in refreshed] == [("src", "reader")]
    assert refreshed[0].age_s == pytest.approx(10.0, abs=0.5)
    started = ran.of("execution_started", "src")
    assert [(e.execution, e.why) for e in started] == [(2, "refresh")]
    assert ran.step("src").executions == 2
    assert ran.step("src").output == 2
    # the bound holds when the arguments are evaluated: the second attempt refreshed first
    names = [(e.event, getattr(e, "step", None)) for e in ran.events]
    second = [i for i, n in enumerate(names) if n == ("attempt_started", "reader")][1]
    ended = [i for i, n in enumerate(names) if n == ("attempt_finished", "reader")][1]
    assert second < names.index(("execution_finished", "src")) < ended


def test_young_data_is_not_read_again(planner: Planner) -> None:
    ran = planner.run(
        slow_reader().replace("backoff 10s", "backoff 1s"),
        tools=TOOLS,
        clock=FakeClock(autojump=True),
        inject=["reader=transient:1"],
    )
    assert ran.step("reader").output == 1
    assert ran.of("refreshed") == [] and ran.step("src").executions == 1


def test_a_failed_refresh_keeps_the_data_and_fails_the_attempt_stale(planner: Planner) -> None:
    ran = planner.run(
        slow_reader(read_args="fail_after = 1"),
        tools=TOOLS,
        clock=FakeClock(autojump=True),
        inject=["reader=transient:1"],
    )
    reader = ran.step("reader")
    assert reader.status == "failed" and reader.error.kind == "stale"
    assert "`src`" in reader.error.message
    assert reader.attempts == 2  # `stale` is retried only `on stale`
    src = ran.step("src")
    assert src.status == "succeeded" and src.output == 1  # left as it was
    assert [e.status for e in ran.of("execution_finished", "src")] == ["failed"]


def test_a_failed_refresh_re_decides_with_on_stale(planner: Planner) -> None:
    ran = planner.run(
        slow_reader("on transient, stale", read_args="fail_after = 1"),
        tools=TOOLS,
        clock=FakeClock(autojump=True),
        inject=["reader=transient:1"],
    )
    reader = ran.step("reader")
    assert reader.redecisions and reader.redecisions[0]["sources"] == ["src"]


def test_an_if_reads_refreshed_data(planner: Planner) -> None:
    ran = planner.run(
        """
        plan gated {
          use "./tools.py"
          step src = t.read() { fresh 5s }
          step slow = std.echo(value = 1) { retry 2 backoff 10s }
          step gated = std.echo(value = src.output) { after slow; if src.output == 2 }
          step late = std.echo(value = "x") { after src, slow }
        }
        """,
        tools=TOOLS,
        clock=FakeClock(autojump=True),
        inject=["slow=transient:1"],
    )
    assert ran.step("gated").status == "succeeded"  # the `if` saw the refreshed output
    assert ran.step("gated").output == 2
    assert [e.reader for e in ran.of("refreshed")] == ["gated"]  # `after` alone reads nothing


def test_resume_reads_data_again_once_its_window_passed(planner: Planner) -> None:
    """Session one is cut by its deadline (the fake clock jumps there while `slow` sleeps);
    the resume runs an hour later on the run's clock: `reader`, still to run, gets `src`
    read again; `kept`, finished before, keeps what it had."""
    from datetime import timedelta

    from plait.runtime.clock import DEFAULT_EPOCH
    from plait.runtime.session import RunSession

    path = planner.write(
        """
        plan later {
          use "./tools.py"
          deadline 10s
          step src = t.read() { fresh 30s }
          step kept = std.echo(value = src.output)
          step slow = std.sleep(seconds = 0.3) { after kept }
          step reader = std.echo(value = src.output) { after slow }
        }
        """,
        TOOLS,
    )
    journal = planner.folder / "j.db"
    first = RunSession.start(path, journal=journal, clock=FakeClock(autojump=True)).run_sync()
    assert first.cancelled_by == "deadline" and first.steps["slow"].status == "cancelled"
    events: list[object] = []
    later = FakeClock(epoch=DEFAULT_EPOCH + timedelta(hours=1))
    report = RunSession.resume(
        first.run_id, journal=journal, clock=later, events=events.append
    ).run_sync()
    assert report.outcome == "succeeded", report.reasons
    refreshed = [e for e in events if getattr(e, "event", "") == "refreshed"]
    assert [(e.step, e.reader) for e in refreshed] == [("src", "reader")]  # type: ignore[attr-defined]
    assert refreshed[0].age_s >= 3600  # type: ignore[attr-defined]
    assert report.steps["reader"].output == 2  # read again, not reused
    assert report.steps["kept"].output == 1
    assert report.steps["src"].executions == 2


def test_concurrent_element_attempts_share_one_refresh(planner: Planner) -> None:
    ran = planner.run(
        """
        plan fan {
          use "./tools.py"
          step src = t.read() { fresh 5s }
          step each = for x in [1, 2, 3]: std.echo(value = [x, src.output]) {
            retry 2 backoff 10s
          }
        }
        """,
        tools=TOOLS,
        clock=FakeClock(autojump=True),
        inject=["each=transient:1"],
    )
    assert ran.report.outcome == "succeeded", ran.report.reasons
    assert len(ran.of("refreshed")) == 1
    assert ran.step("src").executions == 2
    assert ran.step("each").output == [[1, 2], [2, 2], [3, 2]]
