"""A fast path for `parse`: a hand-written recursive-descent parser for well-formed plans.

The grammar (plait.lark) stays the definition of the syntax, and the LALR parser in
parse.py (with transformer.py) stays the one place syntax diagnostics come from. This
module is an accelerator verified against it: for the plans it understands it builds
exactly the tree the LALR parser and the transformer build (same node classes, same field
values, same spans, same IR expression models down to the order of their fields), and for
anything else it declines (raises `Decline`) and `parse` runs the LALR parser as before.
It never reports anything itself: a syntax error, a value the transformer would report (a
bad duration, a reserved word used as a name, an unknown trigger rule, a bad escape, an
expression nested too deeply...), or a construct it was not written for makes it decline.
tests/compiler/test_fastparse.py checks it against the LALR parser on the examples, the
benchmark plans and generated plans, and that it does not decline on the ones it is meant
for (so the speed cannot silently go); tests/compiler/conftest.py has every other compiler
test compare the two on the plans it parses. A construct added to the grammar later is
simply declined here (so still parsed, by LALR) until this module learns it.

Why it is fast (a 10,000-step plan, 1.6 MB: ~0.8 s instead of ~3 s):
- one regex `findall` splits the whole file into tokens (each with the blanks before it,
  stripped) in C, and token offsets and line numbers come from `itertools.accumulate` and
  `map` (C too): the Python code touches each token once, in the parser, which knows what
  it expects next (no tables, no per-token lexer call);
- a dotted name (`s1.output`, `std.echo`) and a number with its unit (`30s`, `10/s`, `25%`)
  are one token each; the parser splits them where the grammar reads several tokens, and
  declines where the LALR lexer would have cut the text elsewhere;
- newlines inside brackets are dropped before parsing (they never matter there), so the
  parser sees statement ends only where they end statements;
- nodes and IR models are built without their constructors (slots and `__dict__` set
  directly, as the transformer's `_fast` does), literal values decoded by the transformer's
  own helpers (lexical.py), so they are the same values.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from itertools import accumulate, compress, count, repeat
from operator import add, contains, sub
from typing import Any, TypeVar

from pydantic import BaseModel

from plait.compiler import nodes
from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CallExpr,
    DictExpr,
    IndexExpr,
    ListExpr,
    NameExpr,
    NotExpr,
    TemplateExpr,
    is_literal,
)
from plait.compiler.lexical import (
    LexicalError,
    decode_string,
    dedent,
    parse_duration,
    parse_factor,
    parse_number,
    parse_percent,
    parse_rate,
)
from plait.compiler.source import Span
from plait.compiler.transformer import (
    _SIMPLE_PATH,
    _VALUE_WORDS,
    ERROR_KINDS,
    MAX_EXPR_DEPTH,
    RESERVED_WORDS,
    TRIGGER_RULES,
    build,
)


class Decline(Exception):
    """The fast path does not handle this text: parse it with the LALR parser."""


# --- tokens ---------------------------------------------------------------------------------

# The grammar's terminals (plait.lark) as parse.py's lexer matches them: blanks, then one
# token, where a word may carry `.word` parts and a number its unit or suffix (`30s`,
# `1m30s`, `10/s`, `25%`). Where the grammar expects a NUMBER, DURATION, RATE, PERCENT or
# FACTOR, the parser checks that the grammar's regex for it (below) reads exactly that
# token there (`_whole`, `_seconds`, `_rate`, `_percent`, `_Parser.value`): otherwise the
# LALR lexer would cut the text elsewhere, and the fast path declines. Any other character
# is a token of its own, which no rule accepts.
_WORD = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER_TEXT = r"-?[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?"
_BLANKS = "\t \f\r\ufeff"  # WS
_SCAN = re.compile(  # each match is one token with the blanks before it
    r"[\t \f\r\ufeff]*+"
    rf"(?:{_WORD}(?:\.{_WORD})*"  # NAME, or NAME.NAME...
    r"|\n"  # _NL
    r"|#[^\n]*"  # COMMENT (dropped)
    r'|"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""'  # LONG_STRING
    r'|"(?!"")(?:[^"\\\n]|\\[^\n])*"'  # STRING
    rf"|{_NUMBER_TEXT}[A-Za-z0-9_.%/]*"  # NUMBER, DURATION, RATE, PERCENT
    r"|\?\?|\?\.|\?\[|==|!=|<=|>=|[<>()\[\]{},:=.;]"  # punctuation, COMPARE
    r"|[\s\S])"
)
_NUMBER = re.compile(_NUMBER_TEXT)
_DURATION = re.compile(r"[0-9][0-9_.]*[A-Za-z0-9_.]*")
_RATE = re.compile(r"[0-9][0-9_.]*/[A-Za-z]*")
_PERCENT = re.compile(r"[0-9][0-9_.]*%")
_FACTOR = re.compile(r"x[0-9][0-9_.]*")
# A `${...}` free of quotes and braces (lexical._PLAIN_INTERPOLATION); group 1 is set when
# it is a plain path (transformer._SIMPLE_PATH), which the transformer reads without its parser.
_PARTS = re.compile(rf"\$\{{(?:[ \t]*({_WORD}(?:\.{_WORD})*)[ \t]*\}}|[^\"{{}}]*\}})")

_WORD_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
_NUMBER_START = _DIGITS | {"-"}
_BRACKETS = frozenset({"(", "[", "?[", "{", ")", "]", "}"})
_OPENERS = frozenset({"(", "[", "?["})
_DICT = "{dict"  # stands for a `{` that opens a dict (the others open blocks)
_END = "\x00end"  # stands after the last token: no rule accepts it, no text is lexed so
_LOOKAHEAD = 8  # that many, so the parser can look ahead without bounds checks
_MAX_NESTING = 48  # parse.py stops at 64 open brackets; stay well clear of that
# A `{` opens a dict after anything but `)`, a name, a string, `defaults` or a line end
# (parse.py); after a word, so only after these keywords, where an expression starts.
_DICT_AFTER = frozenset({"default", "if", "in", "not", "and", "or"})
# Plan items are keywords where an expression starts (parse.py's lexer types them so, as
# they cannot be names there): so they cannot start an expression.
_ITEM_WORDS = frozenset(
    {"plan", "use", "input", "output", "deadline", "defaults", "resource", "step"}
)
_NAME_REFUSED = (RESERVED_WORDS - {"env", "run"}) | _ITEM_WORDS  # not a name in an expression
_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_PRECEDENCE = {"??": 1, "or": 2, "and": 3}
_POSTFIX = frozenset({".", "?.", "[", "?["})
_LITERAL_WORDS = {"true": True, "false": False, "null": None}
_ERROR_KINDS = frozenset(ERROR_KINDS)
_TRIGGER_RULES = frozenset(TRIGGER_RULES)


class _Tokens:
    """A text, or the source of one `${...}` in it, as tokens: their values, start and end
    offsets and line numbers (lists, as the parser reads them by index)."""

    __slots__ = ("ends", "lines", "starts", "values")

    def __init__(self, text: str, start: int, end: int, line: int, nested: bool) -> None:
        found = _SCAN.findall(text, start, end)
        if not found:
            raise Decline
        ends = list(accumulate(map(len, found), initial=start))
        del ends[0]
        values = list(map(str.lstrip, found, repeat(_BLANKS)))
        del found  # the tokens with their blanks: freed now, the tree reuses the memory
        starts = list(map(sub, ends, map(len, values)))
        last = ends[-1]
        if last != end and text[last:end].strip(_BLANKS):
            raise Decline
        if text.find("#", start, end) >= 0:  # comments (or a `#` in a string)
            comments = list(compress(range(len(values)), map(str.startswith, values, repeat("#"))))
            if comments:
                keep = _without(len(values), comments)
                values = list(compress(values, keep))
                starts = list(compress(starts, keep))
                ends = list(compress(ends, keep))
        # line numbers: count the newlines in the tokens before (line ends, `"""` strings)
        newlines: list[int] = list(map(contains, values, repeat("\n")))
        for k in compress(range(len(values)), newlines):
            if values[k] != "\n":
                newlines[k] = values[k].count("\n")
        lines = list(accumulate(newlines, initial=line))
        del lines[-1], newlines
        dropped = _bracket_newlines(values, nested)
        if dropped:
            keep = _without(len(values), dropped)
            values = list(compress(values, keep))
            starts = list(compress(starts, keep))
            ends = list(compress(ends, keep))
            lines = list(compress(lines, keep))
        values.extend(repeat(_END, _LOOKAHEAD))
        starts.extend(repeat(last, _LOOKAHEAD))
        ends.extend(repeat(last, _LOOKAHEAD))
        lines.extend(repeat(lines[-1] if lines else line, _LOOKAHEAD))
        self.values, self.starts, self.ends, self.lines = values, starts, ends, lines


def _without(size: int, dropped: list[int]) -> list[bool]:
    keep = [True] * size
    for k in dropped:
        keep[k] = False
    return keep


def _bracket_newlines(values: list[str], nested: bool) -> list[int]:
    """The newlines to drop: those inside ( ) [ ] and a dict's { }, and any in a `${...}`
    (`nested`): parse.py drops them (SPEC section 2). Also replaces each `{` that opens a
    dict by `_DICT`, by parse.py's rule; the parser checks the mark wherever it meets a
    `{`, so a wrong guess here can only make it decline. Only brackets are visited: the
    newlines between an outermost bracket and its closer are found by a list search."""
    if nested:
        if ";" in values:
            raise Decline  # an error parse.py reports
        newlines = [k for k, value in enumerate(values) if value == "\n"]
        for k, value in enumerate(values):
            if value == "{" and _opens_dict(values, k, ["("]):
                values[k] = _DICT
        return newlines
    drop: list[int] = []
    stack: list[str] = []
    opened = 0  # where the outermost open bracket is
    for k in compress(range(len(values)), map(_BRACKETS.__contains__, values)):
        value = values[k]
        if value == "{" and values[k - 1] != ")":  # after `)`: a step's block
            if _opens_dict(values, k, stack):
                values[k] = _DICT
                value = "("
            elif stack:
                raise Decline  # a block inside brackets: never in a valid plan
        if value == "{":
            continue  # blocks are not tracked: newlines end statements in them
        if value in _OPENERS:
            if not stack:
                opened = k
            stack.append(value)
            if len(stack) > _MAX_NESTING:
                raise Decline
        elif stack:  # a closer closes whatever is open, as in parse.py
            stack.pop()
            if not stack:
                _inner_newlines(values, opened, k, drop)
    if stack:
        raise Decline  # unclosed: an error parse.py reports
    return drop


def _inner_newlines(values: list[str], first: int, last: int, drop: list[int]) -> None:
    """Collect the newlines between an outermost bracket and its closer."""
    inside = values[first:last]
    if ";" in inside:
        raise Decline  # an error parse.py reports
    if "\n" in inside:
        drop.extend(first + i for i, value in enumerate(inside) if value == "\n")


def _opens_dict(values: list[str], k: int, stack: list[str]) -> bool:
    j = k - 1
    while j >= 0 and values[j] == "\n":
        j -= 1
    if j < 0:
        return bool(stack)  # a `${...}` source starts where an expression does
    if j < k - 1 and not stack:
        return False  # after a statement end (no statement starts with `{`)
    before = values[j]
    if before in _DICT_AFTER:
        return j < 1 or values[j - 1] not in ("plan", "resource")  # else it names them
    return not (before == ")" or before[0] == '"' or before[0] in _WORD_START)


# --- building -------------------------------------------------------------------------------

_new = object.__new__
_tuple_new = tuple.__new__  # a Span without the named tuple's Python-level __new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _ir(make: Callable[..., BaseModel], **sample: Any) -> Callable[..., Any]:
    """A constructor of the IR model the transformer's `make` (`build.X`) builds: the same
    instance (same `__dict__`, key order included, the same shared fields set) from the
    field values given positionally, in the order `make` leaves them in `__dict__` (the
    constant `node` left out). `sample` is a call with the transformer's keywords, in its
    order. Generated, as `_slots` is, so building one is a single call."""
    model = make(**sample)
    keys = list(model.__dict__)
    params = [key for key in keys if key != "node"]
    entries = ", ".join(
        f"{key!r}: {model.__dict__[key]!r}" if key == "node" else f"{key!r}: {key}" for key in keys
    )
    scope: dict[str, Any] = {
        "new": _new,
        "cls": type(model),
        "fields": model.__pydantic_fields_set__,
        "set_dict": _set_dict,
        "set_fields": _set_fields,
        "set_extra": _set_extra,
        "set_private": _set_private,
    }
    exec(
        f"def make({', '.join(params)}):\n"
        "    model = new(cls)\n"
        f"    set_dict(model, {{{entries}}})\n"
        "    set_fields(model, fields)\n"
        "    set_extra(model, None)\n"
        "    set_private(model, None)\n"
        "    return model\n",
        scope,
    )
    built: Callable[..., Any] = scope["make"]
    return built


# The arguments, in `__dict__` order: the comment after each.
_LiteralExpr = _ir(build.LiteralExpr, value=None, span=None)  # span, value
_NameExpr = _ir(build.NameExpr, name="", span=None)  # span, name
_EnvExpr = _ir(build.EnvExpr, name="", span=None)  # span, name
_AttrExpr = _ir(  # span, optional, field_span, value, field
    build.AttrExpr, value=None, field="", optional=False, field_span=None, span=None
)
_IndexExpr = _ir(  # span, optional, value, index
    build.IndexExpr, value=None, index=None, optional=False, span=None
)
_ListExpr = _ir(build.ListExpr, items=[], span=None)  # span, items
_DictExpr = _ir(build.DictExpr, entries=[], span=None)  # span, entries
_DictEntry = _ir(build.DictEntry, key="", value=None, key_span=None)  # key_span, key, value
_TemplateExpr = _ir(build.TemplateExpr, parts=[], span=None)  # span, parts
_CallExpr = _ir(build.CallExpr, func="", args=[], span=None)  # span, func, args
_BinaryExpr = _ir(  # span, op, left, right
    build.BinaryExpr, op="??", left=None, right=None, span=None
)
_NotExpr = _ir(build.NotExpr, operand=None, span=None)  # span, operand


def _binary(op: str, left: Any, right: Any) -> Any:
    a, b = left.span, right.span
    return _BinaryExpr(_tuple_new(Span, (a[0], a[1], b[2], b[3])), op, left, right)


def _slots(cls: type) -> Callable[..., Any]:
    """A constructor of a frozen slotted dataclass that sets its slots directly: the same
    instance as its `__init__` makes (these classes compute and check nothing), in half the
    time. Generated, as dataclasses generate `__init__`, so each field is one call."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"new": _new, "cls": cls}
    for i, name in enumerate(names):
        scope[f"set{i}"] = cls.__dict__[name].__set__
    args = ", ".join(f"a{i}" for i in range(len(names)))
    body = "".join(f"    set{i}(node, a{i})\n" for i in range(len(names)))
    exec(f"def make({args}):\n    node = new(cls)\n{body}    return node\n", scope)
    make: Callable[..., Any] = scope["make"]
    return make


_Ident = _slots(nodes.Ident)
_Duration = _slots(nodes.Duration)
_Arg = _slots(nodes.Arg)
_Call = _slots(nodes.Call)
_MapCall = _slots(nodes.MapCall)
_StepNode = _slots(nodes.StepNode)
_UsesPolicy = _slots(nodes.UsesPolicy)
_TimeoutPolicy = _slots(nodes.TimeoutPolicy)
_RetryNode = _slots(nodes.RetryNode)
_OptionalPolicy = _slots(nodes.OptionalPolicy)
_IfPolicy = _slots(nodes.IfPolicy)
_WhenPolicy = _slots(nodes.WhenPolicy)
_AfterPolicy = _slots(nodes.AfterPolicy)
_FallbackPolicy = _slots(nodes.FallbackPolicy)
_DefaultPolicy = _slots(nodes.DefaultPolicy)
_ConcurrencyPolicy = _slots(nodes.ConcurrencyPolicy)
_TolerancePolicy = _slots(nodes.TolerancePolicy)


# --- the parser -----------------------------------------------------------------------------


def parse_plan(text: str) -> nodes.PlanNode:
    """The plan in `text`, exactly as parse.py's LALR parser and the transformer build it;
    raises `Decline` for anything else (every error included)."""
    # per line number, the offset of the newline before it (-1 for the first line)
    line_lengths = accumulate(map(len, text.split("\n")))
    line_starts = [0, -1, *map(add, line_lengths, count())]
    del line_starts[-1]  # after the last line
    parser = _Parser(text, _Tokens(text, 0, len(text), 1, False), line_starts)
    return parser.plan()


class _Parser:
    """One token stream: the whole file, or the source of one `${...}` in it.

    Each method takes the index of the token it starts at and returns what it built and
    the index after it. Positions are file positions throughout (a `${...}` source is
    tokenized in place), so spans need no mapping.
    """

    __slots__ = ("composites", "ends", "line_starts", "lines", "starts", "text", "values")

    def __init__(self, text: str, tokens: _Tokens, line_starts: list[int]) -> None:
        self.text = text
        self.values, self.starts, self.lines = tokens.values, tokens.starts, tokens.lines
        self.ends = tokens.ends
        # per line number, the offset before its first character: column = offset - that
        self.line_starts = line_starts
        self.composites = 0  # expression nodes with children (for the nesting limit)

    # --- spans ------------------------------------------------------------------------------

    def tspan(self, k: int) -> Span:
        """The span of token k (a one-line token: strings go through `string_span`)."""
        line = self.lines[k]
        before = self.line_starts[line]
        span: Span = _tuple_new(Span, (line, self.starts[k] - before, line, self.ends[k] - before))
        return span

    def span(self, first: int, last: int) -> Span:
        """From the start of token `first` to the end of (one-line) token `last`."""
        lines, line_starts = self.lines, self.line_starts
        line, end_line = lines[first], lines[last]
        span: Span = _tuple_new(
            Span,
            (
                line,
                self.starts[first] - line_starts[line],
                end_line,
                self.ends[last] - line_starts[end_line],
            ),
        )
        return span

    def start_to(self, first: int, end: Span) -> Span:
        """From the start of token `first` to the end of a span."""
        line = self.lines[first]
        span: Span = _tuple_new(
            Span, (line, self.starts[first] - self.line_starts[line], end[2], end[3])
        )
        return span

    def string_span(self, first: int, last: int) -> Span:
        """From token `first` to the end of string token `last` (which may span lines)."""
        value = self.values[last]
        line, end_line = self.lines[first], self.lines[last]
        newlines = value.count("\n")
        if newlines:
            end_line += newlines
            end_column = len(value) - value.rindex("\n")
        else:
            end_column = self.ends[last] - self.line_starts[end_line]
        start = self.starts[first] - self.line_starts[line]
        span: Span = _tuple_new(Span, (line, start, end_line, end_column))
        return span

    # --- plan -------------------------------------------------------------------------------

    def plan(self) -> nodes.PlanNode:
        values = self.values
        i = self.skip_ends(0)
        if values[i] != "plan":
            raise Decline
        ident = self.word(i + 1)
        k = i + 2
        description = None
        if values[k][0] == '"':
            description = self.plain(k)
            k += 1
        if values[k] != "{":
            raise Decline
        items, k = self.block(k + 1, _PLAN_ITEMS)
        plan = nodes.PlanNode(ident, description, tuple(items), self.span(i, k))
        if values[self.skip_ends(k + 1)] != _END:
            raise Decline  # a second plan, or items after the plan's `}`
        return plan

    def skip_ends(self, k: int) -> int:
        """Past a run of statement ends (line ends and `;`)."""
        values = self.values
        while values[k] == "\n" or values[k] == ";":
            k += 1
        return k

    def block(
        self, k: int, kinds: dict[str, Callable[[_Parser, int], tuple[Any, int]]]
    ) -> tuple[list[Any], int]:
        """`(ITEM END)* ITEM? }` from after a block's `{`: the items, and where `}` is.
        `kinds` maps an item's keyword to the method that reads it."""
        values = self.values
        items = []
        k = self.skip_ends(k)
        while values[k] != "}":
            read = kinds.get(values[k])
            if read is None:
                raise Decline
            node, k = read(self, k)
            items.append(node)
            value = values[k]
            if value == "\n" or value == ";":
                k += 1
                value = values[k]
                if value == "\n" or value == ";":
                    k = self.skip_ends(k)
            elif value != "}":
                raise Decline
        return items, k

    def word(self, k: int) -> nodes.Ident:
        """A name where any word is one (plan, output, resource, argument, ...)."""
        name = self.values[k]
        if name[0] not in _WORD_START or "." in name:
            raise Decline
        line = self.lines[k]
        before = self.line_starts[line]
        span = _tuple_new(Span, (line, self.starts[k] - before, line, self.ends[k] - before))
        return _Ident(name, span)  # type: ignore[no-any-return]

    def new_name(self, k: int) -> nodes.Ident:
        """A name that may not be a reserved word (inputs, steps, map variables)."""
        if self.values[k] in RESERVED_WORDS:
            raise Decline  # the transformer reports it
        return self.word(k)

    def use(self, k: int) -> tuple[nodes.UseNode, int]:
        if self.values[k + 1][0] != '"':
            raise Decline
        target = self.plain(k + 1)
        return nodes.UseNode(target, self.string_span(k, k + 1)), k + 2

    def input(self, k: int) -> tuple[nodes.InputNode, int]:
        values = self.values
        name = self.new_name(k + 1)
        if values[k + 2] != ":":
            raise Decline
        type_, j = self.type_ref(k + 3)
        default = None
        end = type_.span
        if values[j] == "=":
            default, j = self.expr(j + 1)
            if not is_literal(default):
                raise Decline
            end = default.span
        return nodes.InputNode(name, type_, default, self.start_to(k, end)), j

    def type_ref(self, k: int) -> tuple[nodes.TypeRef, int]:
        name = self.word(k).name
        if self.values[k + 1] != "[":
            return nodes.TypeRef(name, self.tspan(k)), k + 1
        inner, j = self.type_ref(k + 2)
        if self.values[j] != "]":
            raise Decline
        return nodes.TypeRef(f"{name}[{inner.text}]", self.span(k, j)), j + 1

    def output(self, k: int) -> tuple[nodes.OutputNode, int]:
        ident = self.word(k + 1)
        if self.values[k + 2] != "=":
            raise Decline
        expr, j = self.expr(k + 3)
        return nodes.OutputNode(ident, expr, self.start_to(k, expr.span)), j

    def deadline(self, k: int) -> tuple[nodes.DeadlineNode, int]:
        duration, j = self.duration(k + 1)
        return nodes.DeadlineNode(duration, self.start_to(k, duration.span)), j

    def plan_concurrency(self, k: int) -> tuple[nodes.PlanConcurrencyNode, int]:
        return nodes.PlanConcurrencyNode(self.whole(k + 1), self.span(k, k + 1)), k + 2

    def defaults(self, k: int) -> tuple[nodes.DefaultsNode, int]:
        if self.values[k + 1] != "{":
            raise Decline
        policies, end = self.block(k + 2, _POLICIES)
        return nodes.DefaultsNode(tuple(policies), self.span(k, end)), end + 1

    def resource(self, k: int) -> tuple[nodes.ResourceNode, int]:
        ident = self.word(k + 1)
        if self.values[k + 2] != "{":
            raise Decline
        settings, end = self.block(k + 3, _SETTINGS)
        return nodes.ResourceNode(ident, tuple(settings), self.span(k, end)), end + 1

    def rate(self, k: int) -> tuple[nodes.RateNode, int]:
        rate = _rate(self.values[k + 1])
        if rate is None:
            raise Decline
        return nodes.RateNode(*rate, self.span(k, k + 1)), k + 2

    def resource_concurrency(self, k: int) -> tuple[nodes.ResourceConcurrencyNode, int]:
        return nodes.ResourceConcurrencyNode(self.whole(k + 1), self.span(k, k + 1)), k + 2

    def breaker(self, k: int) -> tuple[nodes.BreakerNode, int]:
        values = self.values
        if values[k + 1] != "after" or values[k + 3] != "failures":
            raise Decline
        failures = self.whole(k + 2)
        if values[k + 4] != "cooldown":
            return nodes.BreakerNode(failures, None, self.span(k, k + 3)), k + 4
        cooldown, end = self.duration(k + 5)
        return nodes.BreakerNode(failures, cooldown, self.span(k, end - 1)), end

    # --- steps ------------------------------------------------------------------------------

    def step(self, k: int) -> tuple[nodes.StepNode, int]:
        values = self.values
        name = values[k + 1]
        if name[0] not in _WORD_START or "." in name or name in RESERVED_WORDS:
            raise Decline  # not a name, or a reserved word (the transformer reports it)
        line = self.lines[k + 1]
        before = self.line_starts[line]
        column, end_column = self.starts[k + 1] - before, self.ends[k + 1] - before
        ident = _Ident(name, _tuple_new(Span, (line, column, line, end_column)))
        if values[k + 2] != "=":
            raise Decline
        mapped = None
        if values[k + 3] == "for":
            var = self.new_name(k + 4)
            if values[k + 5] != "in":
                raise Decline
            over, j = self.expr(k + 6)
            if values[j] != ":":
                raise Decline
            call, j = self.call(j + 1)
            mapped = _MapCall(var, over, call, self.start_to(k + 3, call.span))
        else:
            call, j = self.call(k + 3)
        if values[j] != "{":
            end = call.span if mapped is None else mapped.span
            return _StepNode(ident, call, mapped, (), self.start_to(k, end)), j
        policies, j = self.block(j + 1, _POLICIES)
        line, end_line = self.lines[k], self.lines[j]
        span = _tuple_new(
            Span,
            (
                line,
                self.starts[k] - self.line_starts[line],
                end_line,
                self.ends[j] - self.line_starts[end_line],
            ),
        )
        return _StepNode(ident, call, mapped, tuple(policies), span), j + 1

    def call(self, k: int) -> tuple[nodes.Call, int]:
        """`TOOL(ARG = EXPR, ...)`; the tool name may be one token (`std.echo`) or several.
        The hottest path of a plan: spans are built inline."""
        values, lines, starts, ends = self.values, self.lines, self.starts, self.ends
        line_starts = self.line_starts
        tool = values[k]
        if tool[0] not in _WORD_START or tool.partition(".")[0] == "for":
            raise Decline  # `for` is a keyword there
        line = lines[k]
        column = starts[k] - line_starts[line]
        j = k
        if values[k + 1] == ".":  # `a . b`: several tokens
            while values[j + 1] == ".":
                j += 2
                if values[j][0] not in _WORD_START:
                    raise Decline
            tool = "".join(values[k : j + 1])
        end_line = lines[j]
        span = _tuple_new(Span, (line, column, end_line, ends[j] - line_starts[end_line]))
        ident = _Ident(tool, span)
        if values[j + 1] != "(":
            raise Decline
        j += 2
        args = []
        while values[j] != ")":
            name = values[j]
            if name[0] not in _WORD_START or "." in name or values[j + 1] != "=":
                raise Decline
            name_line = lines[j]
            before = line_starts[name_line]
            span = _tuple_new(Span, (name_line, starts[j] - before, name_line, ends[j] - before))
            self.composites = 0
            value, j = self.binary(j + 2, 1, 0)
            if self.composites >= MAX_EXPR_DEPTH - 1 and _too_deep(value):
                raise Decline  # the transformer reports it
            args.append(_Arg(_Ident(name, span), value))
            if values[j] == ",":
                j += 1
            elif values[j] != ")":
                raise Decline
        end_line = lines[j]
        span = _tuple_new(Span, (line, column, end_line, ends[j] - line_starts[end_line]))
        return _Call(ident, tuple(args), span), j + 1

    # --- policies ---------------------------------------------------------------------------

    def uses(self, k: int) -> tuple[nodes.UsesPolicy, int]:
        targets, j = self.names(k + 1)
        line, end = self.lines[k], targets[-1].span
        span = _tuple_new(Span, (line, self.starts[k] - self.line_starts[line], end[2], end[3]))
        return _UsesPolicy(targets, span), j

    def after(self, k: int) -> tuple[nodes.AfterPolicy, int]:
        targets, j = self.names(k + 1)
        return _AfterPolicy(targets, self.start_to(k, targets[-1].span)), j

    def fallback(self, k: int) -> tuple[nodes.FallbackPolicy, int]:
        targets, j = self.names(k + 1)
        return _FallbackPolicy(targets, self.start_to(k, targets[-1].span)), j

    def timeout(self, k: int) -> tuple[nodes.TimeoutPolicy, int]:
        duration, j = self.duration(k + 1)
        line, end = self.lines[k], duration.span
        span = _tuple_new(Span, (line, self.starts[k] - self.line_starts[line], end[2], end[3]))
        return _TimeoutPolicy(duration, span), j

    def optional(self, k: int) -> tuple[nodes.OptionalPolicy, int]:
        return _OptionalPolicy(self.tspan(k)), k + 1

    def if_policy(self, k: int) -> tuple[nodes.IfPolicy, int]:
        condition, j = self.expr(k + 1)
        return _IfPolicy(condition, self.start_to(k, condition.span)), j

    def default(self, k: int) -> tuple[nodes.DefaultPolicy, int]:
        value, j = self.expr(k + 1)
        return _DefaultPolicy(value, self.start_to(k, value.span)), j

    def when(self, k: int) -> tuple[nodes.WhenPolicy, int]:
        rule = self.values[k + 1]
        if rule not in _TRIGGER_RULES:
            raise Decline  # the transformer reports it
        return _WhenPolicy(_Ident(rule, self.tspan(k + 1)), self.span(k, k + 1)), k + 2

    def map_concurrency(self, k: int) -> tuple[nodes.ConcurrencyPolicy, int]:
        return _ConcurrencyPolicy(self.whole(k + 1), self.span(k, k + 1)), k + 2

    def tolerate(self, k: int) -> tuple[nodes.TolerancePolicy, int]:
        percent = _percent(self.values[k + 1])
        if percent is None:
            raise Decline
        return _TolerancePolicy(percent, self.span(k, k + 1)), k + 2

    def names(self, k: int) -> tuple[tuple[nodes.Ident, ...], int]:
        """`NAME ("," NAME)*`: any word is a name here (`word`, inline)."""
        values, lines, starts, ends = self.values, self.lines, self.starts, self.ends
        line_starts = self.line_starts
        found = []
        while True:
            name = values[k]
            if name[0] not in _WORD_START or "." in name:
                raise Decline
            line = lines[k]
            before = line_starts[line]
            span = _tuple_new(Span, (line, starts[k] - before, line, ends[k] - before))
            found.append(_Ident(name, span))
            if values[k + 1] != ",":
                return tuple(found), k + 1
            k += 2

    def retry(self, k: int) -> tuple[nodes.RetryNode, int]:
        """`retry N [on KIND, ...] [backoff DUR [xFACTOR] [max DUR]] [jitter]`."""
        values = self.values
        count = self.whole(k + 1)
        j = k + 2
        end = None  # the span of the last part
        on = base = cap = factor = None
        jitter = False
        if values[j] == "on":
            on, j = self.names(j + 1)
            for kind in on:
                if kind.name not in _ERROR_KINDS:
                    raise Decline  # the transformer reports it
            end = on[-1].span
        if values[j] == "backoff":
            base, j = self.duration(j + 1)
            end = base.span
            word = values[j]
            if word[0] == "x" and (match := _FACTOR.match(self.text, self.starts[j])):
                if match.end() == self.ends[j]:
                    text, j = word, j + 1
                else:  # `x1.5`: more than one of our tokens
                    text, j = self.value(j, _FACTOR)
                try:
                    factor = parse_factor(text)
                except LexicalError:
                    raise Decline from None
                end = self.tspan(j - 1)
            if values[j] == "max":
                cap, j = self.duration(j + 1)
                end = cap.span
        if values[j] == "jitter":
            jitter = True
            end = self.tspan(j)
            j += 1
        span = self.start_to(k, end if end is not None else self.tspan(k + 1))
        return _RetryNode(count, on, base, factor, cap, jitter, span), j

    # --- values -----------------------------------------------------------------------------

    def whole(self, k: int) -> int:
        """A NUMBER that must be a whole number (`retry`, `concurrency`, `breaker after`)."""
        value = _whole(self.values[k])
        if value is None:
            raise Decline
        return value

    def value(self, k: int, pattern: re.Pattern[str]) -> tuple[str, int]:
        """The NUMBER, DURATION, RATE, PERCENT or FACTOR at token k, as parse.py's lexer
        reads it where the grammar expects one (`pattern` is that terminal's regex), and
        the index after it. Declines unless it ends where one of our tokens ends."""
        values, starts = self.values, self.starts
        first = values[k][0]
        if first not in _DIGITS and first != "x" and first != "-":
            raise Decline
        start = starts[k]
        match = pattern.match(self.text, start)
        if match is None:
            raise Decline
        end = match.end()
        if end == start + len(values[k]):
            return match.group(), k + 1
        j = k  # longer than our token (`x1.5`): find the token it ends with
        while starts[j] + len(values[j]) < end:
            j += 1
            if values[j] == "\n" or values[j] == _END:
                raise Decline
        if starts[j] + len(values[j]) != end:
            raise Decline
        return match.group(), j + 1

    def duration(self, k: int) -> tuple[nodes.Duration, int]:
        text = self.values[k]
        seconds = _seconds(text)
        if seconds is None:
            raise Decline
        line = self.lines[k]
        before = self.line_starts[line]
        span = _tuple_new(Span, (line, self.starts[k] - before, line, self.ends[k] - before))
        return _Duration(text, seconds, span), k + 1

    def plain(self, k: int) -> str:
        """A string where interpolation is not allowed (plan description, `use`, dict keys)."""
        token = self.values[k]
        if len(token) < 2:
            raise Decline  # a lone `"`: unterminated
        if "\\" not in token and "$" not in token:
            if not token.startswith('"""'):
                return token[1:-1]
            text, base = _one_line(token)
            if base >= 0:
                return text
        parts, problems = decode_string(token)
        if problems or len(parts) != 1 or not isinstance(parts[0], str):
            raise Decline  # the transformer reports it
        return parts[0]

    # --- expressions ------------------------------------------------------------------------

    def expr(self, k: int) -> tuple[Any, int]:
        """An expression, held to the transformer's nesting limit."""
        self.composites = 0
        expr, k = self.binary(k, 1, 0)
        if self.composites >= MAX_EXPR_DEPTH - 1 and _too_deep(expr):
            raise Decline  # the transformer reports it
        return expr, k

    def binary(self, k: int, weakest: int, nesting: int) -> tuple[Any, int]:
        """`??`, `or`, `and` (left-associative, loosest first) over `not` and comparisons:
        precedence climbing, operators of at least `weakest` strength."""
        values = self.values
        if values[k] == "not":
            left, k = self.negation(k, nesting)
        else:
            left, k = self.postfix(k, nesting)
            op = values[k]
            if op in _COMPARE or op == "not":
                left, k = self.comparison(left, k, nesting)
        op = values[k]
        strength = _PRECEDENCE.get(op)
        while strength is not None and strength >= weakest:
            right, k = self.binary(k + 1, strength + 1, nesting)
            left = _binary(op, left, right)
            self.composites += 1
            op = values[k]
            strength = _PRECEDENCE.get(op)
        return left, k

    def negation(self, k: int, nesting: int) -> tuple[Any, int]:
        """`not X`: X is a negation, a comparison or a postfix (`not a and b` negates `a`)."""
        if nesting > _MAX_NESTING:
            raise Decline
        values = self.values
        if values[k + 1] == "not":
            operand, j = self.negation(k + 1, nesting + 1)
        else:
            operand, j = self.postfix(k + 1, nesting + 1)
            op = values[j]
            if op in _COMPARE or op == "not":
                operand, j = self.comparison(operand, j, nesting + 1)
        self.composites += 1
        return _NotExpr(self.start_to(k, operand.span), operand), j

    def comparison(self, left: Any, k: int, nesting: int) -> tuple[Any, int]:
        """`left OP B` where OP (at k) is a comparison, `in` or `not in` (they do not chain)."""
        op = self.values[k]
        if op == "not":
            if self.values[k + 1] != "in":
                return left, k  # not an operator here: the caller declines
            op = "not in"
            k += 1
        right, k = self.postfix(k + 1, nesting)
        self.composites += 1
        return _binary(op, left, right), k

    def postfix(self, k: int, nesting: int) -> tuple[Any, int]:
        """An atom, then `.field`, `?.field`, `[index]`, `?[index]`. A name, a dotted name
        and a string are read here, the other atoms by `atom`."""
        values = self.values
        token = values[k]
        first = token[0]
        if first in _WORD_START and values[k + 1] != "(":
            if "." in token:
                value = self.dotted(k, token)
            else:
                line = self.lines[k]
                before = self.line_starts[line]
                span = _tuple_new(
                    Span, (line, self.starts[k] - before, line, self.ends[k] - before)
                )
                if token not in _NAME_REFUSED:
                    value = _NameExpr(span, token)
                elif token in _LITERAL_WORDS:
                    value = _LiteralExpr(span, _LITERAL_WORDS[token])
                else:
                    raise Decline  # a keyword here, or a reserved word (reported)
            k += 1
        elif first == '"':
            value = self.string(k)
            k += 1
        else:
            value, k = self.atom(k, nesting)
        op = values[k]
        while op in _POSTFIX:
            if op == "[" or op == "?[":
                if nesting > _MAX_NESTING:
                    raise Decline
                index, k = self.binary(k + 1, 1, nesting + 1)
                if values[k] != "]":
                    raise Decline
                start, end = value.span, self.tspan(k)
                span = _tuple_new(Span, (start[0], start[1], end[2], end[3]))
                value = _IndexExpr(span, op == "?[", value, index)
                self.composites += 1
                k += 1
            else:
                fields = values[k + 1]
                if fields[0] not in _WORD_START:
                    raise Decline
                line = self.lines[k + 1]
                column = self.starts[k + 1] - self.line_starts[line]
                value = self.fields(value, fields.split("."), line, column, op == "?.")
                k += 2
            op = values[k]
        return value, k

    def fields(self, value: Any, words: list[str], line: int, column: int, optional: bool) -> Any:
        """`value.a.b.c` where `a.b.c` (`words`) starts at (line, column); `?.a.b.c` when
        `optional` (then only `a` is optional). `env.NAME` is an `EnvExpr`."""
        first = value.span
        for word in words:
            end = column + len(word)
            field_span = _tuple_new(Span, (line, column, line, end))
            span = _tuple_new(Span, (first[0], first[1], line, end))
            if not optional and value.__class__ is NameExpr and value.name == "env":
                value = _EnvExpr(span, word)
            else:
                value = _AttrExpr(span, optional, field_span, value, word)
                self.composites += 1
            optional = False
            column = end + 1
        return value

    def atom(self, k: int, nesting: int) -> tuple[Any, int]:
        """A number, a list, a dict, a call or a parenthesised expression."""
        values = self.values
        token = values[k]
        first = token[0]
        if first in _WORD_START:
            return self.call_expr(k, nesting)
        if (first in _NUMBER_START and len(token) > 1) or first in _DIGITS:
            number = _number(token)
            if number is None:
                raise Decline  # parse.py's lexer reads a shorter NUMBER here, or malformed
            return _LiteralExpr(self.tspan(k), number), k + 1
        if nesting > _MAX_NESTING:
            raise Decline
        if token == "[":
            items, j = self.items(k + 1, "]", nesting)
            self.composites += 1
            return _ListExpr(self.span(k, j), items), j + 1
        if token == _DICT:
            return self.dict(k, nesting)
        if token == "(":
            inner, j = self.binary(k + 1, 1, nesting + 1)
            if values[j] != ")":
                raise Decline
            return inner, j + 1
        raise Decline

    def dotted(self, k: int, token: str) -> Any:
        """`a.b.c` read as one token: the name (or literal) `a`, then its fields."""
        words = token.split(".")
        head = words[0]
        line = self.lines[k]
        column = self.starts[k] - self.line_starts[line]
        span = _tuple_new(Span, (line, column, line, column + len(head)))
        if head not in _NAME_REFUSED:
            value = _NameExpr(span, head)
        elif head in _LITERAL_WORDS:
            value = _LiteralExpr(span, _LITERAL_WORDS[head])
        else:
            raise Decline
        return self.fields(value, words[1:], line, column + len(head) + 1, False)

    def items(self, k: int, closer: str, nesting: int) -> tuple[list[Any], int]:
        """`(expr ("," expr)* ","?)?` up to `closer`: the items and the closer's index."""
        values = self.values
        items = []
        while values[k] != closer:
            item, k = self.binary(k, 1, nesting + 1)
            items.append(item)
            if values[k] == ",":
                k += 1
            elif values[k] != closer:
                raise Decline
        return items, k

    def call_expr(self, k: int, nesting: int) -> tuple[Any, int]:
        """`NAME(ARGS)`: a bare name only (`a.b(` does not parse)."""
        func = self.values[k]
        if "." in func or func in _ITEM_WORDS or func in _VALUE_WORDS or nesting > _MAX_NESTING:
            raise Decline  # a keyword here
        args, j = self.items(k + 2, ")", nesting)
        self.composites += 1
        return _CallExpr(self.span(k, j), func, args), j + 1

    def dict(self, k: int, nesting: int) -> tuple[Any, int]:
        values = self.values
        entries = []
        j = k + 1
        while values[j] != "}":
            key = values[j]
            if key[0] == '"' and not key.startswith('"""'):
                text = self.plain(j)
            else:
                text = self.word(j).name
            if values[j + 1] != ":":
                raise Decline
            key_span = self.tspan(j)
            value, j = self.binary(j + 2, 1, nesting + 1)
            entries.append(_DictEntry(key_span, text, value))
            if values[j] == ",":
                j += 1
            elif values[j] != "}":
                raise Decline
        self.composites += 1
        return _DictExpr(self.span(k, j), entries), j + 1

    # --- strings ----------------------------------------------------------------------------

    def string(self, k: int) -> Any:
        """A string: a literal, or a template of text and `${...}` expressions. The usual
        ones (no escape, no `$${`, one line of text, `${...}` free of quotes and braces)
        are read here in one pass; the others as `lexical.decode_string` reads them."""
        token = self.values[k]
        if len(token) < 2:
            raise Decline  # a lone `"`: unterminated (the LALR lexer reports it)
        span = self.string_span(k, k)
        if "\\" in token:
            return self.decoded(k, span)
        if token.startswith('"""'):
            body, base = _one_line(token)
            if base < 0:
                return self.decoded(k, span)
        else:
            body, base = token[1:-1], 1
        if "${" not in body:
            return _LiteralExpr(span, body)
        if "$${" in body:
            return self.decoded(k, span)
        line = self.lines[k]  # where the (one-line) text starts
        newlines = token.count("\n", 0, base)
        if newlines:
            line += newlines
            column = base - token.rfind("\n", 0, base)
        else:
            column = self.starts[k] - self.line_starts[line] + base
        parts: list[Any] = []
        at = found = 0
        for match in _PARTS.finditer(body):
            start = match.start()
            if start > at:
                parts.append(body[at:start])
            path = match.group(1)
            if path is not None and path.partition(".")[0] not in _VALUE_WORDS:
                parts.append(self.path(path, line, column + match.start(1)))
            else:
                offset = self.starts[k] + base + start + 2
                parts.append(self.nested(offset, offset + match.end() - start - 3, line))
            at = match.end()
            found += 1
        if found != body.count("${"):
            return self.decoded(k, span)  # a `${...}` with quotes or braces inside
        if at < len(body) or not parts:
            parts.append(body[at:])
        self.composites += 1
        return _TemplateExpr(span, parts)

    def decoded(self, k: int, span: Span) -> Any:
        """A string as `lexical.decode_string` reads it (escapes, dedent, `$${`)."""
        token = self.values[k]
        parts, problems = decode_string(token)
        if problems:
            raise Decline  # the transformer reports them
        if len(parts) == 1 and isinstance(parts[0], str):
            return _LiteralExpr(span, parts[0])
        resolved: list[Any] = []
        for part in parts:
            if isinstance(part, str):
                resolved.append(part)
                continue
            start = self.starts[k] + part.offset
            line = bisect_right(self.line_starts, start - 1, 1) - 1
            simple = _SIMPLE_PATH.fullmatch(part.source)
            if simple and simple.group(2) not in _VALUE_WORDS:
                column = start - self.line_starts[line] + simple.start(1)
                resolved.append(self.path(simple.group(1), line, column))
            else:
                resolved.append(self.nested(start, start + len(part.source), line))
        self.composites += 1
        return _TemplateExpr(span, resolved)

    def path(self, path: str, line: int, column: int) -> Any:
        """`${a.b.c}` at (line, column), as the transformer reads it (without its parser)."""
        words = path.split(".")
        head = words[0]
        if head in RESERVED_WORDS and head not in ("env", "run"):
            raise Decline  # the transformer reports it
        end = column + len(head)
        value = _NameExpr(_tuple_new(Span, (line, column, line, end)), head)
        if len(words) == 1:
            return value
        return self.fields(value, words[1:], line, end + 1, False)

    def nested(self, start: int, end: int, line: int) -> Any:
        """The expression of a `${...}` whose source is text[start:end], on `line`."""
        tokens = _Tokens(self.text, start, end, line, True)
        inner = _Parser(self.text, tokens, self.line_starts)
        expr, j = inner.binary(0, 1, 0)
        if tokens.values[j] != _END:
            raise Decline
        self.composites += inner.composites
        return expr


_PLAN_ITEMS: dict[str, Callable[[_Parser, int], tuple[Any, int]]] = {
    "step": _Parser.step,
    "input": _Parser.input,
    "output": _Parser.output,
    "use": _Parser.use,
    "deadline": _Parser.deadline,
    "concurrency": _Parser.plan_concurrency,
    "defaults": _Parser.defaults,
    "resource": _Parser.resource,
}
_POLICIES: dict[str, Callable[[_Parser, int], tuple[Any, int]]] = {
    "uses": _Parser.uses,
    "timeout": _Parser.timeout,
    "retry": _Parser.retry,
    "optional": _Parser.optional,
    "if": _Parser.if_policy,
    "when": _Parser.when,
    "after": _Parser.after,
    "fallback": _Parser.fallback,
    "default": _Parser.default,
    "concurrency": _Parser.map_concurrency,
    "tolerate": _Parser.tolerate,
}
_SETTINGS: dict[str, Callable[[_Parser, int], tuple[Any, int]]] = {
    "rate": _Parser.rate,
    "concurrency": _Parser.resource_concurrency,
    "breaker": _Parser.breaker,
}


# Values where the grammar expects a NUMBER, DURATION, RATE or PERCENT: our token holds
# what parse.py's lexer reads there when that terminal's regex reads all of it (a token
# stops only at a character no such regex reads further), else None (decline). A plan
# repeats the same few, so each is read once.


@lru_cache(maxsize=4096)
def _whole(token: str) -> int | None:
    if _NUMBER.fullmatch(token) is None:
        return None
    try:
        value = parse_number(token)
    except LexicalError:
        return None
    return None if isinstance(value, float) else value


T = TypeVar("T")


def _literal_reader(pattern: re.Pattern[str],
                    read: Callable[[str], T]) -> Callable[[str], T | None]:
    """`read(token)` when `pattern` reads the whole token and `read` accepts it, else None
    (the transformer reports what `read` refuses); each distinct token is read once."""

    @lru_cache(maxsize=4096)
    def value(token: str) -> T | None:
        if pattern.fullmatch(token) is None:
            return None
        try:
            return read(token)
        except LexicalError:
            return None

    return value


_number = _literal_reader(_NUMBER, parse_number)
_seconds = _literal_reader(_DURATION, parse_duration)
_rate = _literal_reader(_RATE, parse_rate)
_percent = _literal_reader(_PERCENT, parse_percent)


def _one_line(token: str) -> tuple[str, int]:
    """A triple-quoted string's text, dedented (`lexical.dedent`), and where it starts in the
    token; the start is -1 unless the text is one line (then it is that line's own).
    The usual shape, text on the line between the quotes' lines, is read directly."""
    body = token[3:-3]
    if body.count("\n") == 2:
        head, line, tail = body.split("\n")
        if not head.removesuffix("\r").strip(" \t") and not tail.strip(" \t"):
            line = line.removesuffix("\r")
            kept = line.lstrip(" \t") or line
            return kept, 3 + len(head) + 1 + len(line) - len(kept)
    text, offsets = dedent(body, 3)
    return text, offsets.start if isinstance(offsets, range) else -1


_NESTED = (ListExpr, DictExpr, TemplateExpr, AttrExpr, IndexExpr, CallExpr, BinaryExpr, NotExpr)


def _too_deep(expr: Any) -> bool:
    """Whether the transformer's `_nest` refuses `expr`: its depth (1 for a leaf, a name,
    a literal or `env.X`; else one more than its deepest child, 2 for an empty list)
    exceeds MAX_EXPR_DEPTH. Walked with a stack: the tree may be thousands deep."""
    stack = [(expr, 1)]
    while stack:
        node, level = stack.pop()  # level: 1 + the nested nodes above it
        if isinstance(node, _NESTED):
            if level + 1 > MAX_EXPR_DEPTH:
                return True
            stack.extend((child, level + 1) for child in _children(node))
        elif level > MAX_EXPR_DEPTH:
            return True
    return False


def _children(expr: Any) -> list[Any]:
    if isinstance(expr, ListExpr):
        return list(expr.items)
    if isinstance(expr, DictExpr):
        return [entry.value for entry in expr.entries]
    if isinstance(expr, TemplateExpr):
        return [part for part in expr.parts if not isinstance(part, str)]
    if isinstance(expr, AttrExpr):
        return [expr.value]
    if isinstance(expr, IndexExpr):
        return [expr.value, expr.index]
    if isinstance(expr, CallExpr):
        return list(expr.args)
    if isinstance(expr, BinaryExpr):
        return [expr.left, expr.right]
    if isinstance(expr, NotExpr):
        return [expr.operand]
    return []
