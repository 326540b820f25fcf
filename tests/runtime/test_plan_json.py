"""The compiled plan the journal stores is made one step at a time (`resume.plan_json`),
and is byte for byte the plan's `model_dump_json()`."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from plait.compiler.api import load_plan
from plait.runtime.journal import pack_plan
from plait.runtime.resume import plan_json

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.agent"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_stored_plan_is_the_plans_json(path: Path) -> None:
    plan = load_plan(path)
    expected = plan.model_dump_json().encode()
    assert b"".join(plan_json(plan)) == expected
    assert zlib.decompress(pack_plan(plan_json(plan))) == expected
    assert zlib.decompress(pack_plan(expected)) == expected


def test_a_plan_of_many_steps_is_made_in_pieces(tmp_path: Path) -> None:
    lines = ["plan wide {", "  step root = std.echo(value = 1)"]
    lines += [f"  step s{i} = std.echo(value = root.output)" for i in range(200)]
    (tmp_path / "wide.agent").write_text("\n".join([*lines, "}", ""]))
    plan = load_plan(tmp_path / "wide.agent")
    made = list(plan_json(plan))
    assert b"".join(made) == plan.model_dump_json().encode()
    assert len(made) > 200 and max(map(len, made)) < len(b"".join(made)) // 20
