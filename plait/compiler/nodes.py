"""The syntax tree: what the file says, as frozen dataclasses with spans, before lowering.

Expressions are not duplicated here: the transformer builds the IR expression models
(`plait.compiler.ir.LiteralExpr`, `NameExpr`, ...) directly, with their `span` set.
Policies stay a list in source order, so lowering can report one given twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plait.compiler.ir import Expr
from plait.compiler.source import Span


@dataclass(frozen=True, slots=True)
class Ident:
    """A name as written (step, input, resource, argument, rule, error kind, ...)."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Duration:
    """`30s`, `1m30s`; `seconds` is None when the text was malformed (already reported)."""

    text: str
    seconds: float | None
    span: Span


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    name: Ident
    value: Expr


@dataclass(frozen=True, slots=True)
class Call:
    """`TOOL(ARG = EXPR, ...)`; `tool` is the dotted tool name."""

    tool: Ident
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class MapCall:
    """`for VAR in OVER: CALL`."""

    var: Ident
    over: Expr
    call: Call
    span: Span


@dataclass(frozen=True, slots=True)
class AfterPolicy:
    keyword: ClassVar[str] = "after"
    targets: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class WhenPolicy:
    keyword: ClassVar[str] = "when"
    rule: Ident  # validated by the transformer; lowering skips an unknown one
    span: Span


@dataclass(frozen=True, slots=True)
class IfPolicy:
    keyword: ClassVar[str] = "if"
    condition: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    keyword: ClassVar[str] = "timeout"
    duration: Duration
    span: Span


@dataclass(frozen=True, slots=True)
class RetryNode:
    """`retry N [on KIND, ...] [backoff DUR [xFACTOR] [max DUR]] [jitter]`."""

    keyword: ClassVar[str] = "retry"
    retries: int
    on: tuple[Ident, ...] | None
    backoff: Duration | None
    factor: float | None
    max: Duration | None
    jitter: bool
    span: Span


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    keyword: ClassVar[str] = "fallback"
    targets: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DefaultPolicy:
    keyword: ClassVar[str] = "default"
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class OptionalPolicy:
    keyword: ClassVar[str] = "optional"
    span: Span


@dataclass(frozen=True, slots=True)
class UsesPolicy:
    keyword: ClassVar[str] = "uses"
    targets: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ConcurrencyPolicy:
    keyword: ClassVar[str] = "concurrency"
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class TolerancePolicy:
    keyword: ClassVar[str] = "tolerate"
    percent: float
    span: Span


@dataclass(frozen=True, slots=True)
class MaxOutputPolicy:
    """`max_output 16MB`: the largest result one call may return (bytes of JSON)."""

    keyword: ClassVar[str] = "max_output"
    size: int
    span: Span


@dataclass(frozen=True, slots=True)
class FreshPolicy:
    """`fresh DUR`: the output is good for DUR (SPEC section 10)."""

    keyword: ClassVar[str] = "fresh"
    duration: Duration
    span: Span


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """`guard S, ...`: check the guarded steps' data before each attempt (SPEC section 10)."""

    keyword: ClassVar[str] = "guard"
    targets: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class CompensatePolicy:
    """`compensate C`: run standby C to undo this step if the run fails (SPEC section 10)."""

    keyword: ClassVar[str] = "compensate"
    target: Ident
    span: Span


PolicyNode = (
    AfterPolicy
    | WhenPolicy
    | IfPolicy
    | TimeoutPolicy
    | RetryNode
    | FallbackPolicy
    | DefaultPolicy
    | OptionalPolicy
    | UsesPolicy
    | ConcurrencyPolicy
    | TolerancePolicy
    | FreshPolicy
    | GuardPolicy
    | CompensatePolicy
)


@dataclass(frozen=True, slots=True)
class StepNode:
    """`step NAME = CALL [{ POLICY* }]`; a map step when `map` is set (`call` is then its body)."""

    name: Ident
    call: Call
    map: MapCall | None
    policies: tuple[PolicyNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LoopNode:
    """`loop NAME max N [until EXPR] [every DUR] { POLICY* step* }` (SPEC section 11)."""

    name: Ident
    max: int
    max_span: Span
    until: Expr | None
    every: Duration | None
    policies: tuple[PolicyNode, ...]
    body: tuple[StepNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PresetNode:
    """`tool NAME = TOOL(ARG = EXPR, ...) [{ POLICY* }]` (SPEC section 11)."""

    name: Ident
    call: Call
    policies: tuple[PolicyNode, ...]
    span: Span


# --- plan items -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRef:
    """`str`, `list[int]`: `text` is the type as one string."""

    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class InputNode:
    name: Ident
    type: TypeRef
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class OutputNode:
    name: Ident
    expr: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class UseNode:
    target: str
    span: Span


@dataclass(frozen=True, slots=True)
class DeadlineNode:
    duration: Duration
    span: Span


@dataclass(frozen=True, slots=True)
class PlanConcurrencyNode:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class PlanMaxOutputNode:
    size: int
    span: Span


@dataclass(frozen=True, slots=True)
class DefaultsNode:
    policies: tuple[PolicyNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class RateNode:
    keyword: ClassVar[str] = "rate"
    count: float | None  # None: malformed, already reported
    per_s: float | None
    span: Span


@dataclass(frozen=True, slots=True)
class ResourceConcurrencyNode:
    keyword: ClassVar[str] = "concurrency"
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class BreakerNode:
    keyword: ClassVar[str] = "breaker"
    failures: int
    cooldown: Duration | None
    span: Span


ResourceSetting = RateNode | ResourceConcurrencyNode | BreakerNode


@dataclass(frozen=True, slots=True)
class ResourceNode:
    name: Ident
    settings: tuple[ResourceSetting, ...]
    span: Span


PlanItem = (
    UseNode
    | InputNode
    | OutputNode
    | DeadlineNode
    | PlanConcurrencyNode
    | PlanMaxOutputNode
    | DefaultsNode
    | ResourceNode
    | StepNode
    | LoopNode
    | PresetNode
)


@dataclass(frozen=True, slots=True)
class PlanNode:
    """`plan NAME ["description"] { ITEM* }`: items in source order."""

    name: Ident
    description: str | None
    items: tuple[PlanItem, ...]
    span: Span
