"""Hand-built IR for check tests: small constructors that mimic what lowering produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait.compiler.checks import check_plan
from plait.compiler.diagnostics import Diagnostic
from plait.compiler.graph import step_references
from plait.compiler.ir import (
    AttrExpr,
    DictEntry,
    DictExpr,
    Expr,
    IndexExpr,
    Input,
    ListExpr,
    LiteralExpr,
    NameExpr,
    Output,
    Plan,
    Resource,
    Step,
)
from plait.compiler.source import SourceMap, Span
from plait.stdlib.registry import READ_FILES, UsePolicy, builtin_registry


def lit(value: Any) -> Expr:
    """A literal; lists and dicts become ListExpr / DictExpr of literals."""
    if isinstance(value, list):
        return ListExpr(items=[lit(v) for v in value])
    if isinstance(value, dict):
        return DictExpr(entries=[DictEntry(key=k, value=lit(v)) for k, v in value.items()])
    return LiteralExpr(value=value)


def ref(name: str, *path: str | int, optional: bool = False) -> Expr:
    """`name.a.b[0]`; `optional` makes the last access `?.`/`?[ ]`."""
    expr: Expr = NameExpr(name=name, span=at(name))
    for i, part in enumerate(path):
        last = optional and i == len(path) - 1
        if isinstance(part, int):
            expr = IndexExpr(value=expr, index=lit(part), optional=last)
        else:
            expr = AttrExpr(value=expr, field=part, optional=last)
    return expr


def at(tag: str) -> Span:
    """A distinct fake span per tag, so tests can tell where a diagnostic points."""
    line = sum(map(ord, tag)) % 97 + 1
    return Span(line=line, column=1, end_line=line, end_column=1 + len(tag))


def step(
    name: str, tool: str = "std.echo", args: dict[str, Expr] | None = None, **policies: Any
) -> Step:
    return Step(name=name, tool=tool, args={"value": lit(1)} if args is None else args, **policies)


def make_plan(
    *steps: Step,
    inputs: dict[str, str] | None = None,
    outputs: dict[str, Expr] | None = None,
    resources: tuple[str, ...] = (),
    **fields: Any,
) -> Plan:
    """A plan with `depends_on` and `standby_for` filled in as lowering does."""
    plan = Plan(
        plan="t",
        inputs={n: Input(name=n, type=t) for n, t in (inputs or {}).items()},
        outputs={n: Output(name=n, expr=e) for n, e in (outputs or {}).items()},
        resources={r: Resource(name=r) for r in resources},
        steps={s.name: s for s in steps},
        **fields,
    )
    order = list(plan.steps)
    for s in plan.steps.values():
        deps = step_references(plan, s) | set(s.after)
        s.depends_on = [n for n in order if n in deps]
        for standby in s.fallback:
            if standby in plan.steps and plan.steps[standby].standby_for is None:
                plan.steps[standby].standby_for = s.name
    return plan


def check(
    plan: Plan,
    spans: dict[Any, Span] | None = None,
    plan_dir: Path | None = None,
    use_policy: UsePolicy = READ_FILES,
) -> list[Diagnostic]:
    source = SourceMap("t.agent", "", dict(spans or {}))
    return check_plan(plan, source, builtin_registry().child(), plan_dir, use_policy=use_policy)[0]


def codes_of(diags: list[Diagnostic]) -> list[str]:
    return [d.code.id for d in diags]


def only(diags: list[Diagnostic], code: str) -> Diagnostic:
    """The single diagnostic with `code` (fails the test otherwise)."""
    found = [d for d in diags if d.code.id == code]
    assert len(found) == 1, f"expected one {code}, got {[(d.code.id, d.message) for d in diags]}"
    return found[0]
