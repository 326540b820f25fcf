"""The pure outcome rules, and a randomised check of the scheduler against a small reference
model of SPEC sections 4 and 6 written independently here."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from plait.compiler.ir import TriggerRule
from plait.runtime import outcomes as o
from tests.runtime.conftest import RunFn
from tests.runtime.planlib import P, S, retry


def v(name: str, status: str, reason: str | None = None, optional: bool = False) -> o.StepView:
    return o.StepView(name=name, status=status, reason=reason, optional=optional)


def test_trigger_all_succeeded() -> None:
    assert o.trigger("all_succeeded", [v("a", "succeeded"), v("b", "recovered")]).run
    assert o.trigger("all_succeeded", [v("a", "failed", optional=True)]).run
    d = o.trigger("all_succeeded", [v("a", "skipped", "condition_false"), v("b", "failed")])
    assert (d.run, d.reason, d.caused_by) == (False, "upstream_failed", "b")
    d = o.trigger("all_succeeded", [v("a", "skipped", "trigger_not_met")])
    assert (d.reason, d.caused_by) == ("upstream_skipped", "a")
    # a skipped optional step is any skipped step; cancelled counts as failed
    d = o.trigger("all_succeeded", [v("a", "skipped", "upstream_failed", optional=True)])
    assert d.reason == "upstream_failed"
    assert o.trigger("all_succeeded", [v("a", "cancelled")]).reason == "upstream_failed"


def test_trigger_any_and_failure_rules() -> None:
    assert not o.trigger("any_succeeded", [v("a", "failed", optional=True)]).run
    assert o.trigger("any_succeeded", [v("a", "failed"), v("b", "recovered")]).run
    assert o.trigger("any_failed", [v("a", "skipped", "upstream_failed"), v("b", "succeeded")]).run
    assert not o.trigger("all_failed", [v("a", "failed"), v("b", "recovered")]).run
    assert o.trigger("all_failed", [v("a", "failed", optional=True), v("b", "cancelled")]).run
    assert o.trigger("all_failed", []).reason == "trigger_not_met"
    assert o.trigger("all_done", [v("a", "cancelled")]).run


def test_run_outcome() -> None:
    assert o.run_outcome([v("a", "succeeded"), v("b", "skipped", "condition_false")]) == (
        "succeeded"
    )
    assert o.run_outcome([v("a", "recovered")]) == "degraded"
    assert o.run_outcome([v("a", "cancelled", optional=True)]) == "degraded"
    assert o.run_outcome([v("a", "failed", optional=True), v("b", "cancelled")]) == "failed"
    standby = o.StepView(name="s", status="failed", standby=True)
    assert o.run_outcome([v("a", "recovered"), standby]) == "degraded"
    assert o.reasons([standby]) == []


# --- the randomised model check ---------------------------------------------------------------


@dataclass
class Gen:
    name: str
    deps: list[str]
    rule: str
    optional: bool
    behaviour: str  # ok | fail | flaky
    fail_times: int
    retries: int
    condition: bool


RULES = [r.value for r in TriggerRule]


def generate(rng: random.Random, n: int) -> list[Gen]:
    steps: list[Gen] = []
    for i in range(n):
        earlier = [s.name for s in steps]
        deps = rng.sample(earlier, k=min(len(earlier), rng.choice([0, 1, 1, 2, 3])))
        deps.sort(key=earlier.index)
        steps.append(
            Gen(
                name=f"s{i}",
                deps=deps,
                rule=rng.choice(RULES * 2 + ["all_succeeded"] * 4),
                optional=rng.random() < 0.3,
                behaviour=rng.choice(["ok", "ok", "fail", "flaky"]),
                fail_times=rng.randint(1, 3),
                retries=rng.randint(0, 2),
                condition=rng.random() > 0.1,
            )
        )
    return steps


def reference(steps: list[Gen]) -> tuple[dict[str, tuple[str, str | None]], str]:
    """SPEC 4/6 as directly as possible: statuses in definition order, then the outcome."""
    done: dict[str, tuple[str, str | None]] = {}
    optional = {s.name: s.optional for s in steps}

    def is_ok(d: str) -> bool:
        return done[d][0] in ("succeeded", "recovered")

    def is_failed(d: str) -> bool:
        st, why = done[d]
        return st in ("failed", "cancelled") or (st == "skipped" and why == "upstream_failed")

    for s in steps:
        deps = s.deps
        if s.rule == "all_done":
            met = True
        elif s.rule == "all_succeeded":
            met = all(is_ok(d) or (optional[d] and done[d][0] == "failed") for d in deps)
        elif s.rule == "none_failed":  # the extension: skipped dependencies are fine
            met = not any(
                is_failed(d) and not (optional[d] and done[d][0] == "failed") for d in deps
            )
        elif not deps:
            met = False
        elif s.rule == "any_succeeded":
            met = any(is_ok(d) for d in deps)
        elif s.rule == "any_failed":
            met = any(is_failed(d) for d in deps)
        else:
            met = all(is_failed(d) for d in deps)
        if not met:
            if s.rule in ("any_failed", "all_failed") or not deps:
                done[s.name] = ("skipped", "trigger_not_met")
            else:
                relevant = [
                    d
                    for d in deps
                    if not (
                        s.rule in ("all_succeeded", "none_failed")
                        and optional[d]
                        and done[d][0] == "failed"
                    )
                ]
                failed = any(is_failed(d) for d in relevant)
                done[s.name] = ("skipped", "upstream_failed" if failed else "upstream_skipped")
        elif not s.condition:
            done[s.name] = ("skipped", "condition_false")
        elif s.behaviour == "ok" or (s.behaviour == "flaky" and s.fail_times <= s.retries):
            done[s.name] = ("succeeded", None)
        else:
            done[s.name] = ("failed", None)
    outcome = "succeeded"
    for s in steps:
        st = done[s.name][0]
        if st == "failed" and not s.optional:
            return done, "failed"
        if st == "failed":
            outcome = "degraded"
    return done, outcome


def to_plan(steps: list[Gen]) -> P:  # type: ignore[valid-type]
    built = []
    for s in steps:
        common = dict(
            after=s.deps,
            when=TriggerRule(s.rule),
            optional=s.optional,
            retry=retry(s.retries, 0.0) if s.retries else None,
            condition=None if s.condition else False,
        )
        if s.behaviour == "ok":
            built.append(S(s.name, "std.echo", value=s.name, **common))
        elif s.behaviour == "fail":
            built.append(S(s.name, "std.fail", message="no", **common))
        else:
            built.append(S(s.name, "std.flaky", fail_times=s.fail_times, **common))
    return P(*built)


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_match_the_reference_model(run: RunFn, seed: int) -> None:
    rng = random.Random(seed)
    steps = generate(rng, rng.randint(3, 14))
    expected, outcome = reference(steps)
    r = run(to_plan(steps))
    got = {n: (s.status, s.reason) for n, s in r.report.steps.items()}
    assert got == expected
    assert r.report.outcome == outcome
    for s in steps:  # attempts follow from the behaviour for steps that ran
        st = r.report.steps[s.name]
        if st.status == "skipped":
            assert st.attempts == 0
        elif s.behaviour == "flaky":
            assert st.attempts == min(s.fail_times, s.retries) + 1
        elif s.behaviour == "fail":
            assert st.attempts == s.retries + 1  # tool_error is retried by default


def test_trigger_none_failed_joins_branches() -> None:
    """The extension `none_failed`: a skipped dependency does not skip the step."""
    assert o.trigger("none_failed", [v("a", "skipped", "condition_false"), v("b", "succeeded")]).run
    assert o.trigger("none_failed", [v("a", "skipped", "upstream_skipped")]).run
    assert o.trigger("none_failed", [v("a", "failed", optional=True)]).run
    assert o.trigger("none_failed", []).run
    d = o.trigger(
        "none_failed",
        [v("a", "succeeded"), v("b", "skipped", "upstream_failed"), v("c", "cancelled")],
    )
    assert (d.run, d.reason, d.caused_by) == (False, "upstream_failed", "b")
