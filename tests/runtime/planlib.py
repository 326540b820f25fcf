"""Build compiled plans tersely in tests, without the compiler.

`P(S("a", "std.echo", value=1), S("b", "std.echo", value=R("a.output")))` gives a
CompiledPlan with `depends_on` and `standby_for` filled in like the compiler does.
"""

from __future__ import annotations

from typing import Any

from plait.compiler.expressions import children
from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CompiledPlan,
    DictEntry,
    DictExpr,
    EnvExpr,
    Expr,
    IndexExpr,
    Input,
    ListExpr,
    LiteralExpr,
    MapSpec,
    NameExpr,
    Output,
    Resource,
    RetryPolicy,
    Step,
    TemplateExpr,
)

_EXPR_TYPES = (
    LiteralExpr,
    ListExpr,
    DictExpr,
    TemplateExpr,
    NameExpr,
    EnvExpr,
    AttrExpr,
    IndexExpr,
    BinaryExpr,
)


def R(path: str, optional: bool = False) -> Expr:
    """A reference like `a.output.x` or `env.HOME`; `optional` makes every access `?.`."""
    first, *rest = path.split(".")
    if first == "env":
        return EnvExpr(name=rest[0])
    expr: Expr = NameExpr(name=first)
    for part in rest:
        if part.lstrip("-").isdigit():
            expr = IndexExpr(value=expr, index=LiteralExpr(value=int(part)), optional=optional)
        else:
            expr = AttrExpr(value=expr, field=part, optional=optional)
    return expr


def L(value: Any) -> Expr:
    """A literal Python value as an expression (lists and dicts recursively)."""
    if isinstance(value, _EXPR_TYPES):
        return value  # type: ignore[return-value]
    if isinstance(value, list):
        return ListExpr(items=[L(v) for v in value])
    if isinstance(value, dict):
        return DictExpr(entries=[DictEntry(key=k, value=L(v)) for k, v in value.items()])
    return LiteralExpr(value=value)


def T(*parts: Any) -> Expr:
    """A template: strings stay text, anything else is an expression."""
    return TemplateExpr(parts=[p if isinstance(p, str) else L(p) for p in parts])


def B(op: str, left: Any, right: Any) -> Expr:
    return BinaryExpr(op=op, left=L(left), right=L(right))  # type: ignore[arg-type]


def retry(
    n: int,
    backoff: float = 0.0,
    *,
    on: list[str] | None = None,
    factor: float = 1.0,
    max_s: float | None = None,
    jitter: bool = False,
) -> RetryPolicy:
    return RetryPolicy(
        retries=n, on=on, backoff_s=backoff, factor=factor, max_s=max_s, jitter=jitter
    )  # type: ignore[arg-type]


def S(name: str, tool: str, *, over: Any = None, var: str = "x", **kw: Any) -> Step:
    """A step; keyword arguments that are Step fields are policies, the rest tool args."""
    fields = set(Step.model_fields)
    policy = {k: v for k, v in kw.items() if k in fields}
    args = {k: L(v) for k, v in kw.items() if k not in fields}
    for key in ("condition", "default"):  # None: not set; pass L(None) for `null`
        if policy.get(key) is not None:
            policy[key] = L(policy[key])
    if over is not None:
        policy["map"] = MapSpec(var=var, over=L(over))
    return Step(name=name, tool=tool, args=args, **policy)


def _names(expr: Expr) -> list[str]:
    if isinstance(expr, NameExpr):
        return [expr.name]
    return [n for c in children(expr) for n in _names(c)]


def P(
    *steps: Step,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    resources: list[Resource] | None = None,
    **kw: Any,
) -> CompiledPlan:
    """A plan; `inputs` maps name -> type or (type, default)."""
    order = [s.name for s in steps]
    done = []
    primaries = {fb: s.name for s in steps for fb in s.fallback}
    for s in steps:
        exprs = list(s.args.values())
        exprs += [e for e in (s.condition, s.default, s.map.over if s.map else None) if e]
        refs = {n for e in exprs for n in _names(e) if n in order} | set(s.after)
        deps = [n for n in order if n in refs]
        done.append(s.model_copy(update={"depends_on": deps, "standby_for": primaries.get(s.name)}))
    decl = {}
    for name, t in (inputs or {}).items():
        if isinstance(t, tuple):
            decl[name] = Input(name=name, type=t[0], has_default=True, default=t[1])
        else:
            decl[name] = Input(name=name, type=t)
    outs = {n: Output(name=n, expr=L(e)) for n, e in (outputs or {}).items()}
    res = {r.name: r for r in resources or []}
    return CompiledPlan(
        plan=kw.pop("name", "t"),
        steps={s.name: s for s in done},
        inputs=decl,
        outputs=outs,
        resources=res,
        **kw,
    )
