"""Source text -> syntax tree (`nodes.PlanNode`) plus syntax diagnostics; never raises.

One parser: lark's LALR parser over plait.lark, through lark's public API:
- the contextual lexer makes keywords soft (a word is a keyword only where the parser
  state accepts it, so an input may be called `max`, and any word may follow a dot);
- `Layout`, the postlexer below, applies the newline and `{` rules the grammar leaves out:
  newlines are dropped inside ( ) [ ] and a dict's { }, a run of them (and `;`) ends one
  statement elsewhere, and a `{` after an operator, `=`, `:`, `,` or a bracket opens a
  dict, not a block;
- the transformer (transformer.py) builds the nodes as the parser reduces (no parse tree);
- syntax errors go to `on_error` (syntax_errors.py), which names them and recovers at
  statement level, so one pass reports several.
`${...}` sources are parsed by a nested run of the same parser (start symbol `interp`)
with positions mapped back into the file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import get_args

from lark import Lark, Token, UnexpectedInput
from lark.lark import PostLex

from plait.compiler import codes, nodes
from plait.compiler.diagnostics import Diagnostic, Label, error
from plait.compiler.ir import Expr
from plait.compiler.source import Span
from plait.compiler.transformer import PlanTransformer, span_of

GRAMMAR_PATH = Path(__file__).resolve().parent.parent / "grammar" / "plait.lark"
MAX_NESTING = 64  # open brackets; deeper input is refused with a diagnostic

# A `{` after one of these opens a block (plan, step, resource, `defaults`); else a dict.
BLOCK_AFTER = frozenset({"RPAR", "NAME", "STRING", "LONG_STRING", "DEFAULTS", "_NL"})
BLOCK_HEADS = frozenset({"PLAN", "RESOURCE", "DEFAULTS", "STEP", "LOOP", "TOOL"})
# A loop's header ends in a value (`max 4 {`, `until n >= 3 {`, `every 1s {`): after one of
# these in a `loop` statement, `{` opens its block.
LOOP_BLOCK_AFTER = BLOCK_AFTER | {"NUMBER", "DURATION", "RSQB", "RBRACE", "TRUE", "FALSE", "NULL"}
_OPENERS = {"LPAR": "(", "LSQB": "[", "QLSQB": "[", "DICT_OPEN": "dict", "LBRACE": "block"}
_CLOSERS = frozenset({"RPAR", "RSQB", "RBRACE"})
_BRACKETS = frozenset(_OPENERS) | _CLOSERS

_EXPR_TYPES = get_args(get_args(Expr)[0])  # the classes of the Expr union
_TRANSFORMER = PlanTransformer()
_LOCK = threading.RLock()


class Fatal(Exception):
    """Stop parsing: nothing sensible can follow (already reported)."""


@dataclass
class Open:
    """An open bracket or block, for newline handling, error messages and recovery."""

    kind: str  # "(", "[", "dict" or "block"
    token: Token
    label: str  # blocks: "step `draft`", "plan `triage`", "`defaults`", ...


@dataclass
class Scan:
    """The layout state of one parse (a file, or one `${...}` source): the postlexer's
    memory, which `on_error` reads and rewinds. lark starts a new token stream each time it
    resumes after an error, so the state lives here, not in the stream."""

    text: str
    path: str
    diagnostics: list[Diagnostic]
    origin: tuple[int, int] | None = None  # where a `${...}` source starts in the file
    stack: list[Open] = field(default_factory=list)
    head: list[Token] = field(default_factory=list)  # first two tokens of the statement
    prev: Token | None = None  # the last token the parser accepted
    at_line_start: bool = True  # the last thing accepted ended a statement or opened a block
    errors: int = 0
    # a block's `{` on a later line was reported; the line ends up to it are dropped
    brace_pending: bool = False

    def __post_init__(self) -> None:
        if self.origin is not None:  # a `${...}` starts in an expression, where `{` is a dict
            self.prev = Token("COLON", ":")

    @property
    def interp(self) -> bool:
        return self.origin is not None

    def tokens(self, stream: Iterator[Token]) -> Iterator[Token]:
        """The postlexer proper: the newline and `{` rules (see the module docstring).

        Code after each `yield` runs only when the parser asks for the next token, that is
        once it has accepted this one; a token it rejects never becomes `prev`. (The hot
        loop of a parse: what `accepted` does is written out here for the common tokens.)"""
        stack, interp, head = self.stack, self.interp, self.head
        for token in stream:
            kind = token.type
            if kind == "_NL" or kind == "SEMI":
                if interp or (stack and stack[-1].kind != "block"):
                    if kind == "_NL":
                        continue
                    yield token  # `;` inside brackets: the parser reports it
                    continue
                if self.at_line_start or self.brace_pending or self.brace_follows(token):
                    continue
                if kind == "SEMI":
                    token = Token.new_borrow_pos("_NL", token.value, token)
                yield token
                self.prev, self.at_line_start = token, True
                head = self.head = []
                continue
            if (
                kind == "LBRACE"
                and (self.prev.type if self.prev else "_NL") not in BLOCK_AFTER
                and not self.loop_block_opens()
            ):
                token = Token.new_borrow_pos("DICT_OPEN", token.value, token)
                kind = "DICT_OPEN"
            yield token
            self.prev, self.at_line_start, self.brace_pending = token, False, False
            if kind in _BRACKETS:
                self.accepted(token)
                head = self.head
            elif len(head) < 2 and (not stack or stack[-1].kind == "block"):
                head.append(token)

    def loop_block_opens(self) -> bool:
        """A `{` right after a value that ends a `loop` header opens the loop's block."""
        head, prev = self.head, self.prev
        return (
            bool(head)
            and head[0].type == "LOOP"
            and prev is not None
            and (prev.type in LOOP_BLOCK_AFTER)
            and (not self.stack or self.stack[-1].kind == "block")
        )

    def accepted(self, token: Token) -> None:
        """Note a token the parser took (not a statement end)."""
        self.prev, self.at_line_start = token, False
        stack = self.stack
        if len(self.head) < 2 and (not stack or stack[-1].kind == "block"):
            self.head.append(token)
        kind = token.type
        opened = _OPENERS.get(kind)
        if opened is not None:
            self.push(Open(opened, token, self.label() if opened == "block" else ""))
            if opened == "block":
                self.head, self.at_line_start = [], True
        elif kind in _CLOSERS and stack:
            stack.pop()

    def push(self, opened: Open) -> None:
        self.stack.append(opened)
        if len(self.stack) > MAX_NESTING:
            self.report(
                codes.SYNTAX_ERROR,
                f"brackets nested deeper than {MAX_NESTING} levels",
                self.tspan(opened.token),
                "split the value into smaller pieces",
            )
            raise Fatal

    def label(self) -> str:
        words = [str(t) for t in self.head]
        if len(words) >= 2 and words[0] in ("plan", "step", "resource", "loop", "tool"):
            return f"{words[0]} `{words[1]}`"
        return f"`{words[0]}`" if words else "the block"

    def brace_follows(self, newline: Token) -> bool:
        """A block `{` on the line after its header: report it (E102) and parse on as if it
        stood on the header line."""
        if not self.head or self.head[0].type not in BLOCK_HEADS or self.prev is None:
            return False
        if self.prev.type not in BLOCK_AFTER or self.prev.type == "_NL":
            return False
        brace = _skip_blank(self.text, newline.start_pos or 0)
        if not self.text.startswith("{", brace):
            return False
        line, column = self.position(brace)
        self.report(
            codes.BRACE_ON_NEXT_LINE,
            f"the `{{` of {self.label()} must be on the same line as its header",
            self.span(line, column, line, column + 1),
            f"move `{{` up to the end of line {self.map(self.prev.end_line or line, 1)[0]}",
        )
        self.brace_pending = True  # once: blank and comment lines before it are skipped
        return True

    # --- positions and reporting --------------------------------------------------------------

    def report(
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

    def position(self, pos: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - self.text.rfind("\n", 0, pos)

    def map(self, line: int, column: int) -> tuple[int, int]:
        """A position in the text parsed -> its position in the file."""
        if self.origin is None:
            return line, column
        origin_line, origin_column = self.origin
        if line == 1:
            return origin_line, origin_column + column - 1
        return origin_line + line - 1, column

    def span(self, line: int, column: int, end_line: int, end_column: int) -> Span:
        return span_of(*self.map(line, column), *self.map(end_line, end_column))

    def tspan(self, token: Token) -> Span:
        line, column = token.line or 1, token.column or 1
        if token.type == "_NL":  # the line end itself, not the indentation after it
            return self.span(line, column, line, column + 1)
        return self.span(line, column, token.end_line or line, token.end_column or column + 1)


def _skip_blank(text: str, pos: int) -> int:
    """The first position from `pos` on that is not a blank, a newline or in a comment."""
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "#":
            found = text.find("\n", pos)
            pos = n if found < 0 else found
        elif c in " \t\f\r\n":
            pos += 1
        else:
            break
    return pos


class Layout(PostLex):
    """lark's postlexer hook: runs the current parse's `Scan` over the token stream."""

    # Lexed in every parser state. NAME too: a word is then read whole (`retryfailures` is
    # not `retry` + `failures`), and lark still types it as a keyword where one is accepted.
    # COMPARE: `==` where `=` goes is one token, reported as such.
    always_accept = ("_NL", "SEMI", "LBRACE", "NAME", "COMPARE")

    def __init__(self) -> None:
        self.scans: list[Scan] = []  # a stack: `${...}` sources are parsed inside a parse

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        return self.scans[-1].tokens(stream)


_LAYOUT = Layout()


@lru_cache(maxsize=1)
def grammar() -> Lark:
    """The parser, built once (the grammar analysis is cached on disk by lark)."""
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        postlex=_LAYOUT,
        transformer=_TRANSFORMER,
        start=["start", "interp"],
        maybe_placeholders=False,
        cache=True,
    )


def parse(text: str, path: str = "") -> tuple[nodes.PlanNode | None, list[Diagnostic]]:
    """Parse a plan; syntax errors come back as diagnostics (codes E1xx), never as exceptions."""
    with _LOCK:
        _TRANSFORMER.reset(path)
        _TRANSFORMER.sub_parse = lambda source, line, column: _parse_interpolation(
            source, line, column, path
        )
        diagnostics: list[Diagnostic] = []
        plans = _run(Scan(text, path, diagnostics), "start")
        diagnostics.extend(_TRANSFORMER.diagnostics)
        _TRANSFORMER.reset("")
    plan = _one_plan(plans, text, path, diagnostics)
    diagnostics.sort(key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    return plan, diagnostics


def _run(scan: Scan, start: str) -> object:
    """One run of the parser over `scan.text`; None when it could not finish."""
    from plait.compiler.syntax_errors import Recovery

    _LAYOUT.scans.append(scan)
    try:
        return grammar().parse(scan.text, start=start, on_error=Recovery(scan))
    except (UnexpectedInput, Fatal):
        return None
    except RecursionError:  # belt and braces: the nesting limits should make it unreachable
        line, column = scan.position(len(scan.text))
        scan.report(
            codes.SYNTAX_ERROR,
            "plan is nested too deeply",
            scan.span(line, column, line, column + 1),
        )
        return None
    finally:
        _LAYOUT.scans.pop()


def _parse_interpolation(source: str, line: int, column: int, path: str) -> Expr | None:
    """Parse the source of one `${...}` that starts at (line, column) of the file."""
    origin = (line, column)  # already mapped into the file by the transformer
    _TRANSFORMER.origins.append(origin)
    try:
        result = _run(Scan(source, path, _TRANSFORMER.diagnostics, origin), "interp")
    finally:
        _TRANSFORMER.origins.pop()
    return result if isinstance(result, _EXPR_TYPES) else None


def _one_plan(
    plans: object, text: str, path: str, diagnostics: list[Diagnostic]
) -> nodes.PlanNode | None:
    if not isinstance(plans, tuple):
        return None
    strays = [item for item in plans if not isinstance(item, nodes.PlanNode)]
    found = [item for item in plans if isinstance(item, nodes.PlanNode)]
    if strays and not found:
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
        closed = found[0].span if found else None
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
    if not found:
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
    for extra in found[1:]:
        diagnostics.append(
            error(
                codes.MULTIPLE_PLANS,
                f"a file holds exactly one plan; found another, `{extra.name.name}`",
                extra.name.span,
                "move it to a file of its own",
                path=path,
                labels=(Label(found[0].name.span, "the first plan"),),
            )
        )
    return found[0]


def _end_of(span: Span) -> Span:
    return span_of(span.end_line, max(span.end_column - 1, 1), span.end_line, span.end_column)
