"""A safe evaluator over the IR's expression trees, with exactly the semantics of SPEC section 5.

No Python runs: the tree is walked node by node. Every failure is an `EvalError` whose message
names the expression (rendered back to plait syntax by `to_source`) and says why, e.g.
"`history.output` is null: `history` ended `failed` (optional)".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.compiler.expressions import to_source
from plait.compiler.functions import FunctionError, call_function, compact_json, json_type
from plait.compiler.ir import (
    STEP_FIELDS,
    AttrExpr,
    BinaryExpr,
    CallExpr,
    DictExpr,
    EnvExpr,
    Expr,
    IndexExpr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    NotExpr,
    TemplateExpr,
)

# Statuses whose output is readable; every other status reads as a null output (SPEC 9).
OUTPUT_STATUSES = frozenset({"succeeded", "recovered"})


@dataclass(slots=True)  # one per finished step, kept for the run: no per-instance dict
class StepView:
    """What an expression may see of a step: the fields `STEP.output/status/error/attempts`."""

    status: str  # succeeded | recovered | failed | skipped | cancelled | pending
    output: Any = None
    error: dict[str, Any] | None = None  # {kind, message}
    attempts: int = 0
    optional: bool = False
    reason: str | None = None  # the skip reason, for messages
    version: str | None = None  # SPEC section 10: null unless succeeded or recovered
    read_at: str | None = None  # ISO-8601 UTC: when the producing attempt ended
    read_at_s: float | None = None  # the same moment as seconds on the run's wall clock
    # a failed map as its compensation sees it: `output` lists the element outputs
    partial: bool = False


@dataclass
class Scope:
    """Everything a name can resolve to, in this order: loop variable, input, step, `run`."""

    inputs: Mapping[str, Any]
    steps: Mapping[str, StepView]
    env: Mapping[str, str]
    run_id: str
    loop: Mapping[str, Any] = field(default_factory=dict)
    # The run clock's wall time in seconds (for `STEP.age`); None: the system's.
    wall_s: Callable[[], float] | None = None


class EvalError(Exception):
    """An expression could not be evaluated; `message` names it and says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- values -----------------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    """SPEC truthiness: null, false, 0, 0.0, "", [] and {} are false; all else is true."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, str, list, dict, tuple)):
        return bool(value)
    return True


def to_json_text(value: Any) -> str:
    """A value as interpolation writes it: compact JSON, non-ASCII kept."""
    return compact_json(value)


def type_name(value: Any) -> str:
    """The JSON type name of a value, for messages."""
    return json_type(value)


def _a(value: Any) -> str:
    """`type_name` with an article: "a number", "an int"; null stays bare."""
    name = type_name(value)
    if name == "null":
        return "null"
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """`==` over JSON values: 1 == 1.0, a boolean never equals a number, deep for containers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if type_name(left) != type_name(right):
        return False
    return bool(left == right)


# --- evaluation -------------------------------------------------------------------------------


class _Short:
    """Marks a chain cut short by `?.` / `?[ ]` on null: the rest of the chain is null too."""


_SHORT = _Short()


def evaluate(expr: Expr, scope: Scope) -> Any:
    """The value of `expr` in `scope`; raises `EvalError` (and nothing else) when it has none."""
    value = _eval(expr, scope)
    return None if value is _SHORT else value


def _eval(expr: Expr, scope: Scope) -> Any:
    """Like `evaluate`, but a short-circuited postfix chain comes back as `_SHORT`."""
    handler = _HANDLERS.get(type(expr))
    if handler is None:  # pragma: no cover - the Expr union is closed
        raise EvalError(f"`{to_source(expr)}`: unknown expression")
    return handler(expr, scope)


def _eval_literal(expr: LiteralExpr, scope: Scope) -> Any:
    return expr.value


def _eval_list(expr: ListExpr, scope: Scope) -> Any:
    return [evaluate(item, scope) for item in expr.items]


def _eval_dict(expr: DictExpr, scope: Scope) -> Any:
    return {entry.key: evaluate(entry.value, scope) for entry in expr.entries}


def _eval_template(expr: TemplateExpr, scope: Scope) -> Any:
    pieces: list[str] = []
    for part in expr.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = evaluate(part, scope)
        pieces.append(value if isinstance(value, str) else to_json_text(value))
    return "".join(pieces)


def template_pieces(expr: TemplateExpr, scope: Scope) -> list[str | tuple[str]]:
    """An interpolated string evaluated part by part: its literal text as `str`, each
    `${...}` value as a 1-tuple of its text (as interpolation writes it), so a caller can
    tell data from text (`shell.run` passes data as arguments, never as shell text)."""
    pieces: list[str | tuple[str]] = []
    for part in expr.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = evaluate(part, scope)
        pieces.append((value if isinstance(value, str) else to_json_text(value),))
    return pieces


def _eval_name(expr: NameExpr, scope: Scope) -> Any:
    name = expr.name
    if name in scope.loop:
        return scope.loop[name]
    if name in scope.inputs:
        return scope.inputs[name]
    if name in scope.steps:
        raise EvalError(
            f"`{name}` is a step: read it through a field "
            f"(`{name}.output`, `.status`, `.error` or `.attempts`)"
        )
    if name == "run":
        raise EvalError("`run` is not a value: read `run.id`")
    raise EvalError(f"`{name}` is not an input, a step or a loop variable")


def _eval_env(expr: EnvExpr, scope: Scope) -> Any:
    if expr.name not in scope.env:
        raise EvalError(f"`env.{expr.name}`: environment variable {expr.name} is not set")
    return scope.env[expr.name]


def _step_of(expr: Expr, scope: Scope) -> str | None:
    """The step a bare name refers to, unless a loop variable or input shadows it."""
    if (
        isinstance(expr, NameExpr)
        and expr.name not in scope.loop
        and expr.name not in scope.inputs
        and expr.name in scope.steps
    ):
        return expr.name
    return None


def _is_run(expr: Expr, scope: Scope) -> bool:
    return (
        isinstance(expr, NameExpr)
        and expr.name == "run"
        and "run" not in scope.loop
        and "run" not in scope.inputs
        and "run" not in scope.steps
    )


def _eval_attr(expr: AttrExpr, scope: Scope) -> Any:
    step = _step_of(expr.value, scope)
    if step is not None:
        return _step_field(expr, step, scope.steps[step], scope)
    if _is_run(expr.value, scope):
        if expr.field == "id":
            return scope.run_id
        raise EvalError(f"`{to_source(expr)}`: `run` has only the field `id`")
    base = _eval(expr.value, scope)
    if base is _SHORT:
        return _SHORT
    if base is None:
        if expr.optional:
            return _SHORT
        raise _null_error(expr.value, scope, f"cannot read `.{expr.field}` of null")
    if not isinstance(base, dict):
        raise EvalError(f"`{to_source(expr)}`: cannot read field `{expr.field}` of {_a(base)}")
    if expr.field in base:
        return base[expr.field]
    if expr.optional:
        return _SHORT
    raise EvalError(f'`{to_source(expr)}`: no key "{expr.field}" in the dict {_keys_hint(base)}')


def _age(view: StepView, scope: Scope) -> float | None:
    """Seconds since `read_at` on the run's wall clock, never below 0 (SPEC section 10)."""
    if view.read_at_s is None or view.status not in OUTPUT_STATUSES:
        return None
    now = scope.wall_s() if scope.wall_s is not None else time.time()
    return round(max(0.0, now - view.read_at_s), 6)


def _step_field(expr: AttrExpr, name: str, view: StepView, scope: Scope) -> Any:
    if expr.field == "output":
        return view.output if view.status in OUTPUT_STATUSES or view.partial else None
    if expr.field == "status":
        return view.status
    if expr.field == "error":
        return view.error
    if expr.field == "attempts" or expr.field == "iterations":
        return view.attempts
    if expr.field == "version":
        return view.version if view.status in OUTPUT_STATUSES else None
    if expr.field == "read_at":
        return view.read_at if view.status in OUTPUT_STATUSES else None
    if expr.field == "age":
        return _age(view, scope)
    fields = ", ".join(STEP_FIELDS)
    raise EvalError(f"`{to_source(expr)}`: a step has no field `{expr.field}` (it has {fields})")


def _keys_hint(value: dict[str, Any]) -> str:
    if not value:
        return "(it is empty)"
    keys = list(value)
    shown = ", ".join(str(k) for k in keys[:8])
    return f"(keys: {shown}{', ...' if len(keys) > 8 else ''})"


def _null_error(null_expr: Expr, scope: Scope, fallback_why: str) -> EvalError:
    """The error for reading into a null value, saying where the null came from."""
    why = fallback_why
    if isinstance(null_expr, AttrExpr):
        step = _step_of(null_expr.value, scope)
        if step is not None:
            why = _step_null_why(step, scope.steps[step], null_expr.field)
    return EvalError(f"`{to_source(null_expr)}` is null: {why}")


def _step_null_why(name: str, view: StepView, field_name: str) -> str:
    if field_name == "output" and view.status in OUTPUT_STATUSES:
        return f"`{name}` returned null"
    notes = [note for note in ("optional" if view.optional else None, view.reason) if note]
    suffix = f" ({', '.join(notes)})" if notes else ""
    return f"`{name}` ended `{view.status}`{suffix}"


def _eval_index(expr: IndexExpr, scope: Scope) -> Any:
    if _step_of(expr.value, scope) is not None or _is_run(expr.value, scope):
        name = to_source(expr.value)
        raise EvalError(
            f"`{to_source(expr)}`: `{name}` cannot be indexed; "
            f"read it through a field such as `{name}.output`"
        )
    base = _eval(expr.value, scope)
    if base is _SHORT:
        return _SHORT
    index = evaluate(expr.index, scope)
    if base is None:
        if expr.optional:
            return _SHORT
        raise _null_error(expr.value, scope, f"cannot index null with [{to_json_text(index)}]")
    if isinstance(base, dict):
        return _index_dict(expr, base, index)
    if isinstance(base, (list, tuple, str)):
        return _index_sequence(expr, base, index)
    raise EvalError(f"`{to_source(expr)}`: cannot index {_a(base)}")


def _index_dict(expr: IndexExpr, base: dict[str, Any], key: Any) -> Any:
    if not isinstance(key, str):
        raise EvalError(f"`{to_source(expr)}`: a dict is indexed by a string key, not {_a(key)}")
    if key in base:
        return base[key]
    if expr.optional:
        return _SHORT
    raise EvalError(
        f"`{to_source(expr)}`: no key {to_json_text(key)} in the dict {_keys_hint(base)}"
    )


def _index_sequence(expr: IndexExpr, base: list[Any] | tuple[Any, ...] | str, index: Any) -> Any:
    kind = "string" if isinstance(base, str) else "list"
    if isinstance(index, float) and index.is_integer():
        index = int(index)  # a JSON number such as 2.0 is a fine index
    if not isinstance(index, int) or isinstance(index, bool):
        raise EvalError(f"`{to_source(expr)}`: a {kind} is indexed by an integer, not {_a(index)}")
    size = len(base)
    if -size <= index < size:
        return base[index]
    if expr.optional:
        return _SHORT
    where = "past the end" if index >= 0 else "before the start"
    of_what = f"a list of {size}" if kind == "list" else f"a string of {size} characters"
    raise EvalError(f"`{to_source(expr)}`: index {index} is {where} of {of_what}")


def _eval_call(expr: CallExpr, scope: Scope) -> Any:
    args = [evaluate(arg, scope) for arg in expr.args]
    try:
        return call_function(expr.func, args)
    except FunctionError as exc:
        raise EvalError(f"`{to_source(expr)}`: {exc}") from None


def _eval_not(expr: NotExpr, scope: Scope) -> Any:
    return not truthy(evaluate(expr.operand, scope))


def _eval_binary(expr: BinaryExpr, scope: Scope) -> Any:
    op = expr.op
    if op == "??":
        left = _eval_coalesce_left(expr.left, scope)
        return left if left is not None else evaluate(expr.right, scope)
    if op == "or":
        return truthy(evaluate(expr.left, scope)) or truthy(evaluate(expr.right, scope))
    if op == "and":
        return truthy(evaluate(expr.left, scope)) and truthy(evaluate(expr.right, scope))
    left = evaluate(expr.left, scope)
    right = evaluate(expr.right, scope)
    return _compare(expr, left, right)


def _eval_coalesce_left(left: Expr, scope: Scope) -> Any:
    """`env.NAME ?? VALUE` reads an unset variable as null (SPEC 9: it is then not required)."""
    if isinstance(left, EnvExpr):
        return scope.env.get(left.name)
    return evaluate(left, scope)


def _compare(expr: BinaryExpr, left: Any, right: Any) -> bool:
    op = expr.op
    if op == "==":
        return json_equal(left, right)
    if op == "!=":
        return not json_equal(left, right)
    if op == "in":
        return _contains(expr, right, left)
    if op == "not in":
        return not _contains(expr, right, left)
    return _order(expr, left, right)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _order(expr: BinaryExpr, left: Any, right: Any) -> bool:
    comparable = (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not comparable:
        raise EvalError(f"`{to_source(expr)}`: cannot order {_a(left)} against {_a(right)}")
    return _ORDER[expr.op](left, right)


def _contains(expr: BinaryExpr, container: Any, item: Any) -> bool:
    if isinstance(container, (list, tuple)):
        return any(json_equal(item, element) for element in container)
    if isinstance(container, dict):
        return isinstance(item, str) and item in container
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvalError(f"`{to_source(expr)}`: cannot look for {_a(item)} in a string")
        return item in container
    raise EvalError(
        f"`{to_source(expr)}`: `in` needs a list, dict or string on its right, not {_a(container)}"
    )


_HANDLERS: dict[type, Callable[[Any, Scope], Any]] = {
    LiteralExpr: _eval_literal,
    ListExpr: _eval_list,
    DictExpr: _eval_dict,
    TemplateExpr: _eval_template,
    NameExpr: _eval_name,
    EnvExpr: _eval_env,
    AttrExpr: _eval_attr,
    IndexExpr: _eval_index,
    CallExpr: _eval_call,
    BinaryExpr: _eval_binary,
    NotExpr: _eval_not,
}
