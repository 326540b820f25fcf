"""Syntax tree -> IR: units to numbers, `defaults` applied, dependencies inferred, spans recorded.

Lowering reports structural errors (E2xx): duplicate names, outputs, resources, policies,
dict keys and arguments; policies `defaults` may not hold; plan settings given twice. It
keeps values as written (range checks are the checks' job) and fills `source.spans` with
the key shapes documented in `plait.compiler.source`.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, TypeVar

from pydantic import BaseModel

from plait.compiler import codes, nodes
from plait.compiler.diagnostics import Diagnostic, Label, error, sort_key
from plait.compiler.expressions import walk
from plait.compiler.index import ExprIndex, Site
from plait.compiler.ir import (
    BreakerPolicy,
    Defaults,
    DictExpr,
    Expr,
    Input,
    ListExpr,
    LiteralExpr,
    LoopSpec,
    MapSpec,
    NameExpr,
    Output,
    Plan,
    Preset,
    Rate,
    Resource,
    RetryPolicy,
    Step,
    TriggerRule,
    Use,
    shared_keys,
)
from plait.compiler.source import SourceMap, Span
from plait.errors import ErrorKind

DEFAULTS_POLICIES = ("timeout", "retry", "uses")
_KINDS = {kind.value: kind for kind in ErrorKind}
_RULES = {rule.value: rule for rule in TriggerRule}


def lower(tree: nodes.PlanNode, source: SourceMap) -> tuple[Plan, list[Diagnostic]]:
    """Turn a parsed plan into the IR; never raises on a tree `parse` produced."""
    plan, diagnostics, _ = lower_indexed(tree, source)
    return plan, diagnostics


def lower_indexed(
    tree: nodes.PlanNode, source: SourceMap
) -> tuple[Plan, list[Diagnostic], ExprIndex]:
    """`lower`, also handing forward the plan's expressions as it walked them (each node with
    its site and parent), for `check_plan` and the graph's edges to read instead of walking
    them again."""
    return _Lowering(tree, source).run()


class _Lowering:
    def __init__(self, tree: nodes.PlanNode, source: SourceMap) -> None:
        self.tree, self.source, self.spans = tree, source, source.spans
        self.diagnostics: list[Diagnostic] = []
        self.names: dict[str, tuple[str, Span]] = {}  # inputs and steps share one namespace
        self.inputs: dict[str, Input] = {}
        self.outputs: dict[str, Output] = {}
        self.resources: dict[str, Resource] = {}
        self.step_nodes: dict[str, nodes.StepNode] = {}
        # SPEC section 11: loops (their body steps are in `step_nodes` too) and presets
        self.loop_nodes: dict[str, nodes.LoopNode] = {}
        self.in_loop: dict[str, str] = {}  # body step -> its loop
        self.preset_nodes: dict[str, nodes.PresetNode] = {}
        self.presets: dict[str, Preset] = {}
        self.uses: list[Use] = []
        self.settings: dict[str, Any] = {}
        self.defaults = Defaults(timeout_s=None, retry=None, uses=[])
        self.default_policies: set[str] = set()
        self.env: set[str] = set()
        self.order: dict[str, int] = {}
        self.index = ExprIndex()

    def run(self) -> tuple[Plan, list[Diagnostic], ExprIndex]:
        self.spans[("plan",)] = self.tree.name.span
        for item in self.tree.items:
            self._item(item)
        self.presets = {name: self._preset(node) for name, node in self.preset_nodes.items()}
        # what a step may read or wait for: steps, and loops as a whole
        self.readable: Container[str] = (
            {**self.step_nodes, **self.loop_nodes} if self.loop_nodes else self.step_nodes
        )
        self.order = {name: index for index, name in enumerate(self.step_nodes)}
        for name in self.loop_nodes:  # a loop sorts with its body (after it, by name)
            self.order.setdefault(name, len(self.order))
        steps = {name: self._step(node) for name, node in self.step_nodes.items()}
        for name, loop in self.loop_nodes.items():
            steps[name] = self._loop(loop)
        if self.loop_nodes:
            _across_loops(steps, self.in_loop)
        for output in self.outputs.values():  # sites in file order: steps, then outputs
            self.index.add(Site(None, "output", output.name, output.expr))
        self._expressions(self.index)
        _mark_standbys(steps)
        plan = Plan(
            plan=self.tree.name.name,
            description=self.tree.description,
            inputs=self.inputs,
            outputs=self.outputs,
            resources=self.resources,
            steps=steps,
            presets=self.presets,
            deadline_s=self.settings.get("deadline"),
            concurrency=self.settings.get("concurrency"),
            max_output=self.settings.get("max_output"),
            defaults=self.defaults,
            uses=self.uses,
            env=sorted(self.env),
            edges=[],
        )
        return plan, sorted(self.diagnostics, key=sort_key), self.index

    # --- plan items -----------------------------------------------------------------------------

    def _item(self, item: nodes.PlanItem) -> None:
        if isinstance(item, nodes.StepNode):
            if self._claim(item.name, "step"):
                self.step_nodes[item.name.name] = item
        elif isinstance(item, nodes.LoopNode):
            if self._claim(item.name, "loop"):
                self.loop_nodes[item.name.name] = item
                for body in item.body:
                    if self._claim(body.name, "step"):
                        self.step_nodes[body.name.name] = body
                        self.in_loop[body.name.name] = item.name.name
        elif isinstance(item, nodes.PresetNode):
            if self._claim(item.name, "preset"):
                self.preset_nodes[item.name.name] = item
        elif isinstance(item, nodes.InputNode):
            self._input(item)
        elif isinstance(item, nodes.OutputNode):
            self._output(item)
        elif isinstance(item, nodes.ResourceNode):
            self._resource(item)
        elif isinstance(item, nodes.DefaultsNode):
            self._defaults(item)
        elif isinstance(item, nodes.UseNode):
            self.spans[("use", str(len(self.uses)))] = item.span
            self.uses.append(Use(target=item.target))
        elif isinstance(item, nodes.DeadlineNode):
            self._setting("deadline", item.duration.seconds, item.span)
        elif isinstance(item, nodes.PlanMaxOutputNode):
            self._setting("max_output", item.size, item.span)
        else:
            self._setting("concurrency", item.value, item.span)

    def _claim(self, name: nodes.Ident, kind: str) -> bool:
        """Record a name in the shared namespace; report a second definition (E201)."""
        first = self.names.get(name.name)
        if first is not None:
            self._duplicate(
                codes.DUPLICATE_NAME,
                f"`{name.name}` is already defined as {_a(first[0])}",
                name.span,
                first[1],
                "names of inputs and steps must be unique",
            )
            return False
        self.names[name.name] = (kind, name.span)
        self.spans[(kind, name.name)] = name.span
        return True

    def _input(self, item: nodes.InputNode) -> None:
        if not self._claim(item.name, "input"):
            return
        if item.default is not None and item.default.span is not None:
            self.spans[("input", item.name.name, "default")] = item.default.span
        if item.default is not None:  # not a site of the plan's index: walked on its own
            scratch = ExprIndex()
            scratch.add(Site(None, "input", item.name.name, item.default))
            self._expressions(scratch)
        self.inputs[item.name.name] = Input(
            name=item.name.name,
            type=item.type.text,
            has_default=item.default is not None,
            default=_json(item.default) if item.default is not None else None,
        )

    def _output(self, item: nodes.OutputNode) -> None:
        name = item.name.name
        if ("output", name) in self.spans:
            self._duplicate(
                codes.DUPLICATE_NAME,
                f"output `{name}` is already defined",
                item.name.span,
                self.spans[("output", name)],
                "output names must be unique",
            )
            return
        self.spans[("output", name)] = item.name.span
        self.outputs[name] = Output(name=name, expr=item.expr)

    def _resource(self, item: nodes.ResourceNode) -> None:
        name = item.name.name
        if ("resource", name) in self.spans:
            self._duplicate(
                codes.DUPLICATE_NAME,
                f"resource `{name}` is already defined",
                item.name.span,
                self.spans[("resource", name)],
                "resource names must be unique",
            )
            return
        self.spans[("resource", name)] = item.name.span
        fields: dict[str, Any] = {}
        for setting in item.settings:
            if self._once(
                fields,
                setting.keyword,
                setting.span,
                ("resource", name, setting.keyword),
                f"resource `{name}`",
            ):
                fields[setting.keyword] = _resource_field(setting)
        self.resources[name] = Resource(
            name=name,
            rate=fields.get("rate"),
            concurrency=fields.get("concurrency"),
            breaker=fields.get("breaker"),
        )

    def _setting(self, key: str, value: Any, span: Span) -> None:
        """`deadline` / plan `concurrency`, each at most once (E206)."""
        if (key,) in self.spans:
            self._duplicate(
                codes.DUPLICATE_PLAN_SETTING,
                f"`{key}` is given twice",
                span,
                self.spans[(key,)],
                "keep one of them",
            )
            return
        self.spans[(key,)] = span
        self.settings[key] = value

    def _defaults(self, item: nodes.DefaultsNode) -> None:
        if ("defaults",) in self.spans:
            self._duplicate(
                codes.DUPLICATE_PLAN_SETTING,
                "`defaults` is given twice",
                item.span,
                self.spans[("defaults",)],
                "merge them into one `defaults` block",
            )
            return
        self.spans[("defaults",)] = item.span
        for policy in item.policies:
            key = policy.keyword
            if key not in DEFAULTS_POLICIES:
                self.diagnostics.append(
                    error(
                        codes.POLICY_NOT_IN_DEFAULTS,
                        f"`{key}` cannot be a default",
                        policy.span,
                        "`defaults` may hold timeout, retry and uses; write others on each step",
                        path=self.source.path,
                    )
                )
                continue
            if key in self.default_policies:
                self._duplicate(
                    codes.DUPLICATE_POLICY,
                    f"`{key}` is given twice in `defaults`",
                    policy.span,
                    self.spans[("defaults", key)],
                    "keep one of them",
                )
                continue
            self.default_policies.add(key)
            self.spans[("defaults", key)] = policy.span
            self._apply_default(policy)

    def _apply_default(self, policy: nodes.PolicyNode) -> None:
        if isinstance(policy, nodes.TimeoutPolicy):
            self.defaults.timeout_s = policy.duration.seconds
        elif isinstance(policy, nodes.RetryNode):
            self.defaults.retry = _retry(policy)
        elif isinstance(policy, nodes.UsesPolicy):
            self.defaults.uses = [target.name for target in policy.targets]
            for target in policy.targets:
                self.spans.setdefault(("defaults", "uses", target.name), target.span)

    # --- steps ----------------------------------------------------------------------------------

    def _step(self, node: nodes.StepNode) -> Step:
        # Runs once per step: each policy is read by its keyword (a keyword names one policy
        # class) rather than through isinstance chains, and the Step is built from one dict
        # (`_adopt`).
        name = node.name.name
        call = node.call
        self.spans[("step", name, "tool")] = call.tool.span
        policies = self._policies(name, node.policies) if node.policies else _NO_POLICIES
        get: Callable[[str], Any] = policies.get  # the policy of that keyword, or None
        args = self._args(name, call) if call.args else {}
        preset = self.presets.get(call.tool.name)
        if preset is not None:
            args = self._preset_args(name, preset, args)
        if self.presets and "tools" in args:
            args["tools"] = _tool_names(args["tools"], self.presets)
        mapped, loop_var, over = node.map, None, None
        if mapped is not None:
            loop_var, over = mapped.var.name, mapped.over
            self.spans[("step", name, "var")] = mapped.var.span
        condition, default = get("if"), get("default")
        condition = condition.condition if condition is not None else None
        default = default.value if default is not None else None
        refs = self._reads(name, over, loop_var, args, condition, default)
        if self.presets and "tools" in args:  # a preset listed in `tools` reads its steps
            refs = refs | self._tools_reads(args["tools"])
        after = self._targets(name, get("after"), "after")
        guard = self._targets(name, get("guard"), "guard")
        depends = refs | {t for t in after if t in self.readable} if after else refs
        if guard:
            depends = depends | {t for t in guard if t in self.step_nodes}
        fresh, compensate = get("fresh"), get("compensate")
        if compensate is not None:
            self.spans.setdefault(
                ("step", name, "compensate", compensate.target.name), compensate.target.span
            )
        when, timeout = get("when"), get("timeout")
        concurrency, tolerate = get("concurrency"), get("tolerate")
        return _adopt_step(
            {  # in the key order of `_fast(Step)`: fields with defaults first
                "args": args,
                "map": _adopt_map({"var": loop_var, "over": over}) if mapped is not None else None,
                "depends_on": sorted(depends, key=self.order.__getitem__)
                if len(depends) > 1
                else list(depends),
                "after": after,
                "when": _when(when) if when is not None else _ALL_SUCCEEDED,
                "condition": condition,
                "timeout_s": timeout.duration.seconds
                if timeout is not None
                else preset.timeout_s
                if preset is not None and preset.timeout_s is not None
                else self.defaults.timeout_s,
                "retry": _retry(get("retry"))
                if get("retry") is not None
                else preset.retry
                if preset is not None and preset.retry is not None
                else self._step_retry(None),
                "fallback": self._targets(name, get("fallback"), "fallback"),
                "default": default,
                "optional": "optional" in policies,
                "uses": self._uses(name, get("uses"))
                if preset is None
                else sorted({*preset.uses, *self._uses(name, get("uses"))}),
                "concurrency": concurrency.value if concurrency is not None else None,
                "tolerate": tolerate.percent if tolerate is not None else None,
                "max_output": get("max_output").size if get("max_output") is not None else None,
                "standby_for": None,
                "preset": preset.name if preset is not None else None,
                "in_loop": self.in_loop.get(name),
                "loop": None,
                "fresh": fresh.duration.seconds if fresh is not None else None,
                "guard": guard,
                "compensate": compensate.target.name if compensate is not None else None,
                "name": name,
                "tool": preset.tool if preset is not None else call.tool.name,
            }
        )

    def _tools_reads(self, tools: Expr) -> set[str]:
        """The steps the arguments of the presets a `tools` list names read (evaluated at
        each of the model's calls, so the step depends on them; SPEC section 11)."""
        listed = [
            self.presets[i.value]
            for i in (tools.items if isinstance(tools, ListExpr) else [])
            if isinstance(i, LiteralExpr) and isinstance(i.value, str) and i.value in self.presets
        ]
        return {
            node.name
            for preset in listed
            for expr in preset.args.values()
            for node, _ in walk(expr)
            if isinstance(node, NameExpr) and node.name in self.readable
        }

    def _preset_args(self, step: str, preset: Preset, args: dict[str, Expr]) -> dict[str, Expr]:
        """The preset's arguments plus the call's; one given twice is an error (E204)."""
        merged = dict(preset.args)
        for arg, value in args.items():
            if arg in merged:
                span = self.spans[("step", step, "arg", arg)]
                self._duplicate(
                    codes.DUPLICATE_ARGUMENT,
                    f"argument `{arg}` is already set by the preset `{preset.name}`",
                    span,
                    self.spans[("preset", preset.name, "arg", arg)],
                    "a preset's arguments are fixed; drop it here or from the preset",
                )
                continue
            merged[arg] = value
        return merged

    def _preset(self, node: nodes.PresetNode) -> Preset:
        name = node.name.name
        args: dict[str, Expr] = {}
        for arg in node.call.args:
            key = ("preset", name, "arg", arg.name.name)
            if arg.name.name in args:
                self._duplicate(
                    codes.DUPLICATE_ARGUMENT,
                    f"argument `{arg.name.name}` is given twice",
                    arg.name.span,
                    self.spans[key],
                    "keep one of them",
                )
                continue
            self.spans[key] = arg.name.span
            args[arg.name.name] = arg.value
        self.spans[("preset", name, "tool")] = node.call.tool.span
        preset = Preset(name=name, tool=node.call.tool.name, args=args, depends_on=[])
        for policy in node.policies:
            key = ("preset", name, "policy", policy.keyword)
            if key in self.spans:
                self._duplicate(
                    codes.DUPLICATE_POLICY,
                    f"`{policy.keyword}` is given twice in preset `{name}`",
                    policy.span,
                    self.spans[key],
                    "keep one of them",
                )
                continue
            self.spans[key] = policy.span
            if isinstance(policy, nodes.TimeoutPolicy):
                preset.timeout_s = policy.duration.seconds
            elif isinstance(policy, nodes.RetryNode):
                preset.retry = _retry(policy)
            elif isinstance(policy, nodes.UsesPolicy):
                preset.uses = [t.name for t in policy.targets]
            else:
                self.diagnostics.append(
                    error(
                        codes.POLICY_NOT_IN_DEFAULTS,
                        f"`{policy.keyword}` cannot be a policy of the preset `{name}`",
                        policy.span,
                        "a preset holds timeout, retry and uses; write others on each step",
                        path=self.source.path,
                    )
                )
        return preset

    def _loop(self, node: nodes.LoopNode) -> Step:
        """The loop as one node of the graph: its own policies (no `defaults`), its `until`."""
        name = node.name.name
        self.spans[("step", name, "max")] = node.max_span
        if node.every is not None:
            self.spans[("step", name, "every")] = node.every.span
        policies = self._policies(name, node.policies) if node.policies else _NO_POLICIES
        get: Callable[[str], Any] = policies.get
        condition, default = get("if"), get("default")
        condition = condition.condition if condition is not None else None
        default = default.value if default is not None else None
        until_refs: set[str] = set()
        if node.until is not None:
            start = len(self.index.read)
            self.index.add(_site(Site, (name, "until", "until", node.until, None)))
            until_refs = self.index.steps_read(start, self.readable, None)
        refs = self._reads(name, None, None, {}, condition, default) | until_refs
        self.index.step_refs[name] = refs
        after = self._targets(name, get("after"), "after")
        timeout, when = get("timeout"), get("when")
        return Step(
            name=name,
            tool="loop",
            args={},
            depends_on=sorted(
                refs | {t for t in after if t in self.readable}, key=self.order.__getitem__
            ),
            after=after,
            when=_when(when) if when is not None else _ALL_SUCCEEDED,
            condition=condition,
            timeout_s=timeout.duration.seconds if timeout is not None else None,
            fallback=self._targets(name, get("fallback"), "fallback"),
            default=default,
            optional="optional" in policies,
            loop=LoopSpec(
                max=node.max,
                until=node.until,
                every_s=node.every.seconds if node.every else None,
                body=[b.name.name for b in node.body if self.in_loop.get(b.name.name) == name],
            ),
        )

    def _policies(
        self, name: str, written: tuple[nodes.PolicyNode, ...]
    ) -> dict[str, nodes.PolicyNode]:
        """Each policy at most once (E202); the first one counts."""
        found: dict[str, nodes.PolicyNode] = {}
        spans = self.spans
        for policy in written:
            keyword = policy.keyword
            key = ("step", name, "policy", keyword)
            if keyword in found:
                self._duplicate(
                    codes.DUPLICATE_POLICY,
                    f"`{keyword}` is given twice in step `{name}`",
                    policy.span,
                    spans[key],
                    "keep one of them",
                )
                continue
            spans[key] = policy.span
            found[keyword] = policy
        return found

    def _once(
        self, found: dict[str, Any], key: str, span: Span, span_key: tuple[str, ...], where: str
    ) -> bool:
        if key in found:
            self._duplicate(
                codes.DUPLICATE_POLICY,
                f"`{key}` is given twice in {where}",
                span,
                self.spans[span_key],
                "keep one of them",
            )
            return False
        self.spans[span_key] = span
        return True

    def _args(self, step: str, call: nodes.Call) -> dict[str, Expr]:
        args: dict[str, Expr] = {}
        spans = self.spans
        for arg in call.args:
            arg_name = arg.name.name
            key = ("step", step, "arg", arg_name)
            if arg_name in args:
                self._duplicate(
                    codes.DUPLICATE_ARGUMENT,
                    f"argument `{arg_name}` is given twice",
                    arg.name.span,
                    spans[key],
                    "keep one of them",
                )
                continue
            spans[key] = arg.name.span
            args[arg_name] = arg.value
        return args

    def _targets(self, step: str, policy: nodes.PolicyNode | None, kind: str) -> list[str]:
        if policy is None:  # else the policy of that keyword: After-, Fallback- or UsesPolicy
            return []  # a new list: each step owns its lists
        targets = policy.targets  # type: ignore[union-attr]
        setdefault = self.spans.setdefault
        for target in targets:
            setdefault(("step", step, kind, target.name), target.span)
        return [target.name for target in targets]  # as written: checks see repeats

    def _step_retry(self, policy: nodes.PolicyNode | None) -> RetryPolicy | None:
        if policy is not None:
            return _retry(policy)  # type: ignore[arg-type]
        inherited = self.defaults.retry  # a shallow copy, as `model_copy()` makes
        return _adopt_retry(inherited.__dict__.copy()) if inherited is not None else None

    def _uses(self, step: str, policy: nodes.PolicyNode | None) -> list[str]:
        if policy is not None:
            return self._targets(step, policy, "uses")
        return list(self.defaults.uses)

    # --- expressions ----------------------------------------------------------------------------

    def _reads(
        self,
        step: str,
        over: Expr | None,
        loop_var: str | None,
        args: dict[str, Expr],
        condition: Expr | None,
        default: Expr | None,
    ) -> set[str]:
        """Walk the step's expressions into the index (its sites in the order of
        `index.step_sites`) and return the steps they read."""
        index = self.index
        start = len(index.read)
        add = index.add
        if over is not None:  # (tuple.__new__: Site's own __new__ is a Python function)
            add(_site(Site, (step, "map", loop_var, over, None)))
        for arg, value in args.items():
            add(_site(Site, (step, "arg", arg, value, loop_var)))
        if condition is not None:
            add(_site(Site, (step, "if", "if", condition, None)))
        if default is not None:
            add(_site(Site, (step, "default", "default", default, None)))
        refs = (
            index.steps_read(start, self.readable, loop_var) if len(index.read) > start else set()
        )
        index.step_refs[step] = refs
        return refs

    def _expressions(self, index: ExprIndex) -> None:
        """What lowering needs from the walked expressions: `env.NAME` reads, and duplicate
        dict keys (E203)."""
        self.env.update(node.name for _, node, _ in index.kinds["env"])  # type: ignore[union-attr]
        for _, node, _ in index.kinds["dict"]:
            self._dict_keys(node)  # type: ignore[arg-type]

    def _dict_keys(self, node: DictExpr) -> None:
        seen: dict[str, Span | None] = {}
        for entry in node.entries:
            if entry.key in seen:
                first = seen[entry.key]
                self.diagnostics.append(
                    error(
                        codes.DUPLICATE_KEY,
                        f"dict key `{entry.key}` is given twice",
                        entry.key_span,
                        "keep one of them",
                        path=self.source.path,
                        labels=(Label(first, "first given here"),) if first else (),
                    )
                )
            else:
                seen[entry.key] = entry.key_span

    def _duplicate(
        self, code: codes.Code, message: str, span: Span, first: Span, hint: str
    ) -> None:
        self.diagnostics.append(
            error(
                code,
                message,
                span,
                hint,
                path=self.source.path,
                labels=(Label(first, "first defined here"),),
            )
        )


# The lowering builds steps, map specs and retry policies from values the parser has
# already typed (a Step's expressions are IR models already), so pydantic's validation would
# only re-check them: built directly instead (~0.15 s at 10,000 steps);
# tests/compiler/test_ir_roundtrip.py checks that the plan still validates and round-trips.
_NO_POLICIES: dict[str, nodes.PolicyNode] = {}  # read only
_site = tuple.__new__
M = TypeVar("M", bound=BaseModel)


def _adopt(cls: type[M]) -> Callable[[dict[str, Any]], M]:
    """`_fast(cls)` for callers that give every field as one dict: pydantic's
    `model_construct` (no validation), every field marked as set, the fields in a
    key-sharing dict (as in `_fast`)."""
    every_field = set(cls.model_fields)
    construct = cls.model_construct

    def adopt(values: dict[str, Any]) -> M:
        return shared_keys(construct(every_field, **values))

    return adopt


_adopt_step = _adopt(Step)
_adopt_map = _adopt(MapSpec)
_adopt_retry = _adopt(RetryPolicy)


_ALL_SUCCEEDED = TriggerRule.ALL_SUCCEEDED


def _when(policy: nodes.WhenPolicy) -> TriggerRule:
    return _RULES.get(policy.rule.name, _ALL_SUCCEEDED)  # unknown: parse reported it


def _retry(node: nodes.RetryNode) -> RetryPolicy:
    on = node.on
    backoff, most = node.backoff, node.max
    return _adopt_retry(
        {  # in the key order of `_fast(RetryPolicy)`
            "on": [_KINDS[kind.name] for kind in on if kind.name in _KINDS]
            if on is not None
            else None,
            "backoff_s": backoff.seconds if backoff and backoff.seconds is not None else 1.0,
            "factor": node.factor if node.factor is not None else 1.0,
            "max_s": most.seconds if most else None,
            "jitter": node.jitter,
            "retries": node.retries,
        }
    )


def _resource_field(setting: nodes.ResourceSetting) -> Any:
    if isinstance(setting, nodes.RateNode):
        if setting.count is None or setting.per_s is None:
            return None
        return Rate(count=setting.count, per_s=setting.per_s)
    if isinstance(setting, nodes.BreakerNode):
        cooldown = (
            setting.cooldown.seconds
            if setting.cooldown and setting.cooldown.seconds is not None
            else 30.0
        )
        return BreakerPolicy(failures=setting.failures, cooldown_s=cooldown)
    return setting.value


def _tool_names(tools: Expr, presets: dict[str, Preset]) -> Expr:
    """`tools = [search, "http.get"]`: a preset named bare becomes its name as text."""
    if not isinstance(tools, ListExpr):
        return tools
    items: list[Expr] = [
        LiteralExpr(value=item.name, span=item.span)
        if isinstance(item, NameExpr) and item.name in presets
        else item
        for item in tools.items
    ]
    return ListExpr(items=items, span=tools.span)


def _across_loops(steps: dict[str, Step], in_loop: dict[str, str]) -> None:
    """References crossing a loop's boundary are the loop's (SPEC section 11): a body step
    depends on body steps only, the loop on what its body reads outside, and a step outside
    that reads a body step depends on the whole loop."""
    order = {name: i for i, name in enumerate(steps)}
    for name, step in steps.items():
        home = in_loop.get(name)
        inside, outside = [], []
        for dep in step.depends_on:
            where = in_loop.get(dep)
            if home is not None and where == home:
                inside.append(dep)
            elif where is not None and where != name:
                outside.append(where)  # a body step of another loop: that loop
            elif dep != name:
                outside.append(dep)
        if home is None:
            step.depends_on = sorted(dict.fromkeys(outside), key=order.__getitem__)
            continue
        step.depends_on = inside
        loop = steps[home]
        loop.depends_on = sorted(
            dict.fromkeys([*loop.depends_on, *(d for d in outside if d != home)]),
            key=order.__getitem__,
        )
    for name, step in steps.items():  # what a loop's `until` reads of its own body is inside
        if step.loop is not None:
            step.depends_on = [d for d in step.depends_on if in_loop.get(d) != name]


def _mark_standbys(steps: dict[str, Step]) -> None:
    """A standby serves the first primary, in source order, whose `fallback` names it."""
    for primary in steps.values():
        for name in primary.standbys():
            standby = steps.get(name)
            if standby is not None and name != primary.name and standby.standby_for is None:
                standby.standby_for = primary.name


def _json(expr: Expr) -> Any:
    """The JSON value of a literal expression (parse already reported anything else)."""
    if isinstance(expr, LiteralExpr):
        return expr.value
    if isinstance(expr, ListExpr):
        return [_json(item) for item in expr.items]
    if isinstance(expr, DictExpr):
        return {entry.key: _json(entry.value) for entry in expr.entries}
    return None


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
