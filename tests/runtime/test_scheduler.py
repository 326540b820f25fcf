"""The scheduler against SPEC sections 4 and 6: trigger rules, retries, fallbacks, defaults,
optional steps, maps, resources, timeouts, injection and events."""

from __future__ import annotations

import time
from typing import Any

import pytest

from plait.compiler.ir import BreakerPolicy, Rate, Resource, TriggerRule
from plait.errors import UserError
from tests.runtime import tools_for_tests as tt
from tests.runtime.conftest import RunFn, plait_threads
from tests.runtime.planlib import B, L, P, R, S, T, retry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _reset() -> None:
    tt.reset()


def ok(name: str, value: object = 1, **kw: object) -> S:  # type: ignore[valid-type]
    return S(name, "std.echo", value=value, **kw)


def bad(name: str, kind: str = "tool_error", **kw: object) -> S:  # type: ignore[valid-type]
    return S(name, "std.fail", message=f"{name} broke", kind=kind, **kw)


# --- trigger rules ----------------------------------------------------------------------------


def test_failed_optional_dependency_counts_as_succeeded_under_all_succeeded(run: RunFn) -> None:
    r = run(P(bad("a", optional=True), ok("b", R("a.output"))))
    assert r.status("a") == "failed"
    assert r.status("b") == "succeeded"
    assert r.step("b").output is None  # a failed step's output reads as null
    assert r.report.outcome == "degraded"
    assert [x.why for x in r.report.reasons] == ["optional step failed"]


def test_skipped_dependency_all_succeeded_vs_any_succeeded(run: RunFn) -> None:
    r = run(
        P(
            ok("a", condition=False),
            ok("b"),
            ok("all", R("a.output"), after=["b"]),
            ok("any", R("a.output"), after=["b"], when=TriggerRule.ANY_SUCCEEDED),
        )
    )
    assert r.status("a") == "skipped" and r.step("a").reason == "condition_false"
    assert (r.status("all"), r.step("all").reason) == ("skipped", "upstream_skipped")
    assert r.step("all").caused_by == "a"
    assert r.status("any") == "succeeded"
    assert r.report.outcome == "succeeded"  # skipped steps never decide the run


def test_failure_wins_over_skip_and_caused_by_is_first_in_source_order(run: RunFn) -> None:
    r = run(P(ok("s", condition=False), bad("f"), ok("c", after=["s", "f"]), ok("d", after=["c"])))
    assert (r.status("c"), r.step("c").reason, r.step("c").caused_by) == (
        "skipped",
        "upstream_failed",
        "f",
    )
    # skipped with upstream_failed counts as failed for what comes after
    assert (r.step("d").reason, r.step("d").caused_by) == ("upstream_failed", "c")
    assert r.step("d").attempts == 0 and r.step("d").started_at is None


def test_any_succeeded_without_success(run: RunFn) -> None:
    r = run(
        P(
            bad("f", optional=True),
            ok("s", condition=False),
            ok("x", after=["f", "s"], when=TriggerRule.ANY_SUCCEEDED),
            ok("y", after=["s"], when=TriggerRule.ANY_SUCCEEDED),
        )
    )
    # a failed optional dependency does not count as succeeded for any_succeeded
    assert (r.step("x").reason, r.step("x").caused_by) == ("upstream_failed", "f")
    assert r.step("y").reason == "upstream_skipped"


def test_all_done_any_failed_all_failed(run: RunFn) -> None:
    r = run(
        P(
            bad("f", optional=True),
            ok("g"),
            ok("done", R("f.status"), after=["g"], when=TriggerRule.ALL_DONE),
            ok("anyf", after=["f", "g"], when=TriggerRule.ANY_FAILED),
            ok("allf", after=["f", "g"], when=TriggerRule.ALL_FAILED),
            ok("allf2", after=["f"], when=TriggerRule.ALL_FAILED),
            ok("nof", after=["g"], when=TriggerRule.ANY_FAILED),
        )
    )
    assert r.step("done").output == "failed"
    assert r.status("anyf") == "succeeded"
    assert (r.status("allf"), r.step("allf").reason) == ("skipped", "trigger_not_met")
    assert r.status("allf2") == "succeeded"  # failed optional dependencies included
    assert r.step("nof").reason == "trigger_not_met"


def test_recovered_is_not_failed_for_any_failed(run: RunFn) -> None:
    r = run(P(bad("p", default=0), ok("x", after=["p"], when=TriggerRule.ANY_FAILED)))
    assert r.status("p") == "recovered"
    assert r.step("x").reason == "trigger_not_met"


@pytest.mark.parametrize(
    "rule,runs",
    [
        (TriggerRule.ALL_SUCCEEDED, True),
        (TriggerRule.ALL_DONE, True),
        (TriggerRule.ANY_SUCCEEDED, False),
        (TriggerRule.ANY_FAILED, False),
        (TriggerRule.ALL_FAILED, False),
    ],
)
def test_rules_on_a_step_without_dependencies(run: RunFn, rule: TriggerRule, runs: bool) -> None:
    r = run(P(ok("a", when=rule)))
    assert r.status("a") == ("succeeded" if runs else "skipped")
    if not runs:
        assert r.step("a").reason == "trigger_not_met"


def test_if_is_evaluated_after_the_rule_and_an_error_is_invalid_input(run: RunFn) -> None:
    r = run(
        P(
            ok("a", {"n": 5}),
            ok("big", condition=B(">=", R("a.output.n"), 3)),
            ok("small", condition=B(">=", R("a.output.n"), 9)),
            ok("broken", condition=B(">=", R("a.output.zzz"), 1)),
        )
    )
    assert r.status("big") == "succeeded"
    assert r.step("small").reason == "condition_false"
    assert r.status("broken") == "failed"
    assert r.step("broken").error.kind == "invalid_input"
    assert "a.output.zzz" in r.step("broken").error.message


# --- retries ------------------------------------------------------------------------------------


def test_success_after_retries_is_succeeded_with_delays(run: RunFn) -> None:
    r = run(
        P(S("f", "std.flaky", fail_times=2, value="v", retry=retry(3, 0.01, factor=2, max_s=0.015)))
    )
    s = r.step("f")
    assert (s.status, s.attempts, s.output, s.error) == ("succeeded", 3, "v", None)
    sched = r.of("retry_scheduled", "f")
    assert [(e.attempt, e.delay_s) for e in sched] == [(2, 0.01), (3, 0.015)]
    assert [a.delay_s for a in s.attempt_log] == [0.01, 0.015, None]


def test_exhausted_retries(run: RunFn) -> None:
    r = run(P(S("f", "std.flaky", fail_times=5, retry=retry(2, 0.0))))
    s = r.step("f")
    assert (s.status, s.attempts, s.error.kind, s.error.retry) == (
        "failed",
        3,
        "transient",
        "exhausted",
    )
    assert r.report.outcome == "failed"


def test_no_retry_policy_is_exhausted_after_one(run: RunFn) -> None:
    r = run(P(bad("f")))
    assert (r.step("f").attempts, r.step("f").error.retry) == (1, "exhausted")


def test_permanent_not_retried_by_default_but_when_listed(run: RunFn) -> None:
    r = run(
        P(
            S("p", "tt.permanent_then_ok", retry=retry(3)),
            S("q", "tt.permanent_then_ok", retry=retry(3, on=["permanent"])),
        )
    )
    assert (r.status("p"), r.step("p").attempts, r.step("p").error.retry) == (
        "failed",
        1,
        "not_retryable",
    )
    assert (r.status("q"), r.step("q").attempts) == ("succeeded", 2)


def test_retry_on_timeout_facing_a_transient_error(run: RunFn) -> None:
    r = run(P(S("f", "std.flaky", fail_times=1, retry=retry(3, on=["timeout"]))))
    assert (r.step("f").attempts, r.step("f").error.kind, r.step("f").error.retry) == (
        1,
        "transient",
        "not_retryable",
    )


def test_on_transient_covers_rate_limited_not_the_other_way(run: RunFn) -> None:
    r = run(
        P(
            S(
                "a",
                "std.flaky",
                fail_times=1,
                kind="rate_limited",
                retry=retry(1, on=["transient"]),
            ),
            S(
                "b",
                "std.flaky",
                fail_times=1,
                kind="transient",
                retry=retry(1, on=["rate_limited"]),
            ),
        )
    )
    assert r.status("a") == "succeeded"
    assert (r.status("b"), r.step("b").error.retry) == ("failed", "not_retryable")


@pytest.mark.parametrize("kind", ["invalid_input", "breaker_open", "cancelled"])
def test_other_kinds_not_retried_by_default(run: RunFn, kind: str) -> None:
    r = run(P(bad("f", kind=kind, retry=retry(2))))
    s = r.step("f")
    # a tool failing with cancelled/breaker_open of its own accord ends failed (SPEC 9)
    assert (s.status, s.attempts, s.error.kind, s.error.retry) == (
        "failed",
        1,
        kind,
        "not_retryable",
    )


def test_retry_hint_raises_the_wait_and_is_reported(run: RunFn) -> None:
    r = run(P(S("h", "tt.hint", retry_after=0.05, retry=retry(1, 0.001, max_s=0.001))))
    (sched,) = r.of("retry_scheduled", "h")
    assert sched.hint_s == 0.05 and sched.delay_s == 0.05  # `max` does not cap a hint
    assert r.status("h") == "succeeded"


def test_jitter_is_reproducible_with_a_seed(run: RunFn) -> None:
    plan = P(S("f", "std.flaky", fail_times=3, retry=retry(3, 0.02, jitter=True)))
    delays = [[e.delay_s for e in run(plan, seed=s).of("retry_scheduled")] for s in (7, 7, 8)]
    assert delays[0] == delays[1] != delays[2]
    assert all(0 <= d <= 0.02 for d in delays[0])


def test_any_exception_is_tool_error(run: RunFn) -> None:
    r = run(P(S("b", "tt.boom")))
    assert r.step("b").error.kind == "tool_error"
    assert "ValueError: kaput" in r.step("b").error.message


# --- timeouts and threads -----------------------------------------------------------------------


def test_timeout_cancels_an_async_attempt(run: RunFn) -> None:
    r = run(P(S("s", "std.sleep", seconds=5, timeout_s=0.05, retry=retry(1, 0.0))))
    s = r.step("s")
    assert (s.status, s.attempts, s.error.kind) == ("failed", 2, "timeout")
    assert r.report.duration_s < 2


def test_sync_tool_past_its_timeout_is_abandoned_not_joined(run: RunFn) -> None:
    t0 = time.monotonic()
    r = run(P(S("b", "tt.block", seconds=1.5, timeout_s=0.05)))
    assert r.step("b").error.kind == "timeout"
    assert time.monotonic() - t0 < 1.0  # the run did not wait for the thread
    assert all(t.daemon for t in plait_threads())


def test_timeout_does_not_count_waiting_for_a_slot(run: RunFn) -> None:
    res = Resource(name="one", concurrency=1)
    r = run(
        P(
            S("a", "tt.busy", seconds=0.15, uses=["one"], timeout_s=0.5),
            S("b", "tt.busy", seconds=0.15, uses=["one"], timeout_s=0.2),
            resources=[res],
        )
    )
    assert r.status("a") == r.status("b") == "succeeded"
    assert tt.IN_FLIGHT["peak"] == 1


# --- fallback, default, optional --------------------------------------------------------------


def test_fallback_recovers_and_unused_standby_is_not_needed(run: RunFn) -> None:
    r = run(
        P(
            bad("p", fallback=["s1", "s2", "s3"]),
            bad("s1"),
            ok("s2", "from s2"),
            ok("s3"),
            ok("after", R("p.output")),
        )
    )
    p = r.step("p")
    assert (p.status, p.fallback_used, p.output, p.attempts) == ("recovered", "s2", "from s2", 1)
    assert p.error.kind == "tool_error"  # what went wrong before the rescue
    assert r.status("s1") == "failed" and r.status("s2") == "succeeded"
    assert (r.status("s3"), r.step("s3").reason) == ("skipped", "not_needed")
    assert r.step("after").output == "from s2"
    assert r.report.outcome == "degraded"  # a standby's failure never decides the run
    assert [(x.step, x.kind) for x in r.report.reasons] == [("p", "tool_error")]
    fb = r.of("fallback_started")
    assert [(e.step, e.fallback) for e in fb] == [("p", "s1"), ("p", "s2")]
    assert p.finished_at >= r.step("s2").finished_at  # fallbacks included


def test_standbys_are_not_needed_when_primary_succeeds_or_is_skipped(run: RunFn) -> None:
    r = run(P(ok("p", fallback=["s"]), ok("s"), ok("q", condition=False, fallback=["t"]), ok("t")))
    assert r.step("s").reason == r.step("t").reason == "not_needed"
    assert r.step("s").attempts == 0


def test_fallback_that_fails_and_a_default_that_rescues(run: RunFn) -> None:
    r = run(P(bad("p", fallback=["s"], default={"c": "other"}), bad("s")))
    p = r.step("p")
    assert (p.status, p.output, p.fallback_used) == ("recovered", {"c": "other"}, None)
    assert r.status("s") == "failed"
    assert r.report.reasons[0].why == "recovered by its default"


@pytest.mark.parametrize("value", [0, False, [], None])
def test_any_default_value_rescues(run: RunFn, value: object) -> None:
    r = run(P(bad("p", default=L(value))))
    assert (r.status("p"), r.step("p").output) == ("recovered", value)


def test_default_does_not_apply_to_a_skipped_step(run: RunFn) -> None:
    r = run(P(ok("p", condition=False, default=5)))
    assert (r.status("p"), r.step("p").output) == ("skipped", None)


def test_standby_uses_its_own_policies(run: RunFn) -> None:
    r = run(
        P(
            bad("p", fallback=["s"]),
            S("s", "std.flaky", fail_times=1, value="ok", retry=retry(1, 0.0)),
        )
    )
    assert (r.status("p"), r.step("p").attempts) == ("recovered", 1)
    assert (r.status("s"), r.step("s").attempts) == ("succeeded", 2)


def test_optional_step_rescued_is_recovered_and_retry_success_is_succeeded(run: RunFn) -> None:
    r = run(
        P(
            bad("o", optional=True, default=1),
            S("f", "std.flaky", fail_times=1, retry=retry(1, 0.0)),
        )
    )
    assert r.status("o") == "recovered" and r.status("f") == "succeeded"


def test_required_failure_fails_the_run_and_its_dependants_are_skipped(run: RunFn) -> None:
    r = run(P(bad("a"), ok("b", R("a.output"))))
    assert r.report.outcome == "failed"
    assert (r.report.reasons[0].step, r.report.reasons[0].why) == ("a", "required step failed")
    assert r.step("b").reason == "upstream_failed"


def test_argument_error_is_an_invalid_input_attempt_naming_the_expression(run: RunFn) -> None:
    r = run(
        P(bad("h", optional=True), ok("d", T("x ", R("h.output.body")), when=TriggerRule.ALL_DONE))
    )
    s = r.step("d")
    assert (s.status, s.attempts, s.error.kind) == ("failed", 1, "invalid_input")
    assert "h.output" in s.error.message and "value" in s.error.message
    (failed,) = r.of("attempt_failed", "d")
    assert failed.kind == "invalid_input"


def test_tool_argument_schema_failure_is_invalid_input(run: RunFn) -> None:
    r = run(P(S("s", "std.sleep", seconds="soon")))
    assert r.step("s").error.kind == "invalid_input"


# --- maps ---------------------------------------------------------------------------------------


def test_map_outputs_in_order_attempts_summed(run: RunFn) -> None:
    r = run(P(S("m", "std.sleep", over=[0.03, 0.0, 0.01], seconds=R("x"), value=R("x"))))
    s = r.step("m")
    assert (s.status, s.output, s.attempts) == ("succeeded", [0.03, 0.0, 0.01], 3)
    assert s.elements.total == 3 and s.elements.failed == 0
    assert sorted(e.element for e in r.of("attempt_started")) == [0, 1, 2]


def test_map_within_and_above_tolerance(run: RunFn) -> None:
    items = [{"f": 0}, {"f": 9}, {"f": 0}, {"f": 0}]
    plan = P(
        S("within", "std.flaky", over=items, fail_times=R("x.f"), value=1, tolerate=25.0),
        S(
            "above",
            "std.flaky",
            over=[*items, {"f": 9}],
            fail_times=R("x.f"),
            value=1,
            tolerate=25.0,
            optional=True,
        ),
    )
    r = run(plan)
    w = r.step("within")
    assert (w.status, w.output) == ("recovered", [1, None, 1, 1])
    assert (w.elements.failed, w.elements.errors[0].index) == (1, 1)
    a = r.step("above")  # 2 of 5 = 40% > 25%
    assert (a.status, a.error.kind, a.elements.failed) == ("failed", "transient", 2)
    assert r.report.outcome == "degraded"


def test_map_per_element_retry_and_fallback_for_the_whole(run: RunFn) -> None:
    r = run(
        P(
            S("m", "std.flaky", over=[1, 2], fail_times=1, value=R("x"), retry=retry(1, 0.0)),
            S("n", "std.fail", over=[1], message="x", fallback=["s"]),
            ok("s", "whole"),
        )
    )
    assert (r.step("m").output, r.step("m").attempts) == ([1, 2], 4)
    retries = r.of("retry_scheduled", "m")
    assert sorted((e.element, e.attempt) for e in retries) == [(0, 2), (1, 2)]
    assert (r.status("n"), r.step("n").output) == ("recovered", "whole")


def test_empty_map_and_non_list(run: RunFn) -> None:
    r = run(
        P(
            ok("v", "text"),
            S("e", "std.echo", over=[], value=R("x")),
            S("n", "std.echo", over=R("v.output"), value=R("x")),
        )
    )
    assert (r.status("e"), r.step("e").output, r.step("e").attempts) == ("succeeded", [], 0)
    assert (r.status("n"), r.step("n").error.kind) == ("failed", "invalid_input")


def test_map_concurrency_and_plan_concurrency(run: RunFn) -> None:
    r = run(P(S("m", "tt.busy", over=list(range(6)), seconds=0.03, concurrency=2)))
    assert r.status("m") == "succeeded" and tt.IN_FLIGHT["peak"] == 2
    tt.reset()
    r = run(P(*[S(f"s{i}", "tt.busy", seconds=0.03) for i in range(5)], concurrency=3))
    assert tt.IN_FLIGHT["peak"] == 3


# --- resources ----------------------------------------------------------------------------------


def test_breaker_opens_across_two_steps(run: RunFn) -> None:
    api = Resource(name="api", breaker=BreakerPolicy(failures=2, cooldown_s=30))
    r = run(
        P(
            bad("a", kind="transient", uses=["api"], retry=retry(1, 0.0)),
            S("b", "tt.count", uses=["api"], after=["a"], when=TriggerRule.ALL_DONE),
            resources=[api],
        )
    )
    assert r.step("a").attempts == 2
    b = r.step("b")
    assert (b.status, b.attempts, b.error.kind) == ("failed", 1, "breaker_open")
    assert "b" not in tt.CALLS  # refused without calling the tool
    (opened,) = r.of("breaker_opened")
    assert opened.resource == "api"


def test_breaker_half_open_trial_closes_it(run: RunFn) -> None:
    api = Resource(name="api", breaker=BreakerPolicy(failures=1, cooldown_s=0.05))
    r = run(
        P(
            bad("a", kind="timeout", uses=["api"]),
            S("w", "std.sleep", seconds=0.08, after=["a"], when=TriggerRule.ALL_DONE),
            S("b", "tt.count", uses=["api"], after=["w"]),
            resources=[api],
        )
    )
    assert r.status("b") == "succeeded"
    assert [e.event for e in r.events if e.event.startswith("breaker_")] == [
        "breaker_opened",
        "breaker_half_open",
        "breaker_closed",
    ]


def test_permanent_failures_do_not_open_the_breaker(run: RunFn) -> None:
    api = Resource(name="api", breaker=BreakerPolicy(failures=1))
    r = run(
        P(
            bad("a", kind="permanent", uses=["api"]),
            S("b", "tt.count", uses=["api"], after=["a"], when=TriggerRule.ALL_DONE),
            resources=[api],
        )
    )
    assert r.status("b") == "succeeded" and not r.of("breaker_opened")


def test_rate_limit_spaces_attempt_starts(run: RunFn) -> None:
    api = Resource(name="api", rate=Rate(count=2, per_s=0.2))
    run(P(*[S(f"s{i}", "tt.busy", seconds=0.0, uses=["api"]) for i in range(4)], resources=[api]))
    starts = sorted(tt.STARTS)
    assert starts[1] - starts[0] < 0.1  # a burst of 2 starts at once
    assert starts[2] - starts[0] >= 0.15  # the third waits for the window


# --- deadline -----------------------------------------------------------------------------------


def test_deadline_cancels_running_and_pending_steps(run: RunFn) -> None:
    r = run(
        P(
            ok("fast", "x"),
            S("slow", "std.sleep", seconds=5),
            ok("later", R("slow.output")),
            S("opt", "std.sleep", seconds=5, optional=True),
            outputs={"f": R("fast.output"), "s": R("slow.output")},
            deadline_s=0.2,
        )
    )
    rep = r.report
    assert rep.cancelled_by == "deadline" and rep.outcome == "failed"
    assert r.status("fast") == "succeeded"
    assert (r.status("slow"), r.step("slow").attempts) == ("cancelled", 1)
    assert (r.status("later"), r.step("later").attempts) == ("cancelled", 0)
    assert r.step("later").started_at is None
    assert rep.outputs == {"f": "x", "s": None}
    assert rep.duration_s < 2
    assert len(r.of("step_finished")) == 4
    (fin,) = r.of("attempt_finished", "slow")
    assert fin.status == "cancelled"


def test_deadline_cancelling_only_optional_steps_degrades(run: RunFn) -> None:
    r = run(P(ok("a"), S("opt", "std.sleep", seconds=5, optional=True), deadline_s=0.1))
    assert r.report.outcome == "degraded" and r.status("opt") == "cancelled"


def test_deadline_refuses_a_retry_wait_past_it(run: RunFn) -> None:
    r = run(P(S("f", "std.flaky", fail_times=9, retry=retry(5, 10.0)), deadline_s=2.0))
    s = r.step("f")
    assert (s.status, s.attempts, s.error.retry) == ("failed", 1, "deadline")
    assert r.report.duration_s < 1 and r.report.cancelled_by is None


def test_deadline_ends_retries_in_backoff_and_cancels_a_running_standby(run: RunFn) -> None:
    # waits of 0.1 s fit twice into 0.25 s; the third would end past the deadline, so the
    # step fails at once with its last error instead of sleeping into the cancellation
    r = run(
        P(
            S("f", "std.flaky", fail_times=9, retry=retry(5, 0.1)),
            bad("p", fallback=["sb"]),
            S("sb", "std.sleep", seconds=5),
            deadline_s=0.25,
        )
    )
    f = r.step("f")
    assert (f.status, f.error.kind, f.error.retry) == ("failed", "transient", "deadline")
    assert 2 <= f.attempts <= 3
    assert r.status("sb") == "cancelled" and r.status("p") == "cancelled"


# --- injection, env, masking, events ------------------------------------------------------------


def test_inject_fails_the_first_attempts_before_the_tool(run: RunFn) -> None:
    r = run(P(S("a", "tt.count", value=1, retry=retry(3, 0.0))), inject=["a=transient:2"])
    assert (r.status("a"), r.step("a").attempts, tt.CALLS["a"]) == ("succeeded", 3, 1)
    failed = r.of("attempt_failed", "a")
    assert [(e.kind, e.injected) for e in failed] == [("transient", True)] * 2
    assert r.step("a").attempt_log[0].injected


def test_inject_without_count_fails_every_attempt(run: RunFn) -> None:
    r = run(
        P(S("a", "tt.count", retry=retry(2, 0.0), fallback=["b"]), ok("b")), inject=["a=timeout"]
    )
    assert (r.status("a"), r.step("a").attempts, tt.CALLS.get("a")) == ("recovered", 3, None)


def test_bad_inject_specs() -> None:
    from plait.runtime.api import parse_injections

    plan = P(ok("alpha"))
    for spec, text in [
        ("alpa=timeout", "did you mean `alpha`"),
        ("alpha=slow", "unknown error"),
        ("alpha", "STEP=KIND"),
        ("alpha=timeout:x", "whole number"),
    ]:
        with pytest.raises(UserError, match=text):
            parse_injections([spec], plan)


def test_missing_env_stops_the_run_before_any_step(run: RunFn) -> None:
    plan = P(
        S("a", "tt.count", value=R("env.PLAIT_T_KEY")),
        S("b", "tt.count", value=B("??", R("env.PLAIT_T_OTHER"), "dflt")),
    )
    with pytest.raises(UserError, match=r"PLAIT_T_KEY is not set.*step `a`"):
        run(plan, environ={})
    assert tt.CALLS == {}
    r = run(plan, environ={"PLAIT_T_KEY": "k3y-value"})
    assert r.step("b").output == "dflt"


def test_secrets_are_masked_in_events_and_report(run: RunFn) -> None:
    plan = P(
        S("a", "std.echo", value=T("token=", R("env.PLAIT_T_SECRET"))),
        S("b", "std.fail", message=T("bad ", R("pw"))),
        inputs={"pw": "secret"},
        outputs={"o": R("a.output")},
    )
    r = run(plan, {"pw": "hunter22"}, environ={"PLAIT_T_SECRET": "s3cr3t-v"})
    text = r.report.model_dump_json() + "".join(e.model_dump_json() for e in r.events)
    assert "s3cr3t-v" not in text and "hunter22" not in text
    assert r.step("a").output == "token=***" and r.report.inputs["pw"] == "***"
    assert r.step("b").error.message == "bad ***"


def test_events_sequence_and_one_step_finished_each(run: RunFn) -> None:
    r = run(
        P(
            ok("a"),
            bad("b", fallback=["c", "d"]),
            ok("c"),
            ok("d"),
            ok("e", after=["b"]),
            ok("f", condition=False),
        )
    )
    assert [e.seq for e in r.events] == list(range(1, len(r.events) + 1))
    assert r.events[0].event == "run_started" and r.events[-1].event == "run_finished"
    finished = [e.step for e in r.of("step_finished")]
    assert sorted(finished) == sorted(r.report.steps)
    assert all(e.run_id == r.report.run_id and e.ts.endswith("Z") for e in r.events)
    (fail,) = [e for e in r.of("step_finished") if e.step == "b"]
    assert fail.status == "recovered"
    for started in r.of("attempt_started"):
        assert any(
            f.step == started.step and f.attempt == started.attempt
            for f in r.of("attempt_finished")
        )


def test_report_is_a_fold_of_the_events(run: RunFn) -> None:
    from plait.runtime.events import event_from_dict
    from plait.runtime.report import ReportBuilder

    r = run(
        P(
            S("f", "std.flaky", fail_times=1, retry=retry(1, 0.0)),
            bad("o", optional=True),
            S("m", "std.echo", over=[1, 2], value=R("x")),
            outputs={"x": R("f.output.q")},
        )
    )
    builder = ReportBuilder()
    for e in r.events:
        builder.apply(event_from_dict(e.to_json_dict()))
    assert builder.report() == r.report
    assert r.report.reasons[-1].output == "x"


def test_attempt_log_keeps_the_last_20(run: RunFn) -> None:
    r = run(P(S("f", "std.flaky", fail_times=30, retry=retry(24, 0.0))))
    log = r.step("f").attempt_log
    assert len(log) == 20 and log[0].attempt == 6 and log[-1].attempt == 25


def test_no_threads_left_after_sync_tools(run: RunFn) -> None:
    run(P(*[S(f"e{i}", "tt.count") for i in range(20)]))
    deadline = time.monotonic() + 2
    while plait_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plait_threads() == []


def test_inputs_validation() -> None:
    from plait.runtime.api import parse_cli_inputs, validate_inputs

    plan = P(
        ok("a"),
        inputs={
            "n": "int",
            "f": ("float", 1.0),
            "b": ("bool", False),
            "l": ("list[int]", []),
            "d": ("dict", {}),
        },
    )
    got = parse_cli_inputs(plan, ["n=1_000", "b=YES", "l=[1,2]", "f=2"])
    assert got == {"n": 1000, "f": 2.0, "b": True, "l": [1, 2], "d": {}}
    for pairs, text in [
        (["n=x"], "`n`"),
        ([], "missing required input `n`"),
        (["nn=1"], "did you mean `n`"),
        (["n=1", "b=maybe"], "`b`"),
        (["n=1", 'l=["a"]'], "`l` must be list\\[int\\]"),
    ]:
        with pytest.raises(UserError, match=text):
            parse_cli_inputs(plan, pairs)
    with pytest.raises(UserError, match="`n` must be int"):
        validate_inputs(plan, {"n": True})


def test_literal_helpers_cover_lists() -> None:
    assert L([1, {"a": 2}]).node == "list"


def test_a_long_chain_leaves_the_loop_turns_for_other_work(run: RunFn) -> None:
    """A chain runs its next link in the finishing step's own task, but gives the event loop
    a turn every few links: a 10 ms sleep beside a 3,000-link chain (well over 10 ms at any
    speed this code runs at) ends while the chain is still going, not after it."""
    links = [ok("c0")] + [
        S(f"c{i}", "std.echo", value=R(f"c{i - 1}.output")) for i in range(1, 3000)
    ]
    ran = run(P(*links, S("nap", "std.sleep", seconds=0.01, value=1)))
    assert ran.report.outcome == "succeeded"
    finished = [e.step for e in ran.events if e.event == "step_finished"]
    assert finished.index("nap") < finished.index("c2999"), "the chain held the loop"
    assert ran.report.steps["c2999"].output == 1


@pytest.mark.parametrize("shape", ["fan-out", "roots"])
def test_a_wide_burst_of_ready_steps_starts_a_few_hundred_at_a_time(run: RunFn, shape: str) -> None:
    """3,000 steps made ready at once (by one root, or at the start) do not all get a task
    at once: at most a few hundred step tasks are alive while they run, and they still
    start in the order of the plan."""
    head = [ok("root")] if shape == "fan-out" else []
    value = R("root.output") if shape == "fan-out" else 1
    wide = [S(f"w{i}", "tt.tasks_alive", value=value) for i in range(3000)]
    ran = run(P(*head, *wide))
    assert ran.report.outcome == "succeeded"
    assert len(tt.TASKS_ALIVE) == 3000
    assert max(tt.TASKS_ALIVE) < 1000, max(tt.TASKS_ALIVE)  # not 3,000
    started = [e.step for e in ran.events if e.event == "step_started" and e.step != "root"]
    assert started == [f"w{i}" for i in range(3000)]


def test_a_deadline_while_a_burst_is_held_back_cancels_the_steps_not_started(
    run: RunFn,
) -> None:
    """Each call holds the loop 2 ms, so the first few hundred steps take ~0.5 s and the
    0.1 s deadline passes while most of the 2,000 are still waiting for their turn: those
    end `cancelled` with no attempt, like any step the deadline kept from starting."""
    wide = [S(f"w{i}", "tt.tasks_alive", value=i, hog_s=0.002) for i in range(2000)]
    ran = run(P(*wide, deadline_s=0.1))
    rep = ran.report
    assert rep.outcome == "failed" and rep.cancelled_by == "deadline"
    never = [s for s in rep.steps.values() if s.status == "cancelled" and s.attempts == 0]
    assert len(never) > 1000
    assert all(s.started_at is None for s in never)
    assert len(ran.of("step_finished")) == 2000
    assert {s.status for s in rep.steps.values()} <= {"succeeded", "cancelled"}


def test_the_step_states_are_let_go_before_the_report_is_built() -> None:
    """Once a run is over its report is built from the events alone: the steps' run state
    must be gone by then (without waiting for the collector: the run's helpers refer back
    to it), so a big run's report takes that memory instead of adding to it."""
    import asyncio
    import gc

    from plait.runtime.api import Runner
    from plait.runtime.report import ReportBuilder
    from plait.runtime.state import StepState

    plan = P(ok("root"), *[S(f"s{i}", "std.echo", value=R("root.output")) for i in range(300)])
    alive: list[int] = []

    class Counting(ReportBuilder):
        def report(self) -> Any:
            alive.append(sum(1 for o in gc.get_objects() if type(o) is StepState))
            return super().report()

    runner = Runner(plan, {}, environ={})
    runner.builder = Counting()
    was_enabled = gc.isenabled()
    gc.disable()  # (nothing may be freed by a collection: only by being let go)
    try:
        report = asyncio.run(runner.run())
    finally:
        if was_enabled:
            gc.enable()
    assert report.outcome == "succeeded" and len(report.steps) == 301
    assert alive == [0], f"{alive[0]} step states still alive when the report was built"
    assert runner.run_obj is None
