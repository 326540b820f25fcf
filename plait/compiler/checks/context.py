"""What every check may read besides the plan: positions, tools, and shared derived facts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import cast

from plait.compiler.index import ExprIndex, Site, Visit, index_plan
from plait.compiler.ir import CallExpr, Expr, NameExpr, Plan, Step
from plait.compiler.source import SourceMap, Span
from plait.stdlib.registry import READ_FILES, ToolRegistry, UsePolicy


@dataclass
class CheckContext:
    """The plan's surroundings for the checks, and facts derived once and shared by them."""

    plan: Plan
    source: SourceMap
    registry: ToolRegistry
    plan_dir: Path
    # Set by the `use` check: when a module failed to load, tools it would have provided
    # are unknown for a reason already reported, so unknown tools are not reported again.
    use_failed: bool = False
    # The expressions walked once by `lower` (`lower_indexed`); None: walked here, on demand.
    index: ExprIndex | None = None
    # What loading `use` items may execute: a file is only read unless the plan is run
    use_policy: UsePolicy = READ_FILES

    def span(self, *key: str) -> Span | None:
        return self.source.span(*key)

    def step_span(self, step: str, *rest: str) -> Span | None:
        """The span of ("step", step, *rest), else of the step's name."""
        return self.span("step", step, *rest) or self.span("step", step)

    def written(self, step: str, policy: str) -> bool:
        """Whether the step itself wrote `policy` (as opposed to inheriting `defaults`)."""
        return ("step", step, "policy", policy) in self.source.spans

    @cached_property
    def groups(self) -> StepGroups:
        """The few steps each of several passes looks at, found in one loop over the steps
        (each pass looping over every step cost ~1 µs per step and pass at 10,000 steps)."""
        return StepGroups.of(self.plan)

    @cached_property
    def standbys(self) -> dict[str, list[str]]:
        """Each step named in some `fallback` or `compensate`, with the primaries naming it
        in file order."""
        named: dict[str, list[str]] = {}
        for step in self.groups.fallbacks:
            for target in step.standbys():
                named.setdefault(target, []).append(step.name)
        return named

    def role(self, standby: str) -> str:
        """ "a fallback of `P`" or "the compensation of `P`", for messages."""
        primary = self.standbys[standby][0]
        step = self.plan.steps.get(primary)
        if step is not None and step.compensate == standby:
            return f"the compensation of `{primary}`"
        return f"a fallback of `{primary}`"

    @cached_property
    def expressions(self) -> ExprIndex:
        """Every expression node with its site and parent, walked once per plan."""
        return self.index if self.index is not None else index_plan(self.plan)

    @property
    def nodes(self) -> list[Visit]:
        """Every expression node with its site and parent."""
        return self.expressions.nodes

    @property
    def names(self) -> list[tuple[Site, NameExpr, Expr | None]]:
        """Every bare name read, with its site and parent."""
        return cast("list[tuple[Site, NameExpr, Expr | None]]", self.expressions.names)

    @property
    def read(self) -> list[str]:
        """The name each visit of `names` reads, in the same order."""
        return self.expressions.read

    @property
    def calls(self) -> list[tuple[Site, CallExpr, Expr | None]]:
        """Every function call, with its site and parent."""
        return cast("list[tuple[Site, CallExpr, Expr | None]]", self.expressions.kinds["call"])

    def of_kind(self, kind: str) -> list[Visit]:
        """The visits of the nodes whose tag (`node.node`) is `kind`, in order."""
        return self.expressions.of_kind(kind)

    @property
    def step_refs(self) -> dict[str, set[str]]:
        """Step -> the steps its own expressions read (for graph edges)."""
        return self.expressions.step_refs

    @cached_property
    def order(self) -> dict[str, int]:
        """Step name -> its position in the file."""
        return {name: i for i, name in enumerate(self.plan.steps)}


@dataclass
class StepGroups:
    """Steps of the plan picked by a property, each list in file order."""

    maps: list[Step] = field(default_factory=list)  # map steps
    map_policies: list[Step] = field(default_factory=list)  # others with concurrency/tolerate
    fallbacks: list[Step] = field(default_factory=list)  # with a `fallback` or `compensate`
    afters: list[Step] = field(default_factory=list)  # with an `after`
    targets: list[Step] = field(default_factory=list)  # with an `after` or a `fallback`
    independent: list[Step] = field(default_factory=list)  # with no dependency

    @classmethod
    def of(cls, plan: Plan) -> StepGroups:
        groups = cls()
        maps, map_policies, fallbacks = groups.maps, groups.map_policies, groups.fallbacks
        afters, targets, independent = groups.afters, groups.targets, groups.independent
        for step in plan.steps.values():
            if step.map is not None:
                maps.append(step)
            elif step.concurrency is not None or step.tolerate is not None:
                map_policies.append(step)
            if step.fallback or step.compensate:
                fallbacks.append(step)
            if step.after:
                afters.append(step)
            if step.after or step.fallback:
                targets.append(step)
            if not step.depends_on:
                independent.append(step)
        return groups


def quoted(names: Iterable[str]) -> str:
    """`a`, `b` and `c`."""
    items = [f"`{n}`" for n in names]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
