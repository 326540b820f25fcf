"""`ir.shared_keys`: the compiler's models keep their fields, order and behaviour when their
fields move into a key-sharing dict (it only changes how the dict is stored)."""

from __future__ import annotations

from plait.compiler.api import compile_source
from plait.compiler.ir import AttrExpr, NameExpr, Step, shared_keys
from plait.compiler.source import Span

PLAN = """plan p {
  step a = std.echo(value = "x")
  step b = std.echo(value = a.output) {
    timeout 5s
    retry 2
  }
}
"""


def test_same_fields_order_and_equality() -> None:
    span = Span(line=1, column=1, end_line=1, end_column=5)
    made = AttrExpr.model_construct(
        value=NameExpr(span=span, name="a"), field="output", span=span, field_span=span
    )
    before = dict(made.__dict__)
    fields_set = made.model_fields_set
    assert shared_keys(made) is made
    assert list(made.__dict__.items()) == list(before.items())
    assert made.model_fields_set == fields_set
    assert made == AttrExpr.model_validate(made.model_dump())
    made.field = "error"  # assignment still goes through pydantic, into the same dict
    assert made.__dict__["field"] == "error" and made.field == "error"


def test_compiled_steps_dump_and_validate_as_before() -> None:
    result = compile_source(PLAN)
    assert result.plan is not None
    for step in result.plan.steps.values():
        dumped = step.model_dump()
        assert list(step.__dict__) == list(Step.model_fields)
        assert Step.model_validate(dumped) == step
        assert Step.model_validate(dumped).model_dump() == dumped
