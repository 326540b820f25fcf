"""The DAG: nodes with policies, edge kinds, cycles, critical path, and the drawings."""

from __future__ import annotations

import networkx as nx
import pytest

from plait.compiler.checks.graph_checks import dependency_cycles
from plait.compiler.graph import (
    build_graph,
    drawing_ranks,
    edges,
    format_for,
    render,
    to_dot,
    to_mermaid,
)
from plait.compiler.ir import EdgeKind, MapSpec, Plan, RetryPolicy, TriggerRule
from plait.errors import UserError
from tests.compiler.irkit import lit, make_plan, ref, step
from tests.marks import NEEDS_DOT


def triage() -> Plan:
    plan = make_plan(
        step(
            "classify",
            args={"value": ref("ticket")},
            fallback=["by_rules"],
            timeout_s=20.0,
            retry=RetryPolicy(retries=3),
            uses=["llm_api"],
        ),
        step("by_rules"),
        step("history", optional=True, timeout_s=5.0),
        step(
            "draft",
            args={"value": ref("classify", "output", "category"), "h": ref("history", "output")},
        ),
        step("each", map=MapSpec(var="x", over=lit([1, 2])), args={"value": ref("x")}),
        step("notify", after=["draft"], when=TriggerRule.ANY_FAILED),
        inputs={"ticket": "str"},
        outputs={"reply": ref("draft", "output")},
        resources=("llm_api",),
    )
    plan.steps["draft"].args.pop("h")
    plan.steps["draft"].depends_on = ["classify", "history"]
    plan.steps["draft"].after = ["history"]
    plan.edges = edges(plan)
    return plan


def test_edges_are_marked_by_kind() -> None:
    assert triage().edges == [
        ("classify", "by_rules", EdgeKind.FALLBACK),
        ("classify", "draft", EdgeKind.DATA),
        ("history", "draft", EdgeKind.AFTER),
        ("draft", "notify", EdgeKind.AFTER),
    ]


def test_graph_nodes_carry_policies() -> None:
    graph = build_graph(triage())
    assert list(graph.nodes) == ["classify", "by_rules", "history", "draft", "each", "notify"]
    assert graph.nodes["classify"]["timeout_s"] == 20.0
    assert graph.nodes["classify"]["uses"] == ["llm_api"]
    assert graph.nodes["history"]["optional"] is True
    assert graph.nodes["each"]["map"] is True
    assert graph.edges["classify", "by_rules"]["kind"] == EdgeKind.FALLBACK


def test_plan_graph_answers_graph_questions() -> None:
    plan = triage()
    graph = plan.graph
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    assert nx.descendants(graph, "classify") == {"by_rules", "draft", "notify"}
    assert set(graph.predecessors("draft")) == {"classify", "history"}
    order = list(nx.topological_sort(graph))
    assert all(order.index(u) < order.index(v) for u, v in graph.edges)
    assert {kind for _, _, kind in graph.edges(data="kind")} == {
        EdgeKind.DATA,
        EdgeKind.AFTER,
        EdgeKind.FALLBACK,
    }


def test_a_dependency_read_only_in_if_is_a_condition_edge_in_plan_graph() -> None:
    plan = make_plan(
        step("a"),
        step("b"),
        step("gated", args={"value": ref("b", "output")}, condition=ref("a", "output")),
        step("both", args={"value": ref("a", "output")}, condition=ref("a", "output")),
    )
    plan.steps["gated"].depends_on = ["a", "b"]
    plan.steps["both"].depends_on = ["a"]
    plan.edges = edges(plan)
    graph = plan.graph
    assert graph.edges["a", "gated"]["kind"] == "condition"
    assert graph.edges["b", "gated"]["kind"] == EdgeKind.DATA
    assert graph.edges["a", "both"]["kind"] == EdgeKind.DATA  # read in an argument too
    # the compiled plan keeps the SPEC's kinds
    assert ("a", "gated", EdgeKind.DATA) in plan.edges


def test_drawing_rows_are_the_graphs_topological_generations() -> None:
    plan = triage()
    rows = drawing_ranks(plan)
    # classify, history and each need nothing; draft and by_rules wait for classify (and
    # history); notify waits for draft. Within a row, file order.
    assert rows == [["classify", "history", "each"], ["by_rules", "draft"], ["notify"]]
    assert rows == [
        sorted(r, key=list(plan.steps).index) for r in nx.topological_generations(plan.graph)
    ]
    dot = to_dot(plan)
    first = dot.index("rank=same")
    assert (
        dot.index("s_classify", first) < dot.index("s_history", first) < dot.index("s_each", first)
    )
    assert dot.count("rank=same") == 2  # a row of one step needs no pin


def test_cycles_are_found_once_each() -> None:
    plan = make_plan(
        step("a", after=["b"]),
        step("b", after=["c"]),
        step("c", after=["a"]),
        step("d", after=["d"]),
    )
    assert dependency_cycles(plan) == [["a", "b", "c", "a"], ["d", "d"]]


def test_no_cycle_when_steps_depend_on_steps_below_them() -> None:
    # file order is not a topological order here, so the shortcut for it does not apply
    plan = make_plan(step("a", after=["b"]), step("b", after=["c"]), step("c"))
    assert dependency_cycles(plan) == []
    assert dependency_cycles(make_plan(step("a"), step("b", after=["a"]))) == []


def test_dot_marks_standby_optional_map_and_badges() -> None:
    dot = to_dot(triage())
    assert "s_by_rules" in dot and "dashed" in dot
    assert "rounded,dotted" in dot  # the optional step
    assert "box3d" in dot and "for x in [1, 2]: std.echo" in dot
    assert "⟳3 · ◷20s · llm_api" in dot
    assert "invhouse" in dot and "i_ticket -> s_classify" in dot
    assert "s_draft -> o_reply" in dot
    assert "label=fallback" in dot and "label=after" in dot


def test_status_colours_nodes() -> None:
    dot = to_dot(triage(), {"classify": {"status": "recovered", "attempts": 4, "duration_s": 1.5}})
    assert "#FEF3C7" in dot and "recovered · 4 attempts · 1.50s" in dot


def test_mermaid_flowchart() -> None:
    text = to_mermaid(triage(), {"draft": {"status": "failed"}})
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  s_classify -. fallback .-> s_by_rules" in lines
    assert "  s_history -. after .-> s_draft" in lines
    assert "  in_ticket --> s_classify" in lines
    assert "  s_draft --> out_reply" in lines
    assert any(line.startswith("  s_each[[") for line in lines)
    assert "  class s_draft failed" in lines
    assert "  class s_by_rules standby" in lines


@NEEDS_DOT
@pytest.mark.parametrize(
    ("fmt", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG"), ("pdf", b"%PDF")]
)
def test_render_binary_formats(fmt: str, magic: bytes) -> None:
    data = render(triage(), fmt)
    assert magic in data[:400]


def test_missing_dot_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="install graphviz"):
        render(triage(), "svg")
    assert render(triage(), "dot").startswith(b"digraph")


def test_format_from_suffix_or_option() -> None:
    assert format_for("x.svg", None) == "svg"
    assert format_for("x.MMD", None) == "mermaid"
    assert format_for("x.svg", "png") == "png"
    assert format_for(None, None) == "dot"
    with pytest.raises(UserError, match="cannot tell the graph format"):
        format_for("x.txt", None)


def test_long_cycle_needs_no_recursion() -> None:
    n = 5000
    plan = make_plan(*[step(f"s{i}", after=[f"s{(i + 1) % n}"]) for i in range(n)])
    (cycle,) = dependency_cycles(plan)
    assert len(cycle) == n + 1 and cycle[0] == cycle[-1] == "s0"
    assert cycle[1] == "s1"
