"""The plan's DAG: its edges, the networkx.DiGraph of steps built from them (`plan.graph`),
and drawings of it (DOT, SVG/PNG/PDF through Graphviz, Mermaid).

networkx is imported only where a graph is built: `plait check` of a plan whose steps
depend only on steps above them never needs it (see checks/graph_checks.py)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from plait.compiler.expressions import referenced_names, to_source
from plait.compiler.index import step_sites
from plait.compiler.ir import (
    EdgeKind,
    Plan,
    Step,
)
from plait.errors import UserError

if TYPE_CHECKING:
    import networkx as nx

Edge = tuple[str, str, EdgeKind]
FORMATS = ("dot", "svg", "png", "pdf", "mermaid")
SUFFIXES = {
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
}

# --- structure ------------------------------------------------------------------------------


def step_references(plan: Plan, step: Step) -> set[str]:
    """The steps read by a step's expressions (arguments, map list, `if`, `default`)."""
    found: set[str] = set()
    for site in step_sites(step):
        for node in referenced_names(site.expr):
            if node.name in plan.steps and node.name != site.loop_var:
                found.add(node.name)
    return found


def edges(plan: Plan, step_refs: dict[str, set[str]] | None = None) -> list[Edge]:
    """Every edge, from the dependency to the dependant, in file order of the dependant.

    A dependency both read and named in `after` is a `data` edge; a fallback edge goes from
    the primary to its standby. `step_refs` (step -> steps it reads), when the checks have
    computed it, saves walking the expressions again.
    """
    result: list[Edge] = []
    add = result.append
    steps = plan.steps
    data, after, fallback = EdgeKind.DATA, EdgeKind.AFTER, EdgeKind.FALLBACK
    for name, step in steps.items():
        refs = step_refs[name] if step_refs is not None else step_references(plan, step)
        waits, guards = step.after, step.guard
        undone = steps[step.standby_for].compensate == name if step.standby_for else False
        for dep in step.depends_on:
            if dep in steps and not (undone and dep == step.standby_for):  # (an undo edge)
                kind = after if waits and dep in waits and dep not in refs else data
                add((dep, name, EdgeKind.GUARD if guards and dep in guards else kind))
        if step.fallback:
            result.extend(
                (name, standby, fallback) for standby in step.fallback if standby in steps
            )
        if step.compensate is not None and step.compensate in steps:
            add((name, step.compensate, EdgeKind.UNDO))
    return result


def build_graph(plan: Plan) -> nx.DiGraph:
    """One node per step (in file order) carrying its policies as attributes; edges go from
    the dependency to the dependant (a fallback: from the primary to its standby) and
    carry `kind` (the compiled plan's, or `condition` for a dependency read only in `if`).
    `plan.graph` is this graph."""
    import networkx as nx

    graph = nx.DiGraph(plan=plan.plan)
    # Names first, then the attributes: `add_nodes_from` given (name, dict) pairs tries each
    # pair as a node, fails (a dict is not hashable) and copies the dict twice; the node's
    # attribute dict ends up the same either way.
    graph.add_nodes_from(plan.steps)
    nx.set_node_attributes(
        graph, {name: step_attributes(step) for name, step in plan.steps.items()}
    )
    # One attribute dict per kind, shared by the tuples: add_edges_from copies it into each
    # edge's own dict. (A kind that is not an EdgeKind member, e.g. in a hand-built plan,
    # keeps its own object, as before.)
    shared: dict[str, dict[str, str]] = {kind: {"kind": kind} for kind in EdgeKind}
    shared[CONDITION] = {"kind": CONDITION}
    if_only = condition_only_reads(plan)
    graph.add_edges_from(
        [
            (
                source,
                target,
                shared[CONDITION if kind == EdgeKind.DATA and (source, target) in if_only else kind]
                if kind.__class__ is EdgeKind
                else {"kind": kind},
            )
            for source, target, kind in plan.edges or edges(plan)
        ]
    )
    return graph


# In `plan.graph` (not in the compiled JSON, whose kinds SPEC section 9 lists), a data edge
# whose dependant reads the dependency only in its `if` is marked `condition`: it decides
# whether the step runs, not what it computes.
CONDITION = "condition"


def condition_only_reads(plan: Plan) -> set[tuple[str, str]]:
    """(dependency, step) pairs where the step reads the dependency in its `if` only."""
    pairs: set[tuple[str, str]] = set()
    for name, step in plan.steps.items():
        if step.condition is None:
            continue
        in_if: set[str] = set()
        elsewhere: set[str] = set()
        for site in step_sites(step):
            names = in_if if site.role == "if" else elsewhere
            names.update(node.name for node in referenced_names(site.expr))
        pairs.update((dep, name) for dep in in_if - elsewhere if dep in plan.steps)
    return pairs


def step_attributes(step: Step) -> dict[str, Any]:
    """A step's policies as plain node attributes."""
    return {
        "tool": step.tool,
        "map": step.map is not None,
        "when": step.when,
        "condition": step.condition is not None,
        "timeout_s": step.timeout_s,
        "retry": step.retry,
        "fallback": list(step.fallback),
        "default": step.default is not None,
        "optional": step.optional,
        "uses": list(step.uses),
        "concurrency": step.concurrency,
        "tolerate": step.tolerate,
        "standby_for": step.standby_for,
        "fresh": step.fresh,
        "guard": list(step.guard),
        "compensate": step.compensate,
    }


def input_readers(plan: Plan) -> list[tuple[str, str]]:
    """(input, step) for every step that reads an input directly."""
    pairs: list[tuple[str, str]] = []
    for step in plan.steps.values():
        seen: set[str] = set()
        for site in step_sites(step):
            for node in referenced_names(site.expr):
                if node.name in plan.inputs and node.name != site.loop_var:
                    seen.add(node.name)
        pairs.extend((name, step.name) for name in plan.inputs if name in seen)
    return pairs


def output_sources(plan: Plan) -> list[tuple[str, str]]:
    """(input or step, output) for everything an output reads."""
    pairs: list[tuple[str, str]] = []
    for output in plan.outputs.values():
        names = dict.fromkeys(n.name for n in referenced_names(output.expr))
        pairs.extend(
            (name, output.name) for name in names if name in plan.steps or name in plan.inputs
        )
    return pairs


# --- expressions as text --------------------------------------------------------------------


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- drawing --------------------------------------------------------------------------------

STATUS_COLOURS = {  # status -> (fill, border)
    "succeeded": ("#DCFCE7", "#16A34A"),
    "recovered": ("#FEF3C7", "#D97706"),
    "failed": ("#FEE2E2", "#DC2626"),
    "skipped": ("#F3F4F6", "#9CA3AF"),
    "cancelled": ("#EDE9FE", "#7C3AED"),
    "running": ("#DBEAFE", "#2563EB"),
}
STEP_FILL, STEP_BORDER = "#EEF2FF", "#4F46E5"
EDGE_STYLE = {
    EdgeKind.DATA: {"color": "#475569"},
    EdgeKind.AFTER: {"color": "#94A3B8", "style": "dotted", "label": "after"},
    EdgeKind.FALLBACK: {"color": "#D97706", "style": "dashed", "label": "fallback"},
    EdgeKind.GUARD: {"color": "#0F766E", "style": "dotted", "label": "guard"},
    EdgeKind.UNDO: {"color": "#B91C1C", "style": "dashed", "label": "undo"},
}
FONT = "Helvetica"


def _fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def badges(step: Step) -> list[str]:
    """Short marks for a step's policies: "⟳3", "◷20s", resources, rule, `if`."""
    marks = []
    if step.retry is not None and step.retry.retries:
        marks.append(f"⟳{step.retry.retries}")
    if step.timeout_s is not None:
        marks.append(f"◷{_fmt_seconds(step.timeout_s)}")
    marks.extend(step.uses)
    if step.when != "all_succeeded":
        marks.append(f"when {step.when}")
    if step.condition is not None:
        marks.append("if " + _short(to_source(step.condition), 24))
    if step.default is not None:
        marks.append("default")
    if step.tolerate:
        marks.append(f"tolerate {step.tolerate:g}%")
    return marks


def _status_line(info: dict[str, Any]) -> str:
    parts = [str(info.get("status", ""))]
    attempts = info.get("attempts")
    if attempts:
        parts.append(f"{attempts} attempt{'s' if attempts != 1 else ''}")
    duration = info.get("duration_s")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.2f}s")
    return " · ".join(p for p in parts if p)


def _step_label(step: Step, info: dict[str, Any] | None) -> str:
    esc = html.escape
    rows = [f"<B>{esc(step.name)}</B>"]
    tool = step.tool
    if step.map is not None:
        tool = f"for {step.map.var} in {_short(to_source(step.map.over), 24)}: {tool}"
    rows.append(f'<FONT POINT-SIZE="10" COLOR="#475569">{esc(tool)}</FONT>')
    marks = badges(step)
    if marks:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="#64748B">{esc(" · ".join(marks))}</FONT>')
    if info:
        rows.append(f'<FONT POINT-SIZE="9"><B>{esc(_status_line(info))}</B></FONT>')
    return "<" + "<BR/>".join(rows) + ">"


def _step_node_attrs(step: Step, info: dict[str, Any] | None) -> dict[str, str]:
    styles = ["filled"]
    shape = "box3d" if step.map is not None else "box"
    if shape == "box":
        styles.append("rounded")
    if step.is_standby:
        styles.append("dashed")
    elif step.optional:
        styles.append("dotted")
    fill, border = STEP_FILL, STEP_BORDER
    if info and info.get("status") in STATUS_COLOURS:
        fill, border = STATUS_COLOURS[str(info["status"])]
    return {
        "shape": shape,
        "style": ",".join(styles),
        "fillcolor": fill,
        "color": border,
        "penwidth": "1.4",
        "label": _step_label(step, info),
        "tooltip": f"{step.name} = {step.tool}(...)",
    }


def to_dot(plan: Plan, status: dict[str, dict[str, Any]] | None = None) -> str:
    """The plan as Graphviz DOT: inputs on top, outputs at the bottom, steps between.

    `status` (step -> {status, attempts, duration_s}) colours a recorded run.
    """
    import graphviz  # type: ignore[import-untyped]

    title = plan.plan + (f" — {plan.description}" if plan.description else "")
    dot = graphviz.Digraph(
        plan.plan,
        graph_attr={
            "rankdir": "TB",
            "fontname": FONT,
            "label": title,
            "labelloc": "t",
            "fontsize": "16",
            "nodesep": "0.35",
            "ranksep": "0.5",
            "bgcolor": "white",
        },
        node_attr={"fontname": FONT, "fontsize": "12", "margin": "0.15,0.07"},
        edge_attr={"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"},
    )
    _dot_inputs(dot, plan)
    for step in plan.steps.values():
        if step.in_loop is not None or step.loop is not None:
            continue  # drawn in its loop's cluster
        info = (status or {}).get(step.name)
        dot.node(f"s_{step.name}", **_step_node_attrs(step, info))
    for step in plan.steps.values():
        if step.loop is not None:
            _dot_loop(dot, plan, step, status or {})
    _dot_ranks(dot, plan)
    for source, target, kind in plan.edges or edges(plan):
        dot.edge(f"s_{source}", f"s_{target}", **EDGE_STYLE[EdgeKind(kind)])
    for name, step_name in input_readers(plan):
        dot.edge(f"i_{name}", f"s_{step_name}", color="#16A34A", arrowhead="vee")
    _dot_outputs(dot, plan)
    return str(dot.source)


def drawing_ranks(plan: Plan) -> list[list[str]]:
    """The rows of the drawing, top to bottom: the topological generations of `plan.graph`
    (a step sits one row below the lowest of its dependencies), steps in file order within
    a row. Steps drawn inside a loop's cluster are left to the cluster."""
    import networkx as nx

    loose = [n for n, step in plan.steps.items() if step.in_loop is None and step.loop is None]
    order = {name: i for i, name in enumerate(plan.steps)}
    rows = nx.topological_generations(plan.graph.subgraph(loose))
    return [sorted(row, key=order.__getitem__) for row in rows]


def _dot_ranks(dot: Any, plan: Plan) -> None:
    """Pin each row of `drawing_ranks` with `rank=same`, so the picture reads as the
    dependency levels the scheduler runs in, not as whatever dot's layout prefers."""
    for row in drawing_ranks(plan):
        if len(row) > 1:
            with dot.subgraph(graph_attr={"rank": "same"}) as sub:
                for name in row:
                    sub.node(f"s_{name}")


def loop_label(step: Step) -> str:
    """`loop review · until check.output.approved · max 4` (SPEC section 11)."""
    assert step.loop is not None
    parts = [f"loop {step.name}"]
    if step.loop.until is not None:
        parts.append(f"until {_short(to_source(step.loop.until), 48)}")
    parts.append(f"max {step.loop.max}")
    if step.loop.every_s:
        parts.append(f"every {_fmt_seconds(step.loop.every_s)}")
    return " · ".join(parts)


def _dot_loop(dot: Any, plan: Plan, loop: Step, status: dict[str, dict[str, Any]]) -> None:
    """A loop as a cluster holding its body steps and a node standing for the loop."""
    assert loop.loop is not None
    with dot.subgraph(
        name=f"cluster_{loop.name}",
        graph_attr={
            "label": loop_label(loop),
            "style": "rounded,dashed",
            "color": "#6366F1",
            "fontcolor": "#4338CA",
            "labeljust": "l",
        },
    ) as sub:
        attrs = _step_node_attrs(loop, status.get(loop.name))
        attrs["shape"], attrs["style"] = "box", "rounded,bold"
        sub.node(f"s_{loop.name}", **attrs)
        for name in loop.loop.body:
            if name in plan.steps:
                sub.node(f"s_{name}", **_step_node_attrs(plan.steps[name], status.get(name)))


def _dot_inputs(dot: Any, plan: Plan) -> None:
    with dot.subgraph(name="inputs", graph_attr={"rank": "source"}) as sub:
        for item in plan.inputs.values():
            text = f"{item.name}: {item.type}"
            if item.has_default:
                text += " = " + _short(json.dumps(item.default), 20)
            sub.node(
                f"i_{item.name}",
                label=text,
                shape="invhouse",
                style="filled",
                fillcolor="#F0FDF4",
                color="#16A34A",
                fontsize="11",
            )


def _dot_outputs(dot: Any, plan: Plan) -> None:
    with dot.subgraph(name="outputs", graph_attr={"rank": "sink"}) as sub:
        for output in plan.outputs.values():
            sub.node(
                f"o_{output.name}",
                label=output.name,
                shape="house",
                style="filled",
                fillcolor="#FFF7ED",
                color="#EA580C",
                fontsize="11",
                tooltip=_short(to_source(output.expr), 80),
            )
    for name, output_name in output_sources(plan):
        kind = "s" if name in plan.steps else "i"
        dot.edge(
            f"{kind}_{name}", f"o_{output_name}", color="#EA580C", style="dashed", arrowhead="vee"
        )


def render(plan: Plan, fmt: str, status: dict[str, dict[str, Any]] | None = None) -> bytes:
    """The drawing in `fmt` (dot, mermaid, svg, png or pdf); the last three need `dot`."""
    if fmt == "dot":
        return to_dot(plan, status).encode()
    if fmt == "mermaid":
        return to_mermaid(plan, status).encode()
    if fmt not in FORMATS:
        raise UserError(f"unknown graph format {fmt!r}; use one of {', '.join(FORMATS)}")
    import graphviz

    try:
        return bytes(graphviz.Source(to_dot(plan, status)).pipe(format=fmt))
    except graphviz.ExecutableNotFound:
        raise UserError(
            f"drawing {fmt.upper()} needs the Graphviz `dot` program, which was not found; "
            "install graphviz (`apt-get install graphviz`, `brew install graphviz`), "
            "or use --format dot or mermaid"
        ) from None


def format_for(path: str | None, fmt: str | None) -> str:
    """The drawing format: `--format` wins, else the output file's suffix, else DOT."""
    if fmt:
        return fmt
    if path is None:
        return "dot"
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    if suffix not in SUFFIXES:
        known = " ".join(SUFFIXES)
        raise UserError(
            f"cannot tell the graph format from {path!r}; use a suffix ({known}) or --format"
        )
    return SUFFIXES[suffix]


# --- mermaid --------------------------------------------------------------------------------


def _mm(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return html.escape(text, quote=False).replace('"', "#quot;")


def to_mermaid(plan: Plan, status: dict[str, dict[str, Any]] | None = None) -> str:
    """The plan as a Mermaid flowchart (top to bottom)."""
    lines = ["flowchart TD"]
    for item in plan.inputs.values():
        lines.append(f'  in_{item.name}[/"{_mm(item.name)}: {_mm(item.type)}"/]')
    for step in plan.steps.values():
        if step.in_loop is None and step.loop is None:
            lines.append("  " + _mermaid_step(step, (status or {}).get(step.name)))
    for step in plan.steps.values():
        if step.loop is not None:
            lines.append(f'  subgraph cluster_{step.name} ["{_mm(loop_label(step))}"]')
            for name in [step.name, *step.loop.body]:
                if name in plan.steps:
                    info = (status or {}).get(name)
                    lines.append("    " + _mermaid_step(plan.steps[name], info))
            lines.append("  end")
    for output in plan.outputs.values():
        lines.append(f'  out_{output.name}[\\"{_mm(output.name)}"\\]')
    arrows = {
        EdgeKind.DATA: "-->",
        EdgeKind.AFTER: "-. after .->",
        EdgeKind.FALLBACK: "-. fallback .->",
        EdgeKind.GUARD: "-. guard .->",
        EdgeKind.UNDO: "-. undo .->",
    }
    for source, target, kind in plan.edges or edges(plan):
        lines.append(f"  s_{source} {arrows[EdgeKind(kind)]} s_{target}")
    lines.extend(f"  in_{name} --> s_{step}" for name, step in input_readers(plan))
    for name, output_name in output_sources(plan):
        prefix = "s" if name in plan.steps else "in"
        lines.append(f"  {prefix}_{name} --> out_{output_name}")
    lines.extend(_mermaid_classes(plan, status))
    return "\n".join(lines) + "\n"


def _mermaid_step(step: Step, info: dict[str, Any] | None) -> str:
    text = f"<b>{_mm(step.name)}</b><br/>{_mm(step.tool)}"
    if step.map is not None:
        text = f"<b>{_mm(step.name)}</b><br/>for {_mm(step.map.var)} in …: {_mm(step.tool)}"
    marks = badges(step)
    if marks:
        text += "<br/><small>" + _mm(" · ".join(marks)) + "</small>"
    if info:
        text += "<br/>" + _mm(_status_line(info))
    if step.map is not None:
        return f's_{step.name}[["{text}"]]'
    return f's_{step.name}("{text}")'


def _mermaid_classes(plan: Plan, status: dict[str, dict[str, Any]] | None) -> list[str]:
    lines = [
        f"  classDef step fill:{STEP_FILL},stroke:{STEP_BORDER}",
        f"  classDef standby fill:{STEP_FILL},stroke:{STEP_BORDER},stroke-dasharray:6 4",
        f"  classDef optional fill:{STEP_FILL},stroke:{STEP_BORDER},stroke-dasharray:2 3",
        "  classDef input fill:#F0FDF4,stroke:#16A34A",
        "  classDef output fill:#FFF7ED,stroke:#EA580C",
    ]
    lines.extend(
        f"  classDef {name} fill:{fill},stroke:{border}"
        for name, (fill, border) in STATUS_COLOURS.items()
    )
    groups: dict[str, list[str]] = {}
    for step in plan.steps.values():
        info = (status or {}).get(step.name) or {}
        cls = str(info.get("status", ""))
        if cls not in STATUS_COLOURS:
            cls = "standby" if step.is_standby else "optional" if step.optional else "step"
        groups.setdefault(cls, []).append(f"s_{step.name}")
    groups["input"] = [f"in_{n}" for n in plan.inputs]
    groups["output"] = [f"out_{n}" for n in plan.outputs]
    lines.extend(f"  class {','.join(ids)} {cls}" for cls, ids in groups.items() if ids)
    return lines


__all__ = [
    "FORMATS",
    "build_graph",
    "edges",
    "format_for",
    "render",
    "to_dot",
    "to_mermaid",
    "to_source",
]
