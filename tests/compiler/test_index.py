"""The expression index `lower` hands forward equals the one walked from the plan alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.compiler.index import ExprIndex, Visit, index_plan
from plait.compiler.lower import lower_indexed
from plait.compiler.parse import parse
from plait.compiler.source import SourceMap

ROOT = Path(__file__).resolve().parents[2]
PLANS = sorted([*ROOT.glob("examples/*.agent"), *ROOT.glob("tests/compiler/data/*.agent")])


def shape(visits: list[Visit]) -> list[tuple[object, ...]]:
    """Visits compared by identity of their nodes (the index shares the IR's nodes)."""
    return [
        (site.owner, site.role, site.name, site.loop_var, id(node), id(parent))
        for site, node, parent in visits
    ]


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_lowered_index_is_the_plan_walked_again(path: Path) -> None:
    text = path.read_text()
    tree, _ = parse(text, path.name)
    if tree is None:
        pytest.skip("no tree")
    plan, _, lowered = lower_indexed(tree, SourceMap(path.name, text))
    walked = index_plan(plan)
    assert shape(lowered.nodes) == shape(walked.nodes)
    for kind, visits in walked.kinds.items():
        assert shape(lowered.kinds[kind]) == shape(visits), kind
        # the walk that fills the kinds visits the nodes in the order of `nodes`
        assert shape(visits) == shape([v for v in walked.nodes if v[1].node == kind]), kind
    assert lowered.step_refs == walked.step_refs
    assert list(lowered.step_refs) == list(plan.steps)
    assert lowered.read == walked.read == [v[1].name for v in walked.names]  # type: ignore[union-attr]


def test_kinds_group_the_visits_in_order() -> None:
    text = "plan p {\n  input a: str\n  step s = std.echo(value = [len(a), {k: a.x}])\n}\n"
    tree, _ = parse(text, "t.agent")
    assert tree is not None
    _, _, index = lower_indexed(tree, SourceMap("t.agent", text))
    assert isinstance(index, ExprIndex)
    assert [v[1].node for v in index.nodes] == ["list", "dict", "attr", "name", "call", "name"]
    assert [v[1].node for v in index.kinds["call"]] == ["call"]
    assert [v[1].node for v in index.of_kind("list")] == ["list"]
    assert [v[1].name for v in index.names] == ["a", "a"]  # type: ignore[union-attr]
    assert index.step_refs == {"s": set()}
