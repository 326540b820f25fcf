"""The pure failure-propagation rules of SPEC sections 4 and 6: trigger rules (with their
skip reasons and `caused_by`), the run outcome and its `reasons`.

No I/O and no scheduler: functions over statuses, so the runtime and a static analyser
(`plait explain --fail X`, later) apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plait.compiler.ir import TriggerRule

SUCCEEDED = "succeeded"
RECOVERED = "recovered"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
TERMINAL = frozenset({SUCCEEDED, RECOVERED, FAILED, SKIPPED, CANCELLED})

# Skip reasons (SPEC section 6).
CONDITION_FALSE = "condition_false"
UPSTREAM_FAILED = "upstream_failed"
UPSTREAM_SKIPPED = "upstream_skipped"
TRIGGER_NOT_MET = "trigger_not_met"
NOT_NEEDED = "not_needed"

# How a dependency counts for a trigger rule.
_OK = "succeeded"
_FAILED = "failed"
_SKIPPED = "skipped"


@dataclass(frozen=True)
class StepView:
    """What the rules need to know about one finished step."""

    name: str
    status: str
    reason: str | None = None
    optional: bool = False
    standby: bool = False
    kind: str | None = None  # the final error kind, if any
    fallback_used: str | None = None
    recovered_by_default: bool = False
    elements_failed: int | None = None  # map steps


_new_object = object.__new__


def step_view(name: str, status: str, reason: str | None, optional: bool, standby: bool,
              kind: str | None, fallback_used: str | None, recovered_by_default: bool,
              elements_failed: int | None) -> StepView:
    """`StepView(...)` with every field, without the frozen dataclass's per-field
    `object.__setattr__` (about 3x cheaper; the scheduler makes one per finished step)."""
    view = _new_object(StepView)
    view.__dict__.update(name=name, status=status, reason=reason, optional=optional,
                         standby=standby, kind=kind, fallback_used=fallback_used,
                         recovered_by_default=recovered_by_default,
                         elements_failed=elements_failed)
    return view


@dataclass(frozen=True)
class TriggerDecision:
    run: bool
    reason: str | None = None  # the skip reason when not run
    caused_by: str | None = None


def dep_class(dep: StepView) -> str:
    """`succeeded`, `failed` or `skipped` as trigger rules see a dependency (SPEC section 4).

    Failed means `failed`, `cancelled` (section 9) or skipped with `upstream_failed`.
    """
    if dep.status in (SUCCEEDED, RECOVERED):
        return _OK
    if dep.status in (FAILED, CANCELLED):
        return _FAILED
    if dep.status == SKIPPED and dep.reason == UPSTREAM_FAILED:
        return _FAILED
    return _SKIPPED


def _failed_optional(dep: StepView) -> bool:
    return dep.optional and dep.status == FAILED


def _skip_upstream(deps: Sequence[StepView]) -> TriggerDecision:
    """`upstream_failed` if any dependency failed (failure wins), else `upstream_skipped`;
    `caused_by` is the first causing dependency in the order given (definition order)."""
    failed = [d for d in deps if dep_class(d) == _FAILED]
    if failed:
        return TriggerDecision(False, UPSTREAM_FAILED, failed[0].name)
    skipped = [d for d in deps if dep_class(d) == _SKIPPED]
    return TriggerDecision(False, UPSTREAM_SKIPPED, skipped[0].name if skipped else None)


_RUN = TriggerDecision(True)  # shared: decisions are immutable, and made once per step


def trigger(rule: TriggerRule | str, deps: Sequence[StepView]) -> TriggerDecision:
    """Decide a step's trigger rule once every dependency is terminal (before `if`)."""
    if type(rule) is not TriggerRule:
        rule = TriggerRule(rule)
    if rule is TriggerRule.ALL_DONE:
        return _RUN
    if rule is TriggerRule.ALL_SUCCEEDED:
        if all(dep_class(d) == _OK or _failed_optional(d) for d in deps):
            return _RUN
        return _skip_upstream([d for d in deps if not _failed_optional(d)])
    if not deps:
        return TriggerDecision(False, TRIGGER_NOT_MET)
    if rule is TriggerRule.ANY_SUCCEEDED:
        if any(dep_class(d) == _OK for d in deps):
            return _RUN
        return _skip_upstream(deps)
    failed = [dep_class(d) == _FAILED for d in deps]
    met = any(failed) if rule is TriggerRule.ANY_FAILED else all(failed)
    return _RUN if met else TriggerDecision(False, TRIGGER_NOT_MET)


def run_outcome(steps: Sequence[StepView]) -> str:
    """`failed`, `degraded` or `succeeded` (SPEC section 6)."""
    degraded = False
    for s in steps:
        if s.standby:
            continue  # a standby's failure never decides the run by itself
        if s.status in (FAILED, CANCELLED):
            if not s.optional:
                return FAILED
            degraded = True
        elif s.status == RECOVERED:
            degraded = True
    return "degraded" if degraded else SUCCEEDED


def reasons(steps: Sequence[StepView]) -> list[dict[str, Any]]:
    """One entry per step that decides a degraded or failed outcome, in definition order."""
    out: list[dict[str, Any]] = []
    for s in steps:
        why = _why(s)
        if why is not None:
            out.append({"step": s.name, "status": s.status, "why": why, "kind": s.kind})
    return out


def _why(s: StepView) -> str | None:
    if s.standby:
        return None
    if s.status == RECOVERED:
        if s.fallback_used:
            return f"recovered by fallback `{s.fallback_used}`"
        if s.recovered_by_default:
            return "recovered by its default"
        if s.elements_failed:
            return f"{s.elements_failed} map element(s) failed within tolerance"
        return "recovered"
    if s.status not in (FAILED, CANCELLED):
        return None
    word = "failed" if s.status == FAILED else "cancelled"
    return f"optional step {word}" if s.optional else f"required step {word}"
