"""The pure failure-propagation rules of SPEC sections 4 and 6: trigger rules (with their
skip reasons and `caused_by`), the run outcome and its `reasons`.

No I/O and no scheduler: functions over statuses, so the runtime and a static analyser
(`plait explain --fail X`, later) apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

from plait.compiler.ir import TriggerRule
from plait.errors import ErrorKind
from plait.runtime.policies.retry import RetryVerdict


class StepStatus(StrEnum):
    """A finished step's status (SPEC section 6)."""

    SUCCEEDED = "succeeded"
    RECOVERED = "recovered"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StepProgress(StrEnum):
    """What a report of an unfinished run says of a step that has not finished yet."""

    RUNNING = "running"
    PENDING = "pending"
    UNFINISHED = "unfinished"  # was running when its run's process died (killed, crashed)


class SkipReason(StrEnum):
    """Why a step was skipped (SPEC section 6)."""

    CONDITION_FALSE = "condition_false"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_SKIPPED = "upstream_skipped"
    TRIGGER_NOT_MET = "trigger_not_met"
    NOT_NEEDED = "not_needed"


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    DEGRADED = "degraded"
    FAILED = "failed"


class CancelReason(StrEnum):
    """What cancelled a run (`cancelled_by`)."""

    DEADLINE = "deadline"
    SIGNAL = "signal"


class AttemptStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RecoveredBy(StrEnum):
    """What rescued a `recovered` step."""

    FALLBACK = "fallback"
    DEFAULT = "default"
    TOLERANCE = "tolerance"  # a map whose failed elements stayed within `tolerate`
    BODY = "body"  # a loop whose body had a step recovered, or an optional one failed


# The names the rules below are written with.
SUCCEEDED = StepStatus.SUCCEEDED
RECOVERED = StepStatus.RECOVERED
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
CANCELLED = StepStatus.CANCELLED
TERMINAL = frozenset(StepStatus)
CONDITION_FALSE = SkipReason.CONDITION_FALSE
UPSTREAM_FAILED = SkipReason.UPSTREAM_FAILED
UPSTREAM_SKIPPED = SkipReason.UPSTREAM_SKIPPED
TRIGGER_NOT_MET = SkipReason.TRIGGER_NOT_MET
NOT_NEEDED = SkipReason.NOT_NEEDED


@dataclass(slots=True, kw_only=True)
class StepOutcome:
    """How a step ended: made once when it finishes, then shared by the scheduler's state,
    the `step_finished` event and the report fold (one value, not the same fields copied
    three times). `kind`/`message`/`retry` are the final error of the step's own attempts,
    also for a recovered step."""

    status: StepStatus
    reason: SkipReason | None = None
    caused_by: str | None = None
    attempts: int = 0
    output: Any = None
    kind: ErrorKind | None = None
    message: str | None = None
    retry: RetryVerdict | None = None
    fallback_used: str | None = None
    recovered_by: RecoveredBy | None = None
    elements: dict[str, Any] | None = None
    # SPEC section 10: the output's version and when the attempt producing it ended.
    version: str | None = None
    read_at: str | None = None


def outcome_from_fields(given: Mapping[str, Any]) -> StepOutcome:
    """A StepOutcome from its fields given one by one (a `StepFinished(status=...)`);
    strings become the closed enums, so an unknown status, reason or field is refused."""
    unknown = set(given) - _OUTCOME_FIELDS
    if unknown:
        raise TypeError(f"StepOutcome has no field {sorted(unknown)[0]!r}")
    return StepOutcome(
        status=StepStatus(given["status"]),
        reason=_enum(SkipReason, given.get("reason")),
        caused_by=given.get("caused_by"),
        attempts=int(given.get("attempts") or 0),
        output=given.get("output"),
        kind=_enum(ErrorKind, given.get("kind")),
        message=given.get("message"),
        retry=_enum(RetryVerdict, given.get("retry")),
        fallback_used=given.get("fallback_used"),
        recovered_by=_enum(RecoveredBy, given.get("recovered_by")),
        elements=given.get("elements"),
        version=given.get("version"),
        read_at=given.get("read_at"),
    )


_OUTCOME_FIELDS = frozenset(f.name for f in fields(StepOutcome))
_Enum = TypeVar("_Enum", bound=StrEnum)


def _enum(cls: type[_Enum], value: Any) -> _Enum | None:
    return None if value is None else cls(value)


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


def step_view(
    name: str,
    status: str,
    reason: str | None,
    optional: bool,
    standby: bool,
    kind: str | None,
    fallback_used: str | None,
    recovered_by_default: bool,
    elements_failed: int | None,
) -> StepView:
    """`StepView(...)` with every field, without the frozen dataclass's per-field
    `object.__setattr__` (about 3x cheaper; the scheduler makes one per finished step)."""
    view = _new_object(StepView)
    view.__dict__.update(
        name=name,
        status=status,
        reason=reason,
        optional=optional,
        standby=standby,
        kind=kind,
        fallback_used=fallback_used,
        recovered_by_default=recovered_by_default,
        elements_failed=elements_failed,
    )
    return view


@dataclass(frozen=True)
class TriggerDecision:
    run: bool
    reason: SkipReason | None = None  # the skip reason when not run
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
    if rule is TriggerRule.NONE_FAILED:  # like all_succeeded, but a skipped dependency is fine
        culprit = next(
            (d for d in deps if dep_class(d) == _FAILED and not _failed_optional(d)), None
        )
        return _RUN if culprit is None else TriggerDecision(False, UPSTREAM_FAILED, culprit.name)
    if not deps:
        return TriggerDecision(False, TRIGGER_NOT_MET)
    if rule is TriggerRule.ANY_SUCCEEDED:
        if any(dep_class(d) == _OK for d in deps):
            return _RUN
        return _skip_upstream(deps)
    failed = [dep_class(d) == _FAILED for d in deps]
    met = any(failed) if rule is TriggerRule.ANY_FAILED else all(failed)
    return _RUN if met else TriggerDecision(False, TRIGGER_NOT_MET)


def run_outcome(steps: Sequence[StepView]) -> RunOutcome:
    """`failed`, `degraded` or `succeeded` (SPEC section 6)."""
    degraded = False
    for s in steps:
        if s.standby:
            continue  # a standby's failure never decides the run by itself
        if s.status in (FAILED, CANCELLED):
            if not s.optional:
                return RunOutcome.FAILED
            degraded = True
        elif s.status == RECOVERED:
            degraded = True
    return RunOutcome.DEGRADED if degraded else RunOutcome.SUCCEEDED


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
