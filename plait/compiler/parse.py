"""Source text -> syntax tree (`nodes.PlanNode`) plus syntax diagnostics; never raises.

lark analyses plait.lark once (LALR table, terminals, the transformer's callbacks); this
module runs that table with its own token loop, so that it can do what a grammar cannot:
- soft keywords: a word is a keyword only where the parser state accepts that keyword (as
  lark's contextual lexer does, from one regex built from the grammar's terminals);
- newlines: dropped inside ( ) [ ] and a dict's { }, merged into one statement end
  elsewhere; `;` is a statement end too; a `{` opens a dict after an operator, `=`, `:`,
  `,`, a bracket or `default`/`if`, and a block otherwise;
- named errors ("expected `}` to close step `draft` opened at 12:3", a block `{` on the
  next line, `when` given an expression, `a < b < c`, unterminated strings, ...);
- recovery: after an error the parser is rewound to the start of the statement and the
  text skipped to the statement's end, so later errors are reported too;
- a nesting limit, so 10 MB of brackets ends in a diagnostic, not a crash.
`${...}` sources are parsed by a nested run of the same parser (start symbol `interp`)
with positions mapped back into the file.

Well-formed plans usually never get here: `parse` first tries fastparse.py, a
hand-written parser that builds the same tree three to four times faster and declines
anything it is not sure of (every error among it), which is then parsed here.
"""

from __future__ import annotations

import difflib
import gc
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, get_args

from lark import Lark
from lark.visitors import _vargs_inline

from plait.compiler import codes, fastparse, nodes
from plait.compiler.diagnostics import Diagnostic, Label, error
from plait.compiler.ir import Expr
from plait.compiler.lexical import Tok
from plait.compiler.source import Span
from plait.compiler.transformer import RESERVED_WORDS, WHEN_HINT, PlanTransformer, span_of

GRAMMAR_PATH = Path(__file__).resolve().parent.parent / "grammar" / "plait.lark"
MAX_NESTING = 64  # open brackets; deeper input is refused with a diagnostic
MAX_ERRORS = 50

ITEM_KEYWORDS = {"PLAN", "USE", "INPUT", "OUTPUT", "DEADLINE", "DEFAULTS", "RESOURCE", "STEP"}
POLICY_KEYWORDS = {
    "AFTER",
    "WHEN",
    "IF",
    "TIMEOUT",
    "RETRY",
    "FALLBACK",
    "DEFAULT",
    "OPTIONAL",
    "USES",
    "CONCURRENCY",
    "TOLERATE",
}
POLICY_WORDS = (
    "after",
    "when",
    "if",
    "timeout",
    "retry",
    "fallback",
    "default",
    "optional",
    "uses",
    "concurrency",
    "tolerate",
)
ITEM_WORDS = ("use", "input", "output", "deadline", "concurrency", "defaults", "resource", "step")
RESOURCE_WORDS = ("rate", "concurrency", "breaker")
# A `{` after one of these opens a block (plan, step, resource, `defaults`); else a dict.
_BLOCK_AFTER = {"RPAR", "NAME", "STRING", "LONG_STRING", "DEFAULTS", "_NL"}
_BLOCK_HEADS = {"PLAN", "RESOURCE", "DEFAULTS", "STEP"}
_OPERATORS = {
    "COMPARE",
    "IN",
    "NOT",
    "AND",
    "OR",
    "COALESCE",
    "DOT",
    "QDOT",
    "LSQB",
    "QLSQB",
    "LPAR",
}
_BRACKETS = {"LPAR", "LSQB", "QLSQB", "DICT_OPEN", "LBRACE", "RPAR", "RSQB", "RBRACE"}
_CLOSERS = {"(": ")", "[": "]", "dict": "}", "block": "}"}
_CHARACTER_HINTS = {
    "'": 'strings use double quotes: "text"',
    "+": 'there is no arithmetic; build text with interpolation: "${a}${b}"',
    "-": "there is no arithmetic or unary minus; `-3` is a number literal",
    "!": "write `not x`, or `!=` for inequality",
    "&": "write `and`",
    "|": "write `or`",
}
_SKIP_BLANK = re.compile(r"(?:[ \t\f\r\n]|#[^\n]*)*")
_LINE_START_WORD = re.compile(r"[ \t]*([a-z]+)\b")
_WORDS = {  # what a terminal is, in words a user knows
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "DURATION": "a duration like `30s`",
    "RATE": "a rate like `10/s`",
    "PERCENT": "a percentage like `25%`",
    "FACTOR": "a factor like `x2`",
    "_NL": "end of line",
    "$END": "end of file",
    "DICT_OPEN": "`{`",
    "COMPARE": "a comparison",
    "COALESCE": "`??`",
    "QDOT": "`?.`",
    "QLSQB": "`?[`",
    "SEMI": "`;`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "DOT": "`.`",
}


_EXPR_TYPES = get_args(get_args(Expr)[0])  # the classes of the Expr union
_TRANSFORMER = PlanTransformer()
_LOCK = threading.RLock()

# The lexer is built from the grammar's terminals (plait.lark stays the one source of the
# syntax). Words, numbers and `x2` are typed by what the parser state accepts, as lark's
# contextual lexer would (soft keywords), but with one regex instead of one per state.
_VALUE_KINDS = ("DURATION", "RATE", "PERCENT")  # tried in this order where accepted
_DIGIT_START = r"-?[0-9]"  # numbers, durations, rates and percentages start so


# a reduction: children count, rule name, what builds the value, whether children are spread
_Reduce = tuple[int, str, Callable[..., object] | None, bool]


@dataclass(frozen=True)
class _Tables:
    """lark's LALR table, flattened for a fast loop: per state, symbol -> next state (shift
    or goto) or (size, rule name, builder, spread) (reduce; see `_builder`)."""

    states: dict[int, dict[str, int | _Reduce]]
    start: int
    end: int
    lexer: _Lexicon
    # (state below, top state, lookahead) -> the top state after the run of precedence-chain
    # links that lookahead reduces there (`?expr: coalesce`, ...: most reductions); filled
    # as met, so a `name` climbs the chain in one step instead of seven
    links: dict[tuple[int, int, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Lexicon:
    """The grammar's terminals, arranged for the tokenizer."""

    token: re.Pattern[str]  # blanks, then one alternation; the group name says what matched
    blank: re.Pattern[str]  # blanks and comments only
    keywords: dict[str, str]  # "step" -> "STEP"
    punctuation: dict[str, str]  # "(" -> "LPAR"; comparisons -> "COMPARE"
    patterns: dict[str, re.Pattern[str]]  # NUMBER, FACTOR, DURATION, RATE, PERCENT


def _lexicon(lark: Lark) -> _Lexicon:
    terminals = {t.name: t for t in lark.terminals}
    regex = {name: t.pattern.to_regexp() for name, t in terminals.items()}
    literal = {t.pattern.value: t.name for t in lark.terminals if t.pattern.type == "str"}
    literal[";"] = "SEMI"  # no rule uses it (it becomes a newline), so lark drops the terminal
    symbols = [v for v in literal if not v.isalpha()]
    longest_first = sorted(symbols, key=len, reverse=True)
    punct = "|".join(
        [
            *(re.escape(v) for v in longest_first if len(v) > 1),
            regex["COMPARE"],
            *(re.escape(v) for v in longest_first if len(v) == 1),
        ]
    )
    # atomic: a token may not start inside a comment the blanks gave back
    blank = f"(?>(?:{regex['WS']}|{regex['COMMENT']})*)"
    token = (
        blank
        + "(?:"
        + "|".join(
            f"(?P<{group}>{pattern})"
            for group, pattern in (
                ("NL", regex["_NL"]),
                ("LONG_STRING", regex["LONG_STRING"]),
                ("STRING", regex["STRING"]),
                ("WORD", regex["NAME"]),
                ("DIGITS", _DIGIT_START),
                ("PUNCT", punct),
            )
        )
        + ")"
    )
    compare = re.compile(regex["COMPARE"])
    return _Lexicon(
        re.compile(token),
        re.compile(blank),
        {value: name for value, name in literal.items() if value.isalpha()},
        {value: "COMPARE" if compare.fullmatch(value) else name for value, name in literal.items()}
        | {op: "COMPARE" for op in ("==", "!=", "<=", ">=", "<", ">")},
        {name: re.compile(regex[name]) for name in ("NUMBER", "FACTOR", *_VALUE_KINDS)},
    )


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """Built once: analysing the grammar is the slow part."""
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="basic",
        start=["start", "interp"],
        transformer=_TRANSFORMER,
        maybe_placeholders=False,
        cache=True,  # the grammar analysis, kept in the temp folder, keyed by the grammar's hash
    )


@lru_cache(maxsize=2)
def _tables(start: str) -> _Tables:
    lark = _lark()
    conf = lark.parse_interactive("", start=start).parser_state.parse_conf
    states: dict[int, dict[str, int | _Reduce]] = {}
    for state, actions in conf.states.items():
        row: dict[str, int | _Reduce] = {}
        for name, (action, arg) in actions.items():
            symbol = str(name)  # plain strings: lark's Token compares slowly
            if action.name == "Shift":
                row[symbol] = arg
            elif _passes_child_through(arg):
                row[symbol] = (1, str(arg.origin.name), None, False)
            else:
                row[symbol] = (len(arg.expansion), str(arg.origin.name), *_builder(arg))
        states[state] = row
    return _Tables(states, conf.start_state, conf.end_state, _lexicon(lark))


def _builder(rule: Any) -> tuple[Callable[..., object], bool]:
    """What a reduction of `rule` calls, and whether with the children spread (`f(*kids)`)
    or as one list: lark's callback chain for the rule (child filter, `_rule` inlining,
    `?rule` single-child expansion, then the transformer method), flattened into one call.

    Same result as lark's `conf.callbacks[rule]`, except that an inlined `_rule` builds a
    plain list where lark builds a Tree for the parent to take apart.
    """
    name = str(rule.alias or rule.options.template_source or rule.origin.name)
    method = getattr(_TRANSFORMER, name, None)
    if method is not None:
        if getattr(method, "visit_wrapper", None) is not _vargs_inline:
            raise TypeError(f"transformer method {name} must take its children inline")
        method = method.base_func
    keep_all = rule.options.keep_all_tokens
    include = tuple(
        (i, not sym.is_term and sym.name.startswith("_"))
        for i, sym in enumerate(rule.expansion)
        if keep_all or not (sym.is_term and sym.filter_out)
    )
    single = bool(rule.options.expand1 and not rule.alias)  # `?rule` with one child: the child
    if (
        method is not None
        and not single
        and len(include) == len(rule.expansion)
        and not any(expand for _, expand in include)
    ):
        return method, True
    inlined = method is None and name.startswith("_")
    fast = None if single else _fast_builder(method, include, inlined)
    if fast is not None:
        return fast, False

    def reduce(children: list[Any]) -> object:
        kept: list[Any] = []
        for i, expand in include:
            if not expand:
                kept.append(children[i])
            elif kept:
                kept += children[i]
            else:  # left recursion (`item*`): extend the child's own list, no copying
                kept = children[i]
        if single and len(kept) == 1:
            return kept[0]
        if method is not None:
            return method(*kept)
        return kept if inlined else _TRANSFORMER.__default__(name, kept, None)  # type: ignore[no-untyped-call]

    return reduce, False


def _fast_builder(
    method: Callable[..., object] | None, include: tuple[tuple[int, bool], ...], inlined: bool
) -> Callable[[list[Any]], object] | None:
    """The frequent shapes of `_builder`'s general reduce, without its loop: a method given
    some of the children (`step`, `call`, `arg`: punctuation left out), a `_rule`'s list of
    children (`_policy`), and one more item on a left-recursive `item*` list."""
    kept = tuple(i for i, _ in include)
    expands = tuple(expand for _, expand in include)
    if method is not None and not any(expands) and kept:
        if len(kept) == 1:
            (only,) = kept
            return lambda children: method(children[only])
        pick = itemgetter(*kept)
        return lambda children: method(*pick(children))
    if not inlined:
        return None
    if not any(expands):
        return lambda children: [children[i] for i in kept]
    if len(include) == 2 and expands[0] and kept[0] == 0:  # `__x_star: __x_star item`
        item = kept[1]
        if expands[1]:  # the item is a `_rule` itself: its list

            def more(children: list[Any]) -> object:
                items: list[Any] = children[0]
                items += children[item]
                return items

            return more

        def one_more(children: list[Any]) -> object:
            items: list[Any] = children[0]
            items.append(children[item])
            return items

        return one_more
    return None


def _passes_child_through(rule: Any) -> bool:
    """`?expr: coalesce` and the like: the value is the child's, so skip the callback (most
    reductions in an expression are such links of the precedence chain)."""
    only = rule.expansion[0] if len(rule.expansion) == 1 else None
    return bool(
        only is not None
        and rule.options.expand1
        and rule.alias is None
        and not only.is_term
        and not only.name.startswith("_")
    )


# The fast path (fastparse.py) first; False makes every parse take the LALR parser below
# (tests/compiler/test_fastparse.py compares the two).
FAST_PATH = True


def parse(text: str, path: str = "") -> tuple[nodes.PlanNode | None, list[Diagnostic]]:
    """Parse a plan; syntax errors come back as diagnostics (codes E1xx), never as exceptions.

    A well-formed plan is read by the fast path (fastparse.py), which builds the same tree
    as the LALR parser below in a third to a quarter of the time; anything it declines (every
    error among it) is parsed here, where all diagnostics come from."""
    if FAST_PATH:
        plan = _fast_parse(text)
        if plan is not None:
            return plan, []
    with _LOCK, _no_gc():
        _TRANSFORMER.reset(path)
        _TRANSFORMER.sub_parse = lambda source, line, column: _parse_interpolation(
            source, line, column, path
        )
        diagnostics: list[Diagnostic] = []
        try:
            plans = _Driver(text, "start", path, diagnostics).run()
        except RecursionError:  # belt and braces: the limits above should make this unreachable
            diagnostics.append(
                error(codes.SYNTAX_ERROR, "plan is nested too deeply", _end_span(text), path=path)
            )
            plans = None
        diagnostics.extend(_TRANSFORMER.diagnostics)
        _TRANSFORMER.reset("")
    plan = _one_plan(plans, text, path, diagnostics)
    diagnostics.sort(key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    return plan, diagnostics


def _fast_parse(text: str) -> nodes.PlanNode | None:
    """The fast path's tree, or None where it declines. It needs no lock (it shares no
    state) and pauses the collector as the LALR parse does. Whatever else it raises would
    be a bug in it: the LALR parser then answers, as parse never raises (the tests call
    fastparse directly, so such a bug fails them)."""
    with _no_gc():
        try:
            return fastparse.parse_plan(text)
        except fastparse.Decline:
            return None
        except Exception:
            return None


@contextmanager
def _no_gc() -> Iterator[None]:
    """Parsing allocates many small objects and no cycles: the cyclic GC only costs time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _one_plan(
    plans: object, text: str, path: str, diagnostics: list[Diagnostic]
) -> nodes.PlanNode | None:
    if not isinstance(plans, tuple):
        return None
    strays = [item for item in plans if not isinstance(item, nodes.PlanNode)]
    plans = tuple(item for item in plans if isinstance(item, nodes.PlanNode))
    if strays and not plans:
        diagnostics.append(
            error(
                codes.NO_PLAN,
                "no plan in this file",
                strays[0].span,
                "wrap the items in `plan NAME { ... }`",
                path=path,
            )
        )
        return None
    for stray in strays:
        closed = plans[0].span if plans else None
        diagnostics.append(
            error(
                codes.SYNTAX_ERROR,
                "this item is outside the plan's braces",
                stray.span,
                "check the `}` before it: it closes the plan",
                path=path,
                labels=(Label(_end_of(closed), "the plan ends here"),) if closed else (),
            )
        )
    if not plans:
        if not diagnostics:
            diagnostics.append(
                error(
                    codes.NO_PLAN,
                    "no plan in this file",
                    span_of(1, 1, 1, 2),
                    "a file holds one plan: `plan NAME { ... }`",
                    path=path,
                )
            )
        return None
    for extra in plans[1:]:
        diagnostics.append(
            error(
                codes.MULTIPLE_PLANS,
                f"a file holds exactly one plan; found another, `{extra.name.name}`",
                extra.name.span,
                "move it to a file of its own",
                path=path,
                labels=(Label(plans[0].name.span, "the first plan"),),
            )
        )
    first: nodes.PlanNode = plans[0]
    return first


def _parse_interpolation(source: str, line: int, column: int, path: str) -> Expr | None:
    """Parse the source of one `${...}` that starts at (line, column) of the file."""
    origin = (line, column)  # already mapped into the file by the transformer
    _TRANSFORMER.origins.append(origin)
    try:
        result = _Driver(source, "interp", path, _TRANSFORMER.diagnostics, origin).run()
    finally:
        _TRANSFORMER.origins.pop()
    return result if isinstance(result, _EXPR_TYPES) else None


def _end_of(span: Span) -> Span:
    return span_of(span.end_line, max(span.end_column - 1, 1), span.end_line, span.end_column)


def _end_span(text: str) -> Span:
    line = text.count("\n") + 1
    column = len(text) - (text.rfind("\n") + 1) + 1
    return span_of(line, column, line, column + 1)


@dataclass
class _Open:
    """An open bracket or block, for newline handling, error messages and recovery."""

    kind: str  # "(", "[", "dict" or "block"
    token: Tok
    label: str  # blocks: "step `draft`", "plan `triage`", "`defaults`", ...
    saved_base: int | None  # the enclosing statement's parser-stack base (blocks)


class _Fatal(Exception):
    """Stop parsing: nothing sensible can follow."""


class _Unexpected(Exception):
    def __init__(self, token: Tok) -> None:
        super().__init__(token.value)
        self.token = token


class _BadCharacter(Exception):
    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


class _Driver:
    """One run of the parser over one text (a whole file, or one `${...}` source)."""

    def __init__(
        self,
        text: str,
        start: str,
        path: str,
        diagnostics: list[Diagnostic],
        origin: tuple[int, int] | None = None,
    ) -> None:
        self.text, self.start, self.path, self.diagnostics = text, start, path, diagnostics
        self.origin = origin  # where a `${...}` source starts in the file
        self.tables = _tables(start)
        self.lexicon = self.tables.lexer
        self._match_token, self._punctuation = self.lexicon.token.match, self.lexicon.punctuation
        self.states: list[int] = [self.tables.start]  # the LALR stacks
        self.values: list[object] = []
        self.pos, self.line, self.line_start = 0, 1, 0  # the lexer's position
        self.stack: list[_Open] = []
        self.base: int | None = None  # parser-stack length where the current statement starts
        self.head: list[Tok] = []  # the first two tokens of the current statement
        # The last token fed to the parser; a `${...}` starts in an expression, where `{` is a dict.
        self.prev: Tok | None = _token("COLON", ":") if start == "interp" else None
        self.at_line_start = True  # the last thing fed ended a statement (or opened a block)
        self.errors = 0
        self.last_error_pos = -1

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> object:
        while True:
            try:
                self._loop()
                return self._feed_end()
            except _Unexpected as problem:
                if not self._on_unexpected(problem.token, self._expected()):
                    return None
            except _BadCharacter as problem:
                if not self._on_bad_character(problem.pos):
                    return None
            except _Fatal:
                return None

    def _loop(self) -> None:
        """Tokenize and parse to the end of the text (raises on an error; `run` recovers).

        One loop for the whole hot path (a 10,000-step plan is ~300,000 tokens): the lexer
        (`_next` in words), the newline and `{` rules (`_take`), and the LALR table (`_shift`,
        `_reduce`), with everything bound to locals. The lexer's position lives in locals
        and is written back to `self` on the way out, so recovery sees where it stopped.
        """
        text, table, states, values, stack = (
            self.text,
            self.tables.states,
            self.states,
            self.values,
            self.stack,
        )
        match_token, punctuation, links = self._match_token, self._punctuation, self.tables.links
        keywords, factor = self.lexicon.keywords, self.lexicon.patterns["FACTOR"].match
        interp = self.start == "interp"
        brackets, block_after, item_keywords = _BRACKETS, _BLOCK_AFTER, ITEM_KEYWORDS
        pos, line, line_start = self.pos, self.line, self.line_start
        # the statement state, in locals too; written back around the few calls that use it
        prev, at_line_start, base, head = self.prev, self.at_line_start, self.base, self.head
        try:
            while True:
                match = match_token(text, pos)  # blanks and comments, then a token
                if match is None:
                    end = self.lexicon.blank.match(text, pos).end()  # type: ignore[union-attr]
                    if end >= len(text):
                        return
                    raise _BadCharacter(end)
                group: str = match.lastgroup  # type: ignore[assignment]
                start, end = match.span(group)
                # the token's type: words, numbers and `x2` by what the parser accepts here
                if group == "WORD":
                    value = text[start:end]
                    accepts = table[states[-1]]
                    # a keyword where the parser accepts it, or where no name fits; and an
                    # item keyword (`step`) where an expression starts: never a valid name
                    # (it is reserved), most likely the next item after an unclosed
                    # bracket, and as a keyword it says so; else `x2` a factor where one
                    # is accepted; else a name
                    keyword = keywords.get(value)
                    if keyword is not None and (
                        keyword in accepts
                        or "NAME" not in accepts
                        or (keyword in item_keywords and "NUMBER" in accepts)
                    ):
                        kind = keyword
                    elif "FACTOR" in accepts and (found := factor(text, start)):
                        kind, value = "FACTOR", found.group()
                        end = start + len(value)
                    else:
                        kind = "NAME"
                elif group == "PUNCT":
                    value = text[start:end]
                    kind = punctuation[value]
                elif group == "DIGITS":
                    kind, value = self._value_token(start)
                    end = start + len(value)
                else:
                    value = text[start:end]
                    kind = "_NL" if group == "NL" else group
                column, first_line = start - line_start + 1, line
                if kind == "_NL" or kind == "LONG_STRING":
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = start + value.rindex("\n") + 1
                pos = end
                token = Tok(kind, value, start, first_line, column, line, end - line_start + 1, end)
                # newlines end statements outside brackets; a `{` after a value opens a dict
                ends = False
                if kind == "_NL" or kind == "SEMI":
                    if (stack and stack[-1].kind != "block") or interp:
                        if kind != "SEMI":
                            continue  # `;` inside brackets: an error the parser reports
                    else:
                        if at_line_start:
                            continue  # a run of line ends
                        self.head, self.prev = head, prev
                        if self._brace_follows(token):
                            continue  # reported; parse on as if `{` stood on the header line
                        if kind == "SEMI":
                            token, kind = token.retyped("_NL"), "_NL"
                        ends = True
                elif kind == "LBRACE" and (prev.type if prev else "_NL") not in block_after:
                    token, kind = token.retyped("DICT_OPEN"), "DICT_OPEN"
                # the LALR loop: reduce while the table says so, then shift the token
                while True:
                    action = table[states[-1]].get(kind)
                    if action is None:
                        raise _Unexpected(token)
                    if action.__class__ is int:
                        states.append(action)
                        values.append(token)
                        break
                    size, rule, build, spread = action  # type: ignore[misc]
                    if build is None:  # a link of the precedence chain: keep the value
                        below = states[-2]
                        key = (below, states[-1], kind)
                        top = links.get(key)
                        if top is None:
                            top = links[key] = _climb(table, below, action, kind)  # type: ignore[arg-type]
                        states[-1] = top
                    else:
                        children = values[-size:] if size else []
                        if size:
                            del states[-size:]
                            del values[-size:]
                        values.append(build(*children) if spread else build(children))
                        states.append(table[states[-1]][rule])  # type: ignore[arg-type]
                prev, at_line_start = token, False
                if base is None:
                    base = len(states) - 1
                if len(head) < 2 and (not stack or stack[-1].kind == "block"):
                    head.append(token)
                if kind in brackets:
                    self.base, self.head, self.at_line_start = base, head, False
                    self._track_brackets(token)
                    base, head, at_line_start = self.base, self.head, self.at_line_start
                if ends:
                    at_line_start, base, head = True, None, []
        finally:
            self.pos, self.line, self.line_start = pos, line, line_start
            self.prev, self.at_line_start, self.base, self.head = prev, at_line_start, base, head

    def _value_token(self, pos: int) -> tuple[str, str]:
        accepts = self.tables.states[self.states[-1]]
        for kind in _VALUE_KINDS:
            if kind in accepts:
                match = self.lexicon.patterns[kind].match(self.text, pos)
                if match:
                    return kind, match.group()
        number = self.lexicon.patterns["NUMBER"].match(self.text, pos)
        return "NUMBER", number.group() if number else self.text[pos]

    def _reduce(self, size: int, rule: str, build: Any, spread: bool) -> None:
        states, values = self.states, self.values
        if size:
            children = values[-size:]
            del states[-size:]
            del values[-size:]
        else:
            children = []
        if build is None:
            values.append(children[0])
        else:
            values.append(build(*children) if spread else build(children))
        states.append(self.tables.states[states[-1]][rule])  # type: ignore[arg-type]

    def _feed_end(self) -> object:
        """Feed the end of input; return what the start rule built."""
        end = self._eof()
        table, states = self.tables.states, self.states
        while True:
            action = table[states[-1]].get("$END")
            if action is None or action.__class__ is int:
                raise _Unexpected(end)
            self._reduce(*action)  # type: ignore[misc]
            if states[-1] == self.tables.end:
                return self.values[-1]

    def _track_brackets(self, token: Tok) -> None:
        kind = token.type
        if kind in ("LPAR", "LSQB", "QLSQB", "DICT_OPEN"):
            opened = "dict" if kind == "DICT_OPEN" else "(" if kind == "LPAR" else "["
            self._push(_Open(opened, token, "", None))
        elif kind == "LBRACE":
            self._push(_Open("block", token, self._label(), self.base))
            self.base, self.head, self.at_line_start = None, [], True
        elif self.stack:
            closed = self.stack.pop()
            if closed.kind == "block":
                self.base = closed.saved_base

    def _push(self, opened: _Open) -> None:
        self.stack.append(opened)
        if len(self.stack) > MAX_NESTING:
            self._report(
                codes.SYNTAX_ERROR,
                f"brackets nested deeper than {MAX_NESTING} levels",
                self._tspan(opened.token),
                "split the value into smaller pieces",
            )
            raise _Fatal

    def _label(self) -> str:
        words = [str(t) for t in self.head]
        if len(words) >= 2 and words[0] in ("plan", "step", "resource"):
            return f"{words[0]} `{words[1]}`"
        return f"`{words[0]}`" if words else "the block"

    def _expected(self) -> set[str]:
        """What the parser accepts here (the lexer's own list also has the always-lexed tokens)."""
        actions = self.tables.states[self.states[-1]]
        expected = {symbol for symbol in actions if symbol.isupper()}  # terminals, not rules
        return expected - self._implausible()

    def _implausible(self) -> set[str]:
        """Terminals LALR's merged states allow here that the open brackets rule out."""
        inner = self.stack[-1].kind if self.stack else None
        ruled_out = (
            {"RPAR", "RSQB", "RBRACE"} - {_closer_type(self.stack[-1])}
            if inner
            else {"RPAR", "RSQB", "RBRACE"}
        )
        if inner is not None:
            ruled_out.add("$END")
        if inner in (None, "block"):
            ruled_out.add("COMMA")
        else:
            ruled_out.add("_NL")
        if inner != "dict" and not (
            inner in (None, "block") and self.head and self.head[0].type == "STEP"
        ):
            ruled_out.add("COLON")
        return ruled_out

    def _eof(self) -> Tok:
        pos = len(self.text)
        line = self.text.count("\n") + 1
        column = pos - (self.text.rfind("\n") + 1) + 1
        return Tok("$END", "", pos, line, column, line, column + 1, pos)

    def _on_unexpected(self, token: Tok, expected: set[str]) -> bool:
        """Report an unexpected token; return whether parsing goes on."""
        if self.start == "interp":
            self._report_interpolation(token, expected)
            return False
        if token.type == "$END":
            self._report_end_of_file(expected)
            return False
        if token.start_pos == self.last_error_pos:
            self._unwind_statement()  # the same token failed again after recovery: skip it
            self._seek(token.end_pos or (token.start_pos or 0) + 1)
            return True
        self._report_token(token, expected)
        if self.errors >= MAX_ERRORS:
            return False
        self._recover(token)
        return True

    def _report_token(self, token: Tok, expected: set[str]) -> None:
        opened = self._open_before_line_start_keyword(token)
        if opened is not None:
            self._report_unclosed(opened, self._tspan(token), f" before `{token}`")
        elif self.head and self.head[0].type == "WHEN":
            first = self.head[1] if len(self.head) > 1 else token
            self._report(
                codes.WHEN_TAKES_RULE,
                "`when` takes a trigger rule, not an expression",
                self._to_statement_end(first, token),
                WHEN_HINT,
            )
        elif token.type in ("COMPARE", "IN", "NOT") and "AND" in expected:
            self._report(
                codes.CHAINED_COMPARISON,
                f"comparisons do not chain: unexpected `{token}` after a comparison",
                self._tspan(token),
                "combine two comparisons with `and`: `a < b and b < c`",
            )
        elif self._unit_after_space(token):
            number = str(self.prev)
            self._report(
                codes.UNKNOWN_DURATION_UNIT,
                f"unknown duration unit `{token}`; use ms, s, m or h, right after the number",
                join_spans(self._tspan(self.prev), self._tspan(token)),  # type: ignore[arg-type]
                f"for example `{number}s`, `{number}m` or `{number}h`",
            )
        elif str(token) in RESERVED_WORDS and "NAME" in expected:
            self._report(
                codes.RESERVED_WORD,
                f"`{token}` is a reserved word and cannot be used as a name",
                self._tspan(token),
                "choose another name",
            )
        else:
            self._report_generic(token, expected)

    def _unit_after_space(self, token: Tok) -> bool:
        """`deadline 3 days`: a bare number where a duration goes, then a word."""
        prev = self.prev
        return (token.type == "NAME" and prev is not None and prev.type == "DURATION"
                and str(prev).replace("_", "").replace(".", "").isdigit())

    def _report_generic(self, token: Tok, expected: set[str]) -> None:
        word, span = str(token), self._tspan(token)
        if {"TIMEOUT", "RETRY"} <= expected and token.type not in ("RBRACE", "_NL"):
            self._report(
                codes.UNKNOWN_POLICY,
                f"unknown policy `{word}`",
                span,
                _did_you_mean(word, POLICY_WORDS) or f"policies are {', '.join(POLICY_WORDS)}",
            )
        elif {"RATE_KW", "BREAKER"} <= expected and token.type not in ("RBRACE", "_NL"):
            self._report(
                codes.UNKNOWN_POLICY,
                f"unknown resource setting `{word}`; use rate, concurrency or breaker",
                span,
                _did_you_mean(word, RESOURCE_WORDS),
            )
        elif {"STEP", "INPUT"} <= expected and token.type not in ("RBRACE", "_NL"):
            self._report(
                codes.SYNTAX_ERROR,
                f"expected a plan item, found {_what(token)}",
                span,
                _did_you_mean(word, ITEM_WORDS) or f"plan items are {', '.join(ITEM_WORDS)}",
            )
        else:
            self._report(
                codes.SYNTAX_ERROR,
                f"unexpected {_what(token)}; expected {_describe(expected)}",
                span,
            )

    def _open_before_line_start_keyword(self, token: Tok) -> _Open | None:
        """The bracket or block a plan item / policy keyword at a line start shows unclosed."""
        if not self.stack or not self._starts_line(token):
            return None
        inner = self.stack[-1]
        if token.type in ITEM_KEYWORDS and (
            inner.kind != "block" or not inner.label.startswith("plan")
        ):
            return inner
        if token.type in POLICY_KEYWORDS and inner.kind != "block":
            return inner
        return None

    def _report_unclosed(self, opened: _Open, span: Span, where: str = "") -> None:
        at = self._tspan(opened.token)
        closer = _CLOSERS[opened.kind]
        what = (
            opened.label
            if opened.kind == "block"
            else "the dict"
            if opened.kind == "dict"
            else f"`{opened.token}`"
        )
        self._report(
            codes.UNCLOSED_BLOCK,
            f"expected `{closer}` to close {what} opened at {at.line}:{at.column}{where}",
            span,
            labels=(Label(at, f"{what} opened here"),),
        )

    def _to_statement_end(self, first: Tok, token: Tok) -> Span:
        """From `first` to the end of the statement `token` is in, trailing blanks excluded."""
        end = _statement_end(self.text, token.start_pos, 0)
        end = max(len(self.text[:end].rstrip()), token.end_pos)
        return self._span(first.line, first.column, *self._position(end))

    def _report_end_of_file(self, expected: set[str]) -> None:
        # at the end of the last line with text: that is where the missing token belongs
        line, column = self._position(len(self.text.rstrip()))
        span = self._span(line, column, line, column + 1)
        opened = self.stack[-1] if self.stack else None
        if opened is not None and (_closer_type(opened) in expected or self.at_line_start):
            self._report_unclosed(opened, span)
        else:
            self._report(
                codes.SYNTAX_ERROR, f"unexpected end of file; expected {_describe(expected)}", span
            )

    def _report_interpolation(self, token: Tok, expected: set[str]) -> None:
        if not self.text.strip():
            message = "empty `${}` in string"
        elif token.type == "$END":
            message = f"incomplete expression in `${{...}}`; expected {_describe(expected)}"
        else:
            message = f"unexpected {_what(token)} in `${{...}}`; expected {_describe(expected)}"
        self._report(
            codes.BAD_INTERPOLATION, message, self._tspan(token), "write `$${` for a literal `${`"
        )

    def _on_bad_character(self, pos: int) -> bool:
        line, column = self._position(pos)
        char = self.text[pos]
        if self.start == "interp":
            self._report(
                codes.BAD_INTERPOLATION,
                f"unexpected character `{char}` in `${{...}}`",
                self._span(line, column, line, column + 1),
            )
            return False
        end_of_line = self.text.find("\n", pos)
        end_of_line = len(self.text) if end_of_line < 0 else end_of_line
        if char == '"':
            long = self.text.startswith('"""', pos)
            self._report(
                codes.UNTERMINATED_STRING,
                "unterminated string",
                self._span(line, column, line, column + max(1, end_of_line - pos)),
                'close it with `"""`'
                if long
                else 'close it with `"` on the same line; use `"""` for text over several lines',
            )
            if long:
                return False
            # The string most likely swallowed the brackets that closed the statement
            # (`f(x = "text)`): end the statement with its line, or the brackets it left
            # open would swallow the lines after it and report a cascade of errors there.
            if self.errors >= MAX_ERRORS:
                return False
            self._unwind_statement()
            self._seek(_statement_end(self.text, end_of_line, 0))
            return True
        else:
            shown = char if char.isprintable() else repr(char)
            self._report(
                codes.SYNTAX_ERROR,
                f"unexpected character `{shown}`",
                self._span(line, column, line, column + 1),
                _CHARACTER_HINTS.get(char),
            )
            resume_scan = pos + 1
        if self.errors >= MAX_ERRORS:
            return False
        depth = self._unwind_statement()
        self._seek(_statement_end(self.text, resume_scan, depth))
        return True

    # --- recovery -----------------------------------------------------------------------------

    def _recover(self, token: Tok) -> None:
        """Rewind to the start of the current statement and skip to its end."""
        self.last_error_pos = token.start_pos or 0
        if self._open_before_line_start_keyword(token) is not None:
            self._unwind_to_keyword_level(token)
            self._seek(token.start_pos or 0)
            return
        depth = self._unwind_statement()
        self._seek(_statement_end(self.text, token.start_pos or 0, depth))

    def _unwind_statement(self) -> int:
        """Close the brackets opened by the current statement; return how many there were."""
        depth = 0
        while self.stack and self.stack[-1].kind != "block":
            self.stack.pop()
            depth += 1
        self._rewind_parser()
        return depth

    def _unwind_to_keyword_level(self, token: Tok) -> None:
        """Drop open brackets (and, for a plan item, blocks other than the plan's)."""
        while self.stack:
            top = self.stack[-1]
            if top.kind == "block" and (
                token.type in POLICY_KEYWORDS or top.label.startswith("plan")
            ):
                break
            self.stack.pop()
            if top.kind == "block":
                self.base = top.saved_base
        self._rewind_parser()

    def _rewind_parser(self) -> None:
        if self.base is not None:
            del self.states[self.base :]
            del self.values[self.base - 1 :]
        self.base, self.head, self.at_line_start = None, [], True
        self.prev = _token("_NL", "\n")

    def _seek(self, pos: int) -> None:
        """Continue lexing at `pos` of the text."""
        pos = min(max(pos, 0), len(self.text))
        self.pos = pos
        self.line = self.text.count("\n", 0, pos) + 1
        self.line_start = self.text.rfind("\n", 0, pos) + 1

    def _brace_follows(self, newline: Tok) -> bool:
        """A block `{` on the line after its header: report it (E102)."""
        if not self.head or self.head[0].type not in _BLOCK_HEADS or self.prev is None:
            return False
        if self.prev.type not in _BLOCK_AFTER or self.prev.type == "_NL":
            return False
        pos = _SKIP_BLANK.match(self.text, newline.start_pos or 0)
        brace = pos.end() if pos else 0
        if not self.text.startswith("{", brace):
            return False
        line, column = self._position(brace)
        header_line = self.prev.end_line or line
        self._report(
            codes.BRACE_ON_NEXT_LINE,
            f"the `{{` of {self._label()} must be on the same line as its header",
            self._span(line, column, line, column + 1),
            f"move `{{` up to the end of line {self._map(header_line, 1)[0]}",
        )
        return True

    # --- positions and reporting --------------------------------------------------------------

    def _report(
        self,
        code: codes.Code,
        message: str,
        span: Span,
        *hints: str | None,
        labels: tuple[Label, ...] = (),
    ) -> None:
        self.errors += 1
        self.diagnostics.append(
            error(code, message, span, *(h for h in hints if h), path=self.path, labels=labels)
        )

    def _starts_line(self, token: Tok) -> bool:
        start = token.start_pos or 0
        return not self.text[self.text.rfind("\n", 0, start) + 1 : start].strip()

    def _position(self, pos: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - self.text.rfind("\n", 0, pos)

    def _map(self, line: int, column: int) -> tuple[int, int]:
        if self.origin is None:
            return line, column
        origin_line, origin_column = self.origin
        return (
            (origin_line, origin_column + column - 1)
            if line == 1
            else (origin_line + line - 1, column)
        )

    def _span(self, line: int, column: int, end_line: int, end_column: int) -> Span:
        return span_of(*self._map(line, column), *self._map(end_line, end_column))

    def _tspan(self, token: Tok) -> Span:
        line, column = token.line or 1, token.column or 1
        if token.type == "_NL":  # the line end itself, not the indentation after it
            return self._span(line, column, line, column + 1)
        return self._span(line, column, token.end_line or line, token.end_column or column + 1)


def _climb(
    table: dict[int, dict[str, int | _Reduce]], below: int, action: _Reduce, kind: str
) -> int:
    """The top state after `kind` reduces a run of precedence-chain links over `below`."""
    while True:
        top: int = table[below][action[1]]  # type: ignore[assignment]
        following = table[top].get(kind)
        if following is None or following.__class__ is int or following[2] is not None:  # type: ignore[index]
            return top
        action = following  # type: ignore[assignment]


def _token(kind: str, value: str) -> Tok:
    return Tok(kind, value, 0, 1, 1, 1, 1, 0)


def join_spans(first: Span, last: Span) -> Span:
    return span_of(first.line, first.column, last.end_line, last.end_column)


def _closer_type(opened: _Open) -> str:
    return {"(": "RPAR", "[": "RSQB"}.get(opened.kind, "RBRACE")


def _statement_end(text: str, pos: int, depth: int) -> int:
    """Where the statement around `pos` ends: a newline or `;` outside brackets, or the `}`
    that closes the enclosing block; `depth` brackets are open at `pos`."""
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "#":
            pos = _index_or_end(text, "\n", pos)
            continue
        if c == '"':
            pos = _string_end(text, pos)
            continue
        if c in "([{":
            depth += 1
            if depth > MAX_NESTING:
                return n  # nested past any sensible plan: the rest of the file is skipped
        elif c in ")]":
            depth = max(depth - 1, 0)
        elif c == "}":
            if depth == 0:
                return pos
            depth -= 1
        elif c in "\n;" and (depth == 0 or (c == "\n" and _next_line_is_item(text, pos + 1))):
            return pos
        pos += 1
    return n


def _string_end(text: str, pos: int) -> int:
    if text.startswith('"""', pos):
        end = re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*"""').match(text, pos + 3)
        return end.end() if end else len(text)
    end = re.compile(r'(?:[^"\\\n]|\\[^\n])*"?').match(text, pos + 1)
    return end.end() if end else len(text)


def _index_or_end(text: str, char: str, pos: int) -> int:
    found = text.find(char, pos)
    return len(text) if found < 0 else found


def _next_line_is_item(text: str, pos: int) -> bool:
    match = _LINE_START_WORD.match(text, pos)
    return bool(
        match
        and match.group(1) in ("step", "input", "output", "resource", "defaults", "use", "deadline")
    )


def _what(token: Tok) -> str:
    if token.type in ("_NL", "$END"):
        return _WORDS[token.type]
    if token.type == "NAME":
        return f"name `{token}`"
    if token.type in ("STRING", "LONG_STRING"):
        return "string"
    text = str(token)
    return f"`{text if len(text) <= 20 else text[:20] + '…'}`"


def _describe(expected: set[str]) -> str:
    """The expected terminals, in words."""
    expected = {t for t in expected if t != "SEMI"}
    if {"NAME", "NUMBER", "STRING"} <= expected:
        return "an expression"
    brace = " or `}`" if "RBRACE" in expected else ""
    if {"TIMEOUT", "RETRY"} <= expected:
        return "a policy" + brace
    if {"STEP", "INPUT"} <= expected:
        return "a plan item" + brace
    words = []
    if expected & _OPERATORS and len(expected) > 4:
        words.append("an operator")
        expected -= _OPERATORS
    for terminal in sorted(expected):
        words.append(_WORDS.get(terminal, f"`{terminal.lower()}`"))
    words = sorted(set(words), key=words.index)
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
