"""Run state: what the scheduler knows about each step while a run goes on, and the checks
made before any step starts (environment variables read by the plan).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.compiler.expressions import children
from plait.compiler.ir import (
    BinaryExpr,
    EnvExpr,
    Expr,
    LiteralExpr,
    Plan,
    Step,
)
from plait.errors import ErrorKind, UserError
from plait.runtime import outcomes
from plait.runtime.clock import iso_from_seconds
from plait.runtime.expressions import StepView as ExprStepView
from plait.runtime.policies.retry import RetryVerdict


@dataclass
class CallResult:
    """The end of one call unit (a step's own attempts, or one map element's)."""

    ok: bool
    value: Any = None
    kind: str | None = None
    message: str | None = None
    retry: str | None = None  # exhausted | not_retryable | deadline, when not ok
    hint_s: float | None = None
    injected: bool = False
    # SPEC section 10, when ok: the version the tool gave (None: the output's hash, made
    # when needed) and the run clock's wall time (seconds) when the attempt ended.
    version: str | None = None
    read_at_s: float | None = None
    stale_source: str | None = None  # `plait.Stale(source=...)`, when not ok
    # a `stale` failure found by a guard's probe: {guarded step: (old version, new version)}
    probed: dict[str, tuple[str | None, str | None]] | None = None
    # when ok, on a step whose read may be probed: (tool spec, validated arguments)
    call: tuple[Any, dict[str, Any]] | None = None
    attempts: int = 0  # the attempts it took (a map element's, for its checkpoint)


@dataclass(slots=True)
class StepState:
    """One step's run state; `status` is None until the step is terminal, and `outcome`
    holds how it ended once it did (`make_outcome`)."""

    step: Step
    pending: int = 0  # dependencies not yet terminal
    status: outcomes.StepStatus | None = None
    reason: outcomes.SkipReason | None = None
    caused_by: str | None = None
    attempts: int = 0
    output: Any = None
    kind: str | None = None
    message: str | None = None
    retry: str | None = None
    fallback_used: str | None = None
    recovered_by: str | None = None
    elements: dict[str, Any] | None = None
    # SPEC section 10: the version of the output, and when the attempt that produced it
    # ended (wall-clock seconds); both None without an output.
    version: str | None = None
    read_at_s: float | None = None
    decision: int = 1  # the idempotency key's `#N` from the second decision on
    # SPEC section 11: a body step's iteration and the `loop.*` names in its scope; on a
    # loop that failed by a body step, that step (its `caused_by`).
    iteration: int | None = None
    loop_scope: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None
    execution: int = 1  # SPEC section 10: running a step again is a new execution
    finish_seq: int = 0  # the order of the event that finished it (compensations: latest first)
    started: bool = False  # step_started was emitted
    resumed: bool = False  # seeded with a result recorded by an earlier session
    finished: bool = False  # the scheduler's `_finish` ran: step_finished was emitted
    # SPEC section 10: the call that produced the output (a guard probes it again), and a
    # failed map's element outputs (null for failed ones; its compensation reads them).
    read_call: tuple[Any, dict[str, Any]] | None = None
    partial: list[Any] | None = None
    # Read per attempt and per decision, so worked out once: the step's name, its distinct
    # dependencies, the resources it uses (sorted: the order slots are taken in), and its
    # views once it is finished (made on first use: most steps are read by one dependant
    # or none, and a succeeded step never by the outcome rules).
    name: str = field(init=False)
    deps: tuple[str, ...] = field(init=False)  # tuples of strings: the GC stops tracking them
    uses: tuple[str, ...] = field(init=False)
    final_view: outcomes.StepView | None = field(default=None, init=False)
    expression_view: ExprStepView | None = field(default=None, init=False)
    # The arguments when every one is a literal (evaluated once, not per attempt), or None.
    literal_args: dict[str, Any] | None = field(init=False)
    outcome: outcomes.StepOutcome | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # one StepState per step before the run starts: the common shapes (no resources,
        # at most one dependency) skip the de-duplication, and the arguments are read once
        step = self.step
        self.name = step.name
        deps = step.depends_on
        self.deps = tuple(dict.fromkeys(deps)) if len(deps) > 1 else tuple(deps)
        uses = step.uses
        self.uses = tuple(sorted(set(uses))) if uses else ()
        literals: dict[str, Any] = {}
        for name, expr in step.args.items():
            if not isinstance(expr, LiteralExpr):
                self.literal_args = None
                break
            literals[name] = expr.value
        else:
            self.literal_args = literals

    @property
    def read_at(self) -> str | None:
        """`read_at` as ISO-8601 UTC text (SPEC section 10), or None."""
        return None if self.read_at_s is None else iso_from_seconds(self.read_at_s)

    @property
    def done(self) -> bool:
        return self.status is not None

    def make_outcome(self) -> outcomes.StepOutcome:
        """How the (terminal) step ended, as the one value its state, its `step_finished`
        and the report share; the working fields' text becomes the closed enums."""
        assert self.status is not None
        kind, retry, recovered_by = self.kind, self.retry, self.recovered_by
        return outcomes.StepOutcome(
            status=self.status,
            reason=self.reason,
            caused_by=self.caused_by,
            attempts=self.attempts,
            output=self.output,
            kind=None if kind is None else ErrorKind(kind),
            message=self.message,
            retry=None if retry is None else RetryVerdict(retry),
            fallback_used=self.fallback_used,
            recovered_by=None if recovered_by is None else outcomes.RecoveredBy(recovered_by),
            elements=self.elements,
            version=self.version,
            read_at=self.read_at,
        )

    def view(self) -> outcomes.StepView:
        return outcomes.step_view(
            self.name,
            self.status or "",
            self.reason,
            self.step.optional,
            self.step.is_standby,
            self.kind,
            self.fallback_used,
            self.recovered_by == "default",
            (self.elements or {}).get("failed"),
        )

    def outcome_view(self) -> outcomes.StepView:
        """The finished step as the outcome rules see it (made once)."""
        view = self.final_view
        if view is None:
            view = self.final_view = self.view()
        return view

    def for_expressions(self) -> ExprStepView:
        """The finished step as expressions see it: `STEP.output/status/error/attempts`."""
        view = self.expression_view
        if view is None:
            error = (
                None if self.kind is None else {"kind": self.kind, "message": self.message or ""}
            )
            view = self.expression_view = ExprStepView(
                status=self.status or "",
                output=self.output,
                error=error,
                attempts=self.attempts,
                optional=self.step.optional,
                reason=self.reason,
                version=self.version,
                read_at=self.read_at,
                read_at_s=self.read_at_s,
            )
        return view


class FinishedSteps(Mapping[str, ExprStepView]):
    """The steps an expression may read (the finished ones), viewed on demand: a run
    builds no expression view for a step nothing reads."""

    __slots__ = ("_states",)

    def __init__(self, states: Mapping[str, StepState]) -> None:
        self._states = states

    def __getitem__(self, name: str) -> ExprStepView:
        st = self._states.get(name)
        if st is None or not st.finished:
            raise KeyError(name)
        return st.for_expressions()

    def __contains__(self, name: object) -> bool:
        st = self._states.get(name) if isinstance(name, str) else None
        return st is not None and st.finished

    def __iter__(self) -> Iterator[str]:
        return (name for name, st in self._states.items() if st.finished)

    def __len__(self) -> int:
        return sum(1 for st in self._states.values() if st.finished)


# --- environment variables ------------------------------------------------------------------


def unguarded_env_reads(expr: Expr) -> Iterator[str]:
    """Names of `env.X` read where an unset variable is an error: every read except the
    left side of a `??` (decided on the IR: an EnvExpr that is directly that left side)."""
    if isinstance(expr, EnvExpr):
        yield expr.name
        return
    for child in children(expr):
        if (
            isinstance(expr, BinaryExpr)
            and expr.op == "??"
            and child is expr.left
            and isinstance(child, EnvExpr)
        ):
            continue
        yield from unguarded_env_reads(child)


def step_exprs(step: Step) -> Iterator[Expr]:
    yield from step.args.values()
    if step.map is not None:
        yield step.map.over
    if step.condition is not None:
        yield step.condition
    if step.default is not None:
        yield step.default


def check_env(plan: Plan, environ: Mapping[str, str]) -> dict[str, str]:
    """The values of every set `env.NAME` the plan reads (unset ones guarded by `??` are
    left out, and read as null).

    Raises UserError naming each unset variable and the steps (or outputs) that read it.
    """
    readers: dict[str, list[str]] = {}
    for step in plan.steps.values():
        for expr in step_exprs(step):
            for name in unguarded_env_reads(expr):
                _add(readers, name, f"step `{step.name}`")
    for out in plan.outputs.values():
        for name in unguarded_env_reads(out.expr):
            _add(readers, name, f"output `{out.name}`")
    missing = [n for n in readers if n not in environ]
    if missing:
        lines = [
            f"environment variable {n} is not set (read by {', '.join(readers[n])})"
            for n in missing
        ]
        raise UserError("; ".join(lines))
    names = list(dict.fromkeys([*plan.env, *readers]))
    return {n: environ[n] for n in names if n in environ}


def _add(readers: dict[str, list[str]], name: str, who: str) -> None:
    lst = readers.setdefault(name, [])
    if who not in lst:
        lst.append(who)
