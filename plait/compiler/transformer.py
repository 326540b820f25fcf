"""The lark Transformer: builds syntax-tree nodes (and IR expressions) as the parser reduces.

It runs inline in the LALR parser (no parse tree is built), so spans come from the tokens
each rule keeps. Methods only construct; checking literal values (durations, escapes,
reserved names) goes through small helpers that add diagnostics to `self.diagnostics`.
One instance serves every parse (lark binds it once); `parse.py` resets it per parse
under a lock.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lark import Token as Tok
from lark import Transformer, v_args
from pydantic import BaseModel

from plait.compiler import codes, nodes
from plait.compiler.diagnostics import Diagnostic, error
from plait.compiler.expressions import did_you_mean
from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CallExpr,
    DictEntry,
    DictExpr,
    EnvExpr,
    Expr,
    IndexExpr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    NotExpr,
    TemplateExpr,
    TriggerRule,
    is_literal,
    shared_keys,
)
from plait.compiler.lexical import (
    Interpolation,
    LexicalError,
    decode_string,
    parse_duration,
    parse_factor,
    parse_number,
    parse_percent,
    parse_rate,
)
from plait.compiler.source import Span
from plait.errors import ErrorKind

RESERVED_WORDS = frozenset(
    [
        "plan",
        "step",
        "input",
        "output",
        "resource",
        "defaults",
        "use",
        "for",
        "in",
        "if",
        "not",
        "and",
        "or",
        "true",
        "false",
        "null",
        "env",
        "run",
        "type",
        "tool",
        "loop",
    ]
)
MAX_EXPR_DEPTH = 64  # deeper trees are refused: walkers and JSON round trips recurse
TRIGGER_RULES = tuple(rule.value for rule in TriggerRule)
ERROR_KINDS = tuple(kind.value for kind in ErrorKind)
_SIMPLE_PATH = re.compile(r"[ \t]*(([A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)[ \t]*")
_VALUE_WORDS = frozenset({"not", "true", "false", "null"})  # keywords where a name could start
WHEN_HINT = "`when` takes a trigger rule; to test data use `if`"

# Parses the source of a `${...}` found at (line, column); set by parse.py.
SubParser = Callable[[str, int, int], "Expr | None"]


Model = TypeVar("Model", bound=BaseModel)


def _fast(cls: type[Model]) -> Callable[..., Model]:
    """A constructor for models whose values the parser already knows are valid: pydantic's
    `model_construct` (defaults, then the values; no validation).

    Every instance shares one "fields set" naming every field (as if each was given): a set
    of its own was the largest single allocation of a parse. Holding every name, pydantic's
    `fields_set.add(name)` on an assignment never changes it; only `exclude_unset` dumps
    (not used) would see defaults. tests/compiler/test_parse.py checks each equals its
    validated twin. The fields go into a key-sharing dict (`ir.shared_keys`): a plan keeps
    every expression the parser makes.
    """
    every_field = set(cls.model_fields)
    construct = cls.model_construct

    def build(**values: Any) -> Model:
        return shared_keys(construct(every_field, **values))

    return build


class build:  # lower case: reads as `build.NameExpr(...)`
    """Fast constructors of the IR models the transformer makes (see `_fast`)."""

    Span = Span
    LiteralExpr = staticmethod(_fast(LiteralExpr))
    ListExpr = staticmethod(_fast(ListExpr))
    DictEntry = staticmethod(_fast(DictEntry))
    DictExpr = staticmethod(_fast(DictExpr))
    TemplateExpr = staticmethod(_fast(TemplateExpr))
    NameExpr = staticmethod(_fast(NameExpr))
    EnvExpr = staticmethod(_fast(EnvExpr))
    AttrExpr = staticmethod(_fast(AttrExpr))
    IndexExpr = staticmethod(_fast(IndexExpr))
    CallExpr = staticmethod(_fast(CallExpr))
    BinaryExpr = staticmethod(_fast(BinaryExpr))
    NotExpr = staticmethod(_fast(NotExpr))


# Names (of steps, tools, arguments, fields) are written many times over in a big plan
# (`root.output` in 10,000 steps): one string each, not one per occurrence (~2 MB of a
# 10,000-step plan's IR).
_interned = sys.intern

_tuple_new = tuple.__new__  # Span(...) without the named tuple's Python-level __new__


def span_of(line: int, column: int, end_line: int, end_column: int) -> Span:
    """A Span; the most frequent object of a parse, so built without the keyword call."""
    span: Span = _tuple_new(Span, (line, column, end_line, end_column))
    return span


def join(first: Span, last: Span) -> Span:
    """The span from the start of `first` to the end of `last`."""
    return span_of(first.line, first.column, last.end_line, last.end_column)


@dataclass(frozen=True, slots=True)
class _Block:
    policies: tuple[nodes.PolicyNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class _LoopBlock:
    policies: tuple[nodes.PolicyNode, ...]
    steps: tuple[nodes.StepNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class _Until:
    expr: Expr


@dataclass(frozen=True, slots=True)
class _Every:
    duration: nodes.Duration


@dataclass(frozen=True, slots=True)
class _RetryOn:
    kinds: tuple[nodes.Ident, ...]


@dataclass(frozen=True, slots=True)
class _Backoff:
    base: nodes.Duration
    factor: float | None
    max: nodes.Duration | None
    span: Span


@v_args(inline=True)
class PlanTransformer(Transformer[Tok, Any]):
    """Rule name -> node. See plait.lark for what each rule's children are."""

    def __init__(self) -> None:
        super().__init__()
        self.reset("")

    def reset(self, path: str) -> None:
        self.path = path
        self.diagnostics: list[Diagnostic] = []
        self.origins: list[tuple[int, int]] = []  # where nested `${...}` sources start
        self.depth: dict[int, int] = {}
        self.too_deep = False
        self.sub_parse: SubParser | None = None

    # --- plan items -------------------------------------------------------------------------

    def start(self, *plans: nodes.PlanNode) -> tuple[nodes.PlanNode, ...]:
        return plans

    def interp(self, expr: Expr) -> Expr:
        return expr

    def plan(self, keyword: Tok, name: Tok, *rest: Any) -> nodes.PlanNode:
        description = self._plain(rest[0]) if rest[0].type in ("STRING", "LONG_STRING") else None
        items = tuple(item for item in rest if not isinstance(item, Tok))
        return nodes.PlanNode(self._ident(name), description, items, self._span(keyword, rest[-1]))

    def use(self, keyword: Tok, target: Tok) -> nodes.UseNode:
        return nodes.UseNode(self._plain(target), self._span(keyword, target))

    def input(
        self, keyword: Tok, name: Tok, type_: nodes.TypeRef, default: Expr | None = None
    ) -> nodes.InputNode:
        self._check_literal(default)
        end = default.span if default is not None and default.span else type_.span
        return nodes.InputNode(
            self._name(name, "an input"), type_, default, self._from(keyword, end)
        )

    def type(self, name: Tok, *inner: Any) -> nodes.TypeRef:
        text = f"{name.value}[{inner[1].text}]" if inner else name.value
        return nodes.TypeRef(text, self._span(name, inner[-1] if inner else name))

    def output(self, keyword: Tok, name: Tok, expr: Expr) -> nodes.OutputNode:
        return nodes.OutputNode(self._ident(name), expr, self._from(keyword, _expr_span(expr)))

    def deadline(self, keyword: Tok, duration: Tok) -> nodes.DeadlineNode:
        return nodes.DeadlineNode(self._duration(duration), self._span(keyword, duration))

    def plan_concurrency(self, keyword: Tok, value: Tok) -> nodes.PlanConcurrencyNode:
        return nodes.PlanConcurrencyNode(
            self._int(value, "concurrency"), self._span(keyword, value)
        )

    def plan_max_output(self, keyword: Tok, size: Tok) -> nodes.PlanMaxOutputNode:
        return nodes.PlanMaxOutputNode(parse_size(size.value), self._span(keyword, size))

    def defaults(self, keyword: Tok, *rest: Any) -> nodes.DefaultsNode:
        return nodes.DefaultsNode(tuple(rest[1:-1]), self._span(keyword, rest[-1]))

    def resource(self, keyword: Tok, name: Tok, *rest: Any) -> nodes.ResourceNode:
        return nodes.ResourceNode(
            self._ident(name), tuple(rest[1:-1]), self._span(keyword, rest[-1])
        )

    def rate(self, keyword: Tok, rate: Tok) -> nodes.RateNode:
        count, per_s = self._value(parse_rate, rate, (None, None))
        return nodes.RateNode(count, per_s, self._span(keyword, rate))

    def resource_concurrency(self, keyword: Tok, value: Tok) -> nodes.ResourceConcurrencyNode:
        return nodes.ResourceConcurrencyNode(
            self._int(value, "concurrency"), self._span(keyword, value)
        )

    def breaker(self, keyword: Tok, failures: Tok, word: Tok, *cooldown: Tok) -> nodes.BreakerNode:
        duration = self._duration(cooldown[1]) if cooldown else None
        end = cooldown[1] if cooldown else word
        return nodes.BreakerNode(
            self._int(failures, "breaker after"), duration, self._span(keyword, end)
        )

    # --- steps ------------------------------------------------------------------------------

    def step(
        self, keyword: Tok, name: Tok, body: nodes.Call | nodes.MapCall, block: _Block | None = None
    ) -> nodes.StepNode:
        call = body.call if isinstance(body, nodes.MapCall) else body
        mapped = body if isinstance(body, nodes.MapCall) else None
        end = block.span if block else body.span
        return nodes.StepNode(
            self._name(name, "a step"),
            call,
            mapped,
            block.policies if block else (),
            self._from(keyword, end),
        )

    def map_call(
        self, keyword: Tok, var: Tok, _in: Tok, over: Expr, call: nodes.Call
    ) -> nodes.MapCall:
        return nodes.MapCall(
            self._name(var, "a map variable"), over, call, self._from(keyword, call.span)
        )

    def call(self, tool: nodes.Ident, *rest: Any) -> nodes.Call:
        return nodes.Call(tool, tuple(rest[:-1]), join(tool.span, self._tspan(rest[-1])))

    def tool_name(self, *parts: Tok) -> nodes.Ident:
        name = _interned(".".join(part.value for part in parts))
        return nodes.Ident(name, self._span(parts[0], parts[-1]))

    def arg(self, name: Tok, value: Expr) -> nodes.Arg:
        return nodes.Arg(self._ident(name), value)

    def loop(self, keyword: Tok, name: Tok, _max: Tok, count: Tok, *rest: Any) -> nodes.LoopNode:
        until = next((r.expr for r in rest if isinstance(r, _Until)), None)
        every = next((r.duration for r in rest if isinstance(r, _Every)), None)
        block: _LoopBlock = rest[-1]
        return nodes.LoopNode(
            self._name(name, "a loop"),
            self._int(count, "loop max"),
            self._span(count, count),
            until,
            every,
            block.policies,
            block.steps,
            self._from(keyword, block.span),
        )

    def loop_until(self, _keyword: Tok, expr: Expr) -> _Until:
        return _Until(expr)

    def loop_every(self, _keyword: Tok, duration: Tok) -> _Every:
        return _Every(self._duration(duration))

    def loop_block(self, opening: Tok, *rest: Any) -> _LoopBlock:
        items = rest[:-1]
        steps = tuple(i for i in items if isinstance(i, nodes.StepNode))
        policies = tuple(i for i in items if not isinstance(i, nodes.StepNode))
        return _LoopBlock(policies, steps, self._span(opening, rest[-1]))

    def preset(
        self, keyword: Tok, name: Tok, call: nodes.Call, block: _Block | None = None
    ) -> nodes.PresetNode:
        end = block.span if block else call.span
        return nodes.PresetNode(
            self._name(name, "a tool preset"),
            call,
            block.policies if block else (),
            self._from(keyword, end),
        )

    def step_block(self, opening: Tok, *rest: Any) -> _Block:
        return _Block(tuple(rest[:-1]), self._span(opening, rest[-1]))

    def name_list(self, *names: Tok) -> tuple[nodes.Ident, ...]:
        return tuple(self._ident(name) for name in names)

    # --- policies ---------------------------------------------------------------------------

    def after(self, keyword: Tok, targets: tuple[nodes.Ident, ...]) -> nodes.AfterPolicy:
        return nodes.AfterPolicy(targets, self._from(keyword, targets[-1].span))

    def when(self, keyword: Tok, rule: Tok) -> nodes.WhenPolicy:
        self._check_choice(rule, TRIGGER_RULES, "trigger rule", codes.WHEN_TAKES_RULE, WHEN_HINT)
        return nodes.WhenPolicy(self._ident(rule), self._span(keyword, rule))

    def if_policy(self, keyword: Tok, condition: Expr) -> nodes.IfPolicy:
        return nodes.IfPolicy(condition, self._from(keyword, _expr_span(condition)))

    def timeout(self, keyword: Tok, duration: Tok) -> nodes.TimeoutPolicy:
        return nodes.TimeoutPolicy(self._duration(duration), self._span(keyword, duration))

    def retry(self, keyword: Tok, count: Tok, *rest: Any) -> nodes.RetryNode:
        on = next((r.kinds for r in rest if isinstance(r, _RetryOn)), None)
        backoff = next((r for r in rest if isinstance(r, _Backoff)), None)
        jitter = any(isinstance(r, Tok) for r in rest)
        end = (
            self._tspan(rest[-1])
            if jitter
            else backoff.span
            if backoff
            else on[-1].span
            if on
            else self._tspan(count)
        )
        return nodes.RetryNode(
            self._int(count, "retry"),
            on,
            backoff.base if backoff else None,
            backoff.factor if backoff else None,
            backoff.max if backoff else None,
            jitter,
            self._from(keyword, end),
        )

    def retry_on(self, _keyword: Tok, kinds: tuple[nodes.Ident, ...]) -> _RetryOn:
        for kind in kinds:
            self._check_choice(kind, ERROR_KINDS, "error kind", codes.UNKNOWN_ERROR_KIND, None)
        return _RetryOn(kinds)

    def backoff(self, keyword: Tok, base: Tok, *rest: Tok) -> _Backoff:
        factor = next(
            (self._value(parse_factor, t, None) for t in rest if t.type == "FACTOR"), None
        )
        cap = self._duration(rest[-1]) if rest and rest[-1].type == "DURATION" else None
        return _Backoff(
            self._duration(base), factor, cap, self._span(keyword, rest[-1] if rest else base)
        )

    def fallback(self, keyword: Tok, targets: tuple[nodes.Ident, ...]) -> nodes.FallbackPolicy:
        return nodes.FallbackPolicy(targets, self._from(keyword, targets[-1].span))

    def default(self, keyword: Tok, value: Expr) -> nodes.DefaultPolicy:
        return nodes.DefaultPolicy(value, self._from(keyword, _expr_span(value)))

    def optional(self, keyword: Tok) -> nodes.OptionalPolicy:
        return nodes.OptionalPolicy(self._tspan(keyword))

    def fresh(self, keyword: Tok, duration: Tok) -> nodes.FreshPolicy:
        return nodes.FreshPolicy(self._duration(duration), self._span(keyword, duration))

    def guard(self, keyword: Tok, targets: tuple[nodes.Ident, ...]) -> nodes.GuardPolicy:
        return nodes.GuardPolicy(targets, self._from(keyword, targets[-1].span))

    def compensate(self, keyword: Tok, target: Tok) -> nodes.CompensatePolicy:
        ident = self._ident(target)
        return nodes.CompensatePolicy(ident, self._from(keyword, ident.span))

    def uses(self, keyword: Tok, targets: tuple[nodes.Ident, ...]) -> nodes.UsesPolicy:
        return nodes.UsesPolicy(targets, self._from(keyword, targets[-1].span))

    def map_concurrency(self, keyword: Tok, value: Tok) -> nodes.ConcurrencyPolicy:
        return nodes.ConcurrencyPolicy(self._int(value, "concurrency"), self._span(keyword, value))

    def max_output(self, keyword: Tok, size: Tok) -> nodes.MaxOutputPolicy:
        return nodes.MaxOutputPolicy(parse_size(size.value), self._span(keyword, size))

    def tolerate(self, keyword: Tok, percent: Tok) -> nodes.TolerancePolicy:
        return nodes.TolerancePolicy(
            self._value(parse_percent, percent, 0.0), self._span(keyword, percent)
        )

    # --- expressions ------------------------------------------------------------------------

    def binary(self, left: Expr, op: Tok, right: Expr) -> Expr:
        return self._nest(
            build.BinaryExpr(op=op.value, left=left, right=right, span=_cover(left, right)),
            left,
            right,
        )

    def not_in(self, left: Expr, _not: Tok, _in: Tok, right: Expr) -> Expr:
        return self._nest(
            build.BinaryExpr(op="not in", left=left, right=right, span=_cover(left, right)),
            left,
            right,
        )

    def not_expr(self, keyword: Tok, operand: Expr) -> Expr:
        return self._nest(
            build.NotExpr(operand=operand, span=self._from(keyword, _expr_span(operand))), operand
        )

    def attr(self, value: Expr, field: Tok) -> Expr:
        if isinstance(value, NameExpr) and value.name == "env":
            return build.EnvExpr(
                name=_interned(field.value), span=join(_expr_span(value), self._tspan(field))
            )
        return self._attr(value, field, False)

    def opt_attr(self, value: Expr, _qdot: Tok, field: Tok) -> Expr:
        return self._attr(value, field, True)

    def index(self, value: Expr, index: Expr, closing: Tok) -> Expr:
        return self._index(value, index, closing, False)

    def opt_index(self, value: Expr, _opening: Tok, index: Expr, closing: Tok) -> Expr:
        return self._index(value, index, closing, True)

    def name(self, token: Tok) -> Expr:
        node = build.NameExpr(name=_interned(token.value), span=self._tspan(token))
        self._check_reference(node)
        return node

    def call_expr(self, func: Tok, *rest: Any) -> Expr:
        args = list(rest[:-1])
        return self._nest(
            build.CallExpr(func=_interned(func.value), args=args, span=self._span(func, rest[-1])),
            *args,
        )

    def number(self, token: Tok) -> Expr:
        return self._literal(self._value(parse_number, token, 0), token)

    def string(self, token: Tok) -> Expr:
        return self._string(token)

    def true(self, token: Tok) -> Expr:
        return self._literal(True, token)

    def false(self, token: Tok) -> Expr:
        return self._literal(False, token)

    def null(self, token: Tok) -> Expr:
        return self._literal(None, token)

    def list(self, opening: Tok, *rest: Any) -> Expr:
        items = list(rest[:-1])
        return self._nest(build.ListExpr(items=items, span=self._span(opening, rest[-1])), *items)

    def dict(self, opening: Tok, *rest: Any) -> Expr:
        entries: list[DictEntry] = list(rest[:-1])
        node = build.DictExpr(entries=entries, span=self._span(opening, rest[-1]))
        return self._nest(node, *(entry.value for entry in entries))

    def entry(self, key: Tok, value: Expr) -> DictEntry:
        text = self._plain(key) if key.type in ("STRING", "LONG_STRING") else key.value
        return build.DictEntry(key=text, value=value, key_span=self._tspan(key))

    # --- helpers: spans -----------------------------------------------------------------------

    # _tspan, _span and _from build the Span inline (as `span_of` does) when not inside a
    # `${...}`: a plan keeps ~20 spans per step, and the extra call was a tenth of parsing.

    def _tspan(self, token: Tok) -> Span:
        if not self.origins:
            span: Span = _tuple_new(
                Span, (token.line, token.column, token.end_line, token.end_column)
            )
            return span
        return span_of(
            *self._absolute(token.line, token.column),
            *self._absolute(token.end_line, token.end_column),
        )

    def _span(self, first: Tok, last: Tok) -> Span:
        """From the start of one token to the end of another."""
        if not self.origins:
            span: Span = _tuple_new(
                Span, (first.line, first.column, last.end_line, last.end_column)
            )
            return span
        return span_of(
            *self._absolute(first.line, first.column),
            *self._absolute(last.end_line, last.end_column),
        )

    def _from(self, first: Tok, last: Span) -> Span:
        """From the start of a token to the end of a span."""
        line, column = (
            self._absolute(first.line, first.column) if self.origins else (first.line, first.column)
        )
        return span_of(line or 1, column or 1, last.end_line, last.end_column)

    def _absolute(self, line: int | None, column: int | None) -> tuple[int, int]:
        """Map a position inside a `${...}` source being parsed to its place in the file."""
        line, column = line or 1, column or 1
        if not self.origins:
            return line, column
        origin_line, origin_column = self.origins[-1]
        return (
            (origin_line, origin_column + column - 1)
            if line == 1
            else (origin_line + line - 1, column)
        )

    # --- helpers: values ----------------------------------------------------------------------

    def _ident(self, token: Tok) -> nodes.Ident:
        return nodes.Ident(_interned(token.value), self._tspan(token))

    def _name(self, token: Tok, what: str) -> nodes.Ident:
        """A name that may not be a reserved word (inputs, steps, map variables)."""
        ident = self._ident(token)
        if ident.name in RESERVED_WORDS:
            self._report(
                codes.RESERVED_WORD,
                f"`{ident.name}` is a reserved word and cannot name {what}",
                ident.span,
                f"choose another name, such as `{ident.name}_`",
            )
        return ident

    def _report(self, code: codes.Code, message: str, span: Span, *hints: str | None) -> None:
        self.diagnostics.append(
            error(code, message, span, *(h for h in hints if h), path=self.path)
        )

    def _value(self, convert: Callable[[str], Any], token: Tok, fallback: Any) -> Any:
        try:
            return convert(token.value)
        except LexicalError as problem:
            code = codes.UNKNOWN_DURATION_UNIT if convert is parse_duration else codes.BAD_LITERAL
            self._report(code, problem.message, self._tspan(token), problem.hint)
            return fallback

    def _duration(self, token: Tok) -> nodes.Duration:
        return nodes.Duration(
            token.value, self._value(parse_duration, token, None), self._tspan(token)
        )

    def _int(self, token: Tok, what: str) -> int:
        value = self._value(parse_number, token, 0)
        if isinstance(value, float):
            self._report(
                codes.BAD_LITERAL,
                f"`{what}` takes a whole number, not `{token}`",
                self._tspan(token),
            )
            return int(value) if value == value and abs(value) < 1e18 else 0
        return int(value)

    def _check_choice(
        self,
        token: Tok | nodes.Ident,
        choices: Sequence[str],
        what: str,
        code: codes.Code,
        hint: str | None,
    ) -> None:
        word = token.name if isinstance(token, nodes.Ident) else token.value
        if word not in choices:
            span = token.span if isinstance(token, nodes.Ident) else self._tspan(token)
            self._report(
                code,
                f"unknown {what} `{word}`; use {_one_of(choices)}",
                span,
                *did_you_mean(word, choices),
                hint,
            )

    def _check_reference(self, node: NameExpr) -> None:
        """A reserved word read as a name (`env` and `run` are read through a field)."""
        if node.name in RESERVED_WORDS and node.name not in ("env", "run", "loop") and node.span:
            self._report(
                codes.RESERVED_WORD,
                f"`{node.name}` is a reserved word and cannot be used as a name",
                node.span,
                "choose another name",
            )

    def _check_literal(self, default: Expr | None) -> None:
        if default is not None and not is_literal(default):
            self._report(
                codes.BAD_LITERAL,
                "an input default must be a literal value",
                _expr_span(default),
                "use a string, number, boolean, null, list or dict",
            )

    # --- helpers: expressions -----------------------------------------------------------------

    def _literal(self, value: Any, token: Tok) -> Expr:
        return build.LiteralExpr(value=value, span=self._tspan(token))

    def _attr(self, value: Expr, field: Tok, optional: bool) -> Expr:
        field_span = self._tspan(field)
        node = build.AttrExpr(
            value=value,
            field=_interned(field.value),
            optional=optional,
            field_span=field_span,
            span=join(_expr_span(value), field_span),
        )
        return self._nest(node, value)

    def _index(self, value: Expr, index: Expr, closing: Tok, optional: bool) -> Expr:
        node = build.IndexExpr(
            value=value,
            index=index,
            optional=optional,
            span=join(_expr_span(value), self._tspan(closing)),
        )
        return self._nest(node, value, index)

    def _nest(self, node: Expr, *children: Expr) -> Expr:
        """Record the node's depth; one deeper than MAX_EXPR_DEPTH is replaced by null.

        A child's entry is dropped once its parent has read it (a node has one parent): the
        table holds only expressions still being built, not every node of the file."""
        depth, known = 1, self.depth
        for child in children:
            below = known.pop(id(child), 1)
            if below > depth:
                depth = below
        depth += 1
        if depth > MAX_EXPR_DEPTH:
            if not self.too_deep:
                self.too_deep = True
                self._report(
                    codes.SYNTAX_ERROR,
                    f"expression nested deeper than {MAX_EXPR_DEPTH} levels",
                    _expr_span(node),
                    "split it into steps or simpler expressions",
                )
            return build.LiteralExpr(value=None, span=node.span)
        self.depth[id(node)] = depth
        return node

    def _string(self, token: Tok) -> Expr:
        parts, problems = decode_string(token.value)
        for problem in problems:
            code = codes.BAD_ESCAPE if problem.kind == "escape" else codes.BAD_INTERPOLATION
            self._report(
                code,
                problem.message,
                self._offset_span(token, problem.start, problem.end),
                problem.hint,
            )
        if len(parts) == 1 and isinstance(parts[0], str):
            return self._literal(parts[0], token)
        resolved = [
            part if isinstance(part, str) else self._interpolate(token, part) for part in parts
        ]
        node = build.TemplateExpr(parts=resolved, span=self._tspan(token))
        return self._nest(node, *(part for part in resolved if not isinstance(part, str)))

    def _interpolate(self, token: Tok, part: Interpolation) -> Expr:
        line, column = self._offset_position(token, part.offset)
        simple = _SIMPLE_PATH.fullmatch(part.source)
        if simple and simple.group(2) not in _VALUE_WORDS:
            return self._path(simple, line, column)
        parsed = self.sub_parse(part.source, line, column) if self.sub_parse else None
        if parsed is None:
            end = self._offset_position(token, part.offset + len(part.source))
            return build.LiteralExpr(value=None, span=span_of(line, column, *end))
        return parsed

    def _path(self, match: re.Match[str], line: int, column: int) -> Expr:
        """`${a.b.c}` without the parser: by far the most common interpolation."""
        start = column + match.start(1)
        words = match.group(1).split(".")
        head = build.NameExpr(name=words[0], span=span_of(line, start, line, start + len(words[0])))
        self._check_reference(head)
        expr: Expr = head
        end = start + len(words[0])
        for word in words[1:]:
            field_span = span_of(line, end + 1, line, end + 1 + len(word))
            end += 1 + len(word)
            if isinstance(expr, NameExpr) and expr.name == "env":
                expr = build.EnvExpr(name=word, span=span_of(line, start, line, end))
            else:
                expr = self._nest(
                    build.AttrExpr(
                        value=expr,
                        field=word,
                        optional=False,
                        field_span=field_span,
                        span=span_of(line, start, line, end),
                    ),
                    expr,
                )
        return expr

    def _offset_position(self, token: Tok, offset: int) -> tuple[int, int]:
        """The file position of the character at `offset` in a token's text."""
        text = token.value
        newlines = text.count("\n", 0, offset)
        if newlines:
            line, column = (token.line or 1) + newlines, offset - text.rfind("\n", 0, offset)
            return self._absolute(line, column)
        return self._absolute(token.line or 1, (token.column or 1) + offset)

    def _offset_span(self, token: Tok, start: int, end: int) -> Span:
        return span_of(*self._offset_position(token, start), *self._offset_position(token, end))

    def _plain(self, token: Tok) -> str:
        """A string where interpolation is not allowed (plan description, `use`, dict keys)."""
        parts, problems = decode_string(token.value)
        for problem in problems:
            self._report(
                codes.BAD_ESCAPE,
                problem.message,
                self._offset_span(token, problem.start, problem.end),
                problem.hint,
            )
        if len(parts) != 1 or not isinstance(parts[0], str):
            self._report(
                codes.BAD_INTERPOLATION,
                "`${...}` is not allowed in this string",
                self._tspan(token),
                "write `$${` for a literal `${`",
            )
            return "".join(part for part in parts if isinstance(part, str))
        return parts[0]


def _expr_span(expr: Expr) -> Span:
    return expr.span or span_of(1, 1, 1, 1)


def _cover(left: Expr, right: Expr) -> Span:
    return join(_expr_span(left), _expr_span(right))


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


_SIZE_UNITS = {"B": 1, "kB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}


def parse_size(text: str) -> int:
    """`16MB` -> 16000000 (decimal units; the grammar's SIZE token)."""
    match = re.fullmatch(r"([0-9][0-9_]*(?:\.[0-9]+)?)(GB|MB|kB|B)", text)
    if match is None:
        return 0
    return int(float(match.group(1).replace("_", "")) * _SIZE_UNITS[match.group(2)])
