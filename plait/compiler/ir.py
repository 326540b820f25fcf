"""The IR: the checked plan as pydantic models, the one thing the runtime reads.

Plan structure is position-free (positions live in `source.SourceMap`). Expressions are
typed trees; each node may carry its `span`, so run-time errors and checks can point at
the source and the round trip through JSON stays exact. `plait compile` prints
`CompiledPlan.model_dump(mode="json")`; `CompiledPlan.model_validate_json` loads it back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from plait.compiler.source import Span
from plait.errors import ErrorKind

IR_VERSION = 1

JsonValue = Any  # a JSON value: None, bool, int, float, str, list, dict


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


N = TypeVar("N", bound=BaseModel)


def shared_keys(model: N) -> N:
    """`model` with its fields held in a key-sharing dict (PEP 412); returns it.

    pydantic keeps a model's fields in its instance `__dict__`, and `model_construct`
    makes that a dict of its own: 832 bytes for a Step's 24 fields, 272 for an AttrExpr's
    6. Set as attributes on an instance without a dict, the same values go into a dict
    that shares its keys with every other instance of the class: 264 and 120 bytes (the
    values only). Same fields, same order, same values: nothing else changes. The
    compiler puts each model it builds without validation (steps, expressions) through
    here; a 10,000-step plan is ~8 MB smaller (bench/README.md, "Peak memory").

    The interpreter decides whether the keys are shared (CPython does, for instances of
    one class given the same names in the same order); where it does not, or the dict
    cannot be replaced, the model keeps a dict of its own, as before."""
    values = model.__dict__
    try:
        object.__delattr__(model, "__dict__")
    except (AttributeError, TypeError):
        return model
    items = iter(values.items())
    for name, value in items:
        object.__setattr__(model, name, value)  # the instance's dict, keys shared...
        break
    model.__dict__.update(items)  # ...and the other fields added to it in their order
    return model


# --- expressions ----------------------------------------------------------------------------


class _Expr(_Node):
    span: Span | None = None


class LiteralExpr(_Expr):
    """`42`, `"text"` without interpolation, `true`, `null`."""

    node: Literal["literal"] = "literal"
    value: str | int | float | bool | None


class ListExpr(_Expr):
    node: Literal["list"] = "list"
    items: list[Expr]


class DictEntry(_Node):
    key: str
    value: Expr
    key_span: Span | None = None


class DictExpr(_Expr):
    node: Literal["dict"] = "dict"
    entries: list[DictEntry]


class TemplateExpr(_Expr):
    """A string with `${...}`: literal text and expressions, joined at run time.

    Non-string values are written as compact JSON, null as `null` (SPEC section 9).
    """

    node: Literal["template"] = "template"
    parts: list[str | Expr]


class NameExpr(_Expr):
    """A bare name: an input, a step (read through a field), a map loop variable, or `run`."""

    node: Literal["name"] = "name"
    name: str


class EnvExpr(_Expr):
    """`env.NAME`: an environment variable read at run time (its value is masked)."""

    node: Literal["env"] = "env"
    name: str


class AttrExpr(_Expr):
    """`value.field`, or `value?.field` when `optional`."""

    node: Literal["attr"] = "attr"
    value: Expr
    field: str
    optional: bool = False
    field_span: Span | None = None


class IndexExpr(_Expr):
    """`value[index]`, or `value?[index]` when `optional`."""

    node: Literal["index"] = "index"
    value: Expr
    index: Expr
    optional: bool = False


class CallExpr(_Expr):
    """A built-in function call; only `len(x)` exists today."""

    node: Literal["call"] = "call"
    func: str
    args: list[Expr]


BinaryOp = Literal["??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in"]


class BinaryExpr(_Expr):
    node: Literal["binary"] = "binary"
    op: BinaryOp
    left: Expr
    right: Expr


class NotExpr(_Expr):
    node: Literal["not"] = "not"
    operand: Expr


Expr = Annotated[
    Union[  # noqa: UP007 - a discriminated union needs the Union form here
        LiteralExpr,
        ListExpr,
        DictExpr,
        TemplateExpr,
        NameExpr,
        EnvExpr,
        AttrExpr,
        IndexExpr,
        CallExpr,
        BinaryExpr,
        NotExpr,
    ],
    Field(discriminator="node"),
]

STEP_FIELDS = ("output", "status", "error", "attempts", "version", "read_at", "age")
LOOP_FIELDS = (*STEP_FIELDS, "iterations")  # a loop's fields (SPEC section 11)


def is_literal(expr: Expr) -> bool:
    """A value written out in full: a literal, or a list or dict of such (what an input's
    default may be)."""
    if isinstance(expr, LiteralExpr):
        return True
    if isinstance(expr, ListExpr):
        return all(is_literal(item) for item in expr.items)
    if isinstance(expr, DictExpr):
        return all(is_literal(entry.value) for entry in expr.entries)
    return False


# --- policies -------------------------------------------------------------------------------


class TriggerRule(StrEnum):
    ALL_SUCCEEDED = "all_succeeded"
    ALL_DONE = "all_done"
    ANY_SUCCEEDED = "any_succeeded"
    ANY_FAILED = "any_failed"
    ALL_FAILED = "all_failed"
    NONE_FAILED = "none_failed"  # an extension: no dependency failed (skipped ones are fine)


# Retried when `on` is not given: every kind but these (SPEC section 4, "Retry timing").
NOT_RETRIED_BY_DEFAULT = frozenset(
    {
        ErrorKind.PERMANENT,
        ErrorKind.INVALID_INPUT,
        ErrorKind.BREAKER_OPEN,
        ErrorKind.CANCELLED,
        ErrorKind.STALE,
        ErrorKind.LOOP_EXHAUSTED,
    }
)


class RetryPolicy(_Node):
    """`retry N [on KIND, ...] [backoff DUR [xFACTOR] [max DUR]] [jitter]`."""

    retries: int
    on: list[ErrorKind] | None = None
    backoff_s: float = 1.0
    factor: float = 1.0
    max_s: float | None = None
    jitter: bool = False

    def delay(self, k: int) -> float:
        """The wait before retry k (1-based), before jitter: min(MAX, BACKOFF * FACTOR^(k-1))."""
        try:
            d = self.backoff_s * self.factor ** (k - 1)
        except OverflowError:  # a factor like x1e300: the wait is past any deadline
            d = float("inf")
        return d if self.max_s is None else min(self.max_s, d)

    def retries_kind(self, kind: ErrorKind) -> bool:
        if self.on is None:
            return kind not in NOT_RETRIED_BY_DEFAULT
        if kind in self.on:
            return True
        return kind is ErrorKind.RATE_LIMITED and ErrorKind.TRANSIENT in self.on


class MapSpec(_Node):
    """`for VAR in OVER: ...`."""

    var: str
    over: Expr


class LoopSpec(_Node):
    """`loop NAME max N [until EXPR] [every DUR] { ... }` (SPEC section 11): the loop is a
    step of the plan whose `tool` is `loop`; its body steps carry `in_loop`."""

    max: int
    until: Expr | None = None
    every_s: float | None = None
    body: list[str] = []


class EdgeKind(StrEnum):
    DATA = "data"
    AFTER = "after"
    FALLBACK = "fallback"
    GUARD = "guard"  # from a guarded step to the step that guards it (SPEC section 10)
    UNDO = "undo"  # from a step to its compensation


class Step(_Node):
    """One step with its policies, `defaults` already applied (SPEC section 9)."""

    name: str
    tool: str
    args: dict[str, Expr] = {}
    map: MapSpec | None = None
    # Every step this one waits for: the steps it references (arguments, map list, `if`,
    # `default`) plus `after`, in the order the steps are defined in the file.
    depends_on: list[str] = []
    after: list[str] = []
    when: TriggerRule = TriggerRule.ALL_SUCCEEDED
    condition: Expr | None = None  # `if`
    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    fallback: list[str] = []
    # None means "no default"; `default null` is a LiteralExpr(value=None).
    default: Expr | None = None
    optional: bool = False
    uses: list[str] = []
    concurrency: int | None = None  # map steps only
    tolerate: float | None = None  # map steps only, a percentage 0..100
    # `max_output N`: the largest result (bytes of JSON) one call may return; None: the
    # plan's, else the runtime's default (16 MB)
    max_output: int | None = None
    # Set on a standby: the primary whose `fallback` (or `compensate`) names this step.
    standby_for: str | None = None
    # SPEC section 11: the preset this step calls (its `tool` and `args` are merged), the
    # loop whose body holds this step, and, on a loop, what it repeats.
    preset: str | None = None
    in_loop: str | None = None
    loop: LoopSpec | None = None
    # SPEC section 10: `fresh DUR` (seconds), `guard S, ...`, `compensate C`.
    fresh: float | None = None
    guard: list[str] = []
    compensate: str | None = None

    @property
    def is_map(self) -> bool:
        return self.map is not None

    @property
    def is_standby(self) -> bool:
        return self.standby_for is not None

    @property
    def is_loop(self) -> bool:
        return self.loop is not None

    def standbys(self) -> list[str]:
        """The steps this one is the primary of: its fallbacks, then its compensation."""
        return [*self.fallback, self.compensate] if self.compensate else list(self.fallback)


class Preset(_Node):
    """`tool NAME = TOOL(ARG = EXPR, ...) { timeout; retry; uses }` (SPEC section 11)."""

    name: str
    tool: str
    args: dict[str, Expr] = {}
    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    uses: list[str] = []
    depends_on: list[str] = []  # the steps its arguments read


class Defaults(_Node):
    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    uses: list[str] = []


class Rate(_Node):
    """`rate COUNT/PERIOD`: at most COUNT attempt starts in any sliding window of `per_s`."""

    count: float
    per_s: float


class BreakerPolicy(_Node):
    failures: int
    cooldown_s: float = 30.0


class Resource(_Node):
    name: str
    rate: Rate | None = None
    concurrency: int | None = None
    breaker: BreakerPolicy | None = None


INPUT_TYPES = ("str", "int", "float", "bool", "list", "dict", "any", "secret")


def list_item_type(type_name: str) -> str | None:
    """`T` of `list[T]`; None for any other type."""
    if type_name.startswith("list[") and type_name.endswith("]"):
        return type_name[5:-1].strip()
    return None


def is_input_type(type_name: str) -> bool:
    """One of INPUT_TYPES, or `list[T]` of one."""
    inner = list_item_type(type_name)
    return is_input_type(inner) if inner is not None else type_name in INPUT_TYPES


def fits_input_type(type_name: str, value: object) -> bool:
    """Whether a JSON value is of an input's declared type (the one check, used for
    defaults at compile time and for given inputs at run time). A bool is not a number;
    an int is a float."""
    inner = list_item_type(type_name)
    if inner is not None:
        return isinstance(value, list) and all(fits_input_type(inner, v) for v in value)
    if type_name in ("str", "secret"):
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name in ("int", "float"):
        number = int if type_name == "int" else (int, float)
        return isinstance(value, number) and not isinstance(value, bool)
    if type_name in ("list", "dict"):
        return isinstance(value, list if type_name == "list" else dict)
    return True  # any


class Input(_Node):
    name: str
    type: str  # one of INPUT_TYPES, or "list[T]"
    has_default: bool = False
    default: JsonValue = None

    @property
    def required(self) -> bool:
        return not self.has_default


class Output(_Node):
    name: str
    expr: Expr


class Use(_Node):
    """`use "pkg.module"` or `use "./tools.py"` (a path relative to the plan's folder)."""

    target: str


class Plan(_Node):
    """The checked plan. Dict fields keep the order items were written in the file."""

    version: int = IR_VERSION
    plan: str
    description: str | None = None
    inputs: dict[str, Input] = {}
    outputs: dict[str, Output] = {}
    resources: dict[str, Resource] = {}
    steps: dict[str, Step] = {}
    presets: dict[str, Preset] = {}
    deadline_s: float | None = None
    concurrency: int | None = None
    max_output: int | None = None  # plan-wide `max_output N` (bytes); None: 16 MB
    defaults: Defaults = Defaults()
    uses: list[Use] = []
    env: list[str] = []  # every `env.NAME` the plan reads
    edges: list[tuple[str, str, EdgeKind]] = []  # [from dependency, to dependant, kind]

    @property
    def graph(self) -> Any:
        """The plan's DAG, a `networkx.DiGraph` built from the plan as it is now: one node per
        step in file order, its policies as node attributes (`timeout_s`, `retry`, `uses`,
        `optional`, `standby_for`, ...); edges from dependency to dependant, and from a
        primary to its standby, each with `kind` (`data`, `after`, `fallback`, ...).
        For example `nx.descendants(plan.graph, "classify")`: what a change of `classify`
        reaches. (Typed `Any`: networkx ships no type information.)"""
        from plait.compiler.graph import build_graph

        return build_graph(self)


class CompiledPlan(Plan):
    """A plan plus where it came from: what `plait compile` writes and `plait run` reads."""

    source_path: str | None = None  # absolute path of the .agent file, for relative paths
    plan_sha256: str | None = None  # SHA-256 of the plan file's bytes as read


for _model in (
    ListExpr,
    DictEntry,
    DictExpr,
    TemplateExpr,
    AttrExpr,
    IndexExpr,
    CallExpr,
    BinaryExpr,
    NotExpr,
    MapSpec,
    LoopSpec,
    Step,
    Preset,
    Output,
    Plan,
    CompiledPlan,
):
    _model.model_rebuild()
