"""Every expression of a plan walked once: each node with where it was written and its parent.

`lower` builds the index while it lowers the steps (it needs the names each step reads, the
`env` names and the dicts anyway) and hands it forward; the checks and the graph's edges read
it instead of walking the expressions again. `index_plan` builds the same index from a plan
alone, for callers that have no lowering at hand (a plan loaded from JSON, a test).
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from functools import cached_property
from typing import Any, NamedTuple

from plait.compiler.expressions import children
from plait.compiler.ir import Expr, Plan, Step


class Site(NamedTuple):
    """One top-level expression: `owner` is the step name, or None for a plan `output`.

    `role` is "arg", "map", "if", "default" or "output"; `name` is the argument or output
    name; `loop_var` is the map variable in scope (arguments of a map step only). A named
    tuple: a plan of 10,000 steps has ~20,000 of them.
    """

    owner: str | None
    role: str
    name: str
    expr: Expr
    loop_var: str | None = None


Visit = tuple[Site, Expr, "Expr | None"]  # (site, node, parent); the root's parent is None
KINDS = ("name", "attr", "call", "env", "dict")  # the node kinds the compiler itself reads


class ExprIndex:
    """The plan's top-level expressions (`sites`, in file order) and the visits of the nodes
    of the kinds in KINDS, by kind, each list in walk order (sites in order, each tree a
    parent before its children), so a check that looks at calls reads only the calls.
    `nodes` (every node) is walked again on first use: only code outside the compiler's own
    path asks for it."""

    def __init__(self) -> None:
        self.sites: list[Site] = []
        self.kinds: dict[str, list[Visit]] = {kind: [] for kind in KINDS}
        # The name each visit of `names` reads, in the same order: passes that ask "is this
        # name read" scan these strings (or make a set of them) without touching the nodes.
        self.read: list[str] = []
        # Step -> the steps its own expressions read (not `after`): the graph's data edges.
        self.step_refs: dict[str, set[str]] = {}

    @property
    def names(self) -> list[Visit]:
        """The visits of bare names (`NameExpr`), in order."""
        return self.kinds["name"]

    @cached_property
    def nodes(self) -> list[Visit]:
        """The visits of every node, in order."""
        found: list[Visit] = []
        for site in self.sites:
            stack: list[tuple[Expr, Expr | None]] = [(site.expr, None)]
            while stack:
                node, up = stack.pop()
                found.append((site, node, up))
                stack.extend((child, node) for child in children(node))
        return found

    def of_kind(self, kind: str) -> list[Visit]:
        """The visits of the nodes whose tag (`node.node`) is `kind`, in order."""
        if kind in self.kinds:
            return self.kinds[kind]
        return [visit for visit in self.nodes if visit[1].node == kind]

    def steps_read(self, start: int, steps: Container[str], loop_var: str | None) -> set[str]:
        """The steps read by the names from position `start` on (one step's sites, walked
        last); `loop_var` is the step's map variable, which is not a step in its arguments."""
        if loop_var is None:
            return {name for name in self.read[start:] if name in steps}
        found: set[str] = set()
        for site, node, _ in self.names[start:]:
            name: str = node.name  # type: ignore[union-attr]  # `names` holds NameExprs only
            if name in steps and name != site.loop_var:
                found.add(name)
        return found

    def add(self, site: Site) -> None:
        """Walk one top-level expression. Iterative (trees may be deep), dispatching on the
        node tag, the most frequent first: this is the compiler's hottest loop after the
        parser. The order of the pushes is that of `ir.children`."""
        self.sites.append(site)
        kinds = self.kinds
        names, attrs, calls = kinds["name"].append, kinds["attr"].append, kinds["call"].append
        read = self.read.append
        stack: list[Visit] = [(site, site.expr, None)]
        pop, push = stack.pop, stack.append
        while stack:
            visit = pop()
            node: Any = visit[1]  # an Expr; its tag says which one
            kind = node.node
            if kind == "name":
                names(visit)
                read(node.name)
            elif kind == "literal":
                continue
            elif kind == "attr":
                attrs(visit)
                value = node.value
                if value.node == "name":  # `STEP.output`: its only child, next popped anyway
                    names((site, value, node))
                    read(value.name)
                else:
                    push((site, value, node))
            elif kind == "template":
                for part in node.parts:
                    if part.__class__ is not str:
                        push((site, part, node))
            elif kind == "list":
                for item in node.items:
                    push((site, item, node))
            elif kind == "binary":
                push((site, node.left, node))
                push((site, node.right, node))
            elif kind == "index":
                push((site, node.value, node))
                push((site, node.index, node))
            elif kind == "dict":
                kinds["dict"].append(visit)
                for entry in node.entries:
                    push((site, entry.value, node))
            elif kind == "call":
                calls(visit)
                for arg in node.args:
                    push((site, arg, node))
            elif kind == "not":
                push((site, node.operand, node))
            elif kind == "env":
                kinds["env"].append(visit)


def step_sites(step: Step) -> Iterator[Site]:
    """The expressions of one step: map list, arguments, `if`, `default`."""
    name = step.name
    loop_var = step.map.var if step.map is not None else None
    if step.map is not None:
        yield Site(name, "map", step.map.var, step.map.over)
    for arg, value in step.args.items():
        yield Site(name, "arg", arg, value, loop_var)
    if step.loop is not None and step.loop.until is not None:
        yield Site(name, "until", "until", step.loop.until)  # a loop's (SPEC section 11)
    if step.condition is not None:
        yield Site(name, "if", "if", step.condition)
    if step.default is not None:
        yield Site(name, "default", "default", step.default)


def index_plan(plan: Plan) -> ExprIndex:
    """The index of a plan's expressions: steps in file order, then outputs."""
    index = ExprIndex()
    for name, step in plan.steps.items():
        start = len(index.read)
        for site in step_sites(step):
            index.add(site)
        loop_var = step.map.var if step.map is not None else None
        index.step_refs[name] = index.steps_read(start, plan.steps, loop_var)
    for output in plan.outputs.values():
        index.add(Site(None, "output", output.name, output.expr))
    return index
