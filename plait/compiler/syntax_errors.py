"""Syntax errors: lark's `on_error` handler for parse.py. It names each error in words a
user knows (an unclosed block, a `{` on the next line, `when` given an expression,
`a < b < c`, an unterminated string, ...) and recovers at statement level, so one pass
reports every error.

Recovery uses lark's interactive parser, which comes with each `UnexpectedInput`: the
parser's stacks are cut back to the start of the broken statement (its `parser_state`),
the lexer skips the rest of the statement (its `lexer_thread` line counter, as lark's own
`on_error` loop skips a bad character), and lark resumes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, get_args

from lark import Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from plait.compiler import codes, nodes
from plait.compiler.diagnostics import Label
from plait.compiler.expressions import did_you_mean
from plait.compiler.parse import Open, Scan, grammar
from plait.compiler.source import Span
from plait.compiler.transformer import RESERVED_WORDS, WHEN_HINT, span_of

MAX_ERRORS = 50
DURATION_UNITS = ("ms", "s", "m", "h")
# Words other tools use for what plait spells as one of its policies.
POLICY_ALIASES = {
    "depends_on": "after",
    "depends": "after",
    "needs": "after",
    "requires": "after",
    "condition": "if",
    "trigger_rule": "when",
    "trigger": "when",
}
# Settings of the plan or a resource written inside a step: (message, hint).
MISPLACED_POLICIES = {
    "deadline": (
        "`deadline` is a plan setting, not a step policy",
        "limit each attempt of this step with `timeout`; a `deadline` line in the plan "
        "bounds the whole run",
    ),
    "rate": (
        "`rate` is a resource setting, not a step policy",
        "declare `resource NAME { rate 10/s }` in the plan and write `uses NAME` here",
    ),
    "breaker": (
        "`breaker` is a resource setting, not a step policy",
        "declare `resource NAME { breaker after 5 failures }` in the plan and write "
        "`uses NAME` here",
    ),
}

_OPERATORS = frozenset(
    {"COMPARE", "IN", "NOT", "AND", "OR", "COALESCE", "DOT", "QDOT", "LSQB", "QLSQB", "LPAR"}
)
_CHARACTER_HINTS = {
    "'": 'strings use double quotes: "text"',
    "+": 'there is no arithmetic; build text with interpolation: "${a}${b}"',
    "-": "there is no arithmetic or unary minus; `-3` is a number literal",
    "!": "write `not x`, or `!=` for inequality",
    "&": "write `and`",
    "|": "write `or`",
}
_LINE_START_WORD = re.compile(r"[ \t]*([a-z]+)\b")
_LONG_STRING_REST = re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*"""')
_STRING_REST = re.compile(r'(?:[^"\\\n]|\\[^\n])*"?')
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
# What a finished statement leaves on the parser's value stack: recovery cuts back to it.
_STATEMENTS = (
    *get_args(nodes.PolicyNode),
    *get_args(nodes.ResourceSetting),
    *get_args(nodes.PlanItem),
    nodes.PlanNode,
)


class Keywords:
    """The words that start plan items, policies and resource settings, read from the
    grammar's rules (`_plan_item: use | input | ...`), in the grammar's order."""

    def __init__(self) -> None:
        lark = grammar()
        words = {t.name: t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
        self.terminal = {word: name for name, word in words.items() if word.isalpha()}
        first = {r.origin.name: r.expansion[0].name for r in lark.rules if r.expansion}

        def starting(rule: str) -> list[str]:
            alternatives = [r.expansion[0].name for r in lark.rules if r.origin.name == rule]
            return [first[name] for name in alternatives]

        policies, items = starting("_policy"), ["PLAN", *starting("_plan_item")]
        self.policy_terminals = frozenset(policies)
        self.item_terminals = frozenset(items) - self.policy_terminals
        self.policies = tuple(dict.fromkeys(words[t] for t in policies))
        self.items = tuple(dict.fromkeys(words[t] for t in items[1:]))
        self.resource_settings = tuple(words[t] for t in starting("_resource_item"))
        self.line_items = tuple(words[t] for t in items[1:] if t in self.item_terminals)


@lru_cache(maxsize=1)
def keywords() -> Keywords:
    return Keywords()


class Recovery:
    """The `on_error` callback of one parse: report, recover, and say whether to go on."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.keywords = keywords()
        self.last_error_pos = -1

    def __call__(self, problem: UnexpectedInput) -> bool:
        if isinstance(problem, UnexpectedToken):
            return self.on_token(problem)
        if isinstance(problem, UnexpectedCharacters):
            return self.on_character(problem)
        return False

    # --- unexpected tokens --------------------------------------------------------------------

    def on_token(self, problem: UnexpectedToken) -> bool:
        scan, parser = self.scan, problem.interactive_parser
        choices = {s for s in parser.choices() if s.isupper()}  # type: ignore[no-untyped-call]
        expected = choices - self.implausible(choices)
        token = self.keyword(problem.token, expected)
        if scan.interp:
            self.report_interpolation(token, expected)
            return False
        if token.type == "$END":
            self.report_end_of_file(expected)
            return False
        if self.keyword_read_as_name(parser, token):
            return True
        if token.start_pos == self.last_error_pos:
            self.unwind_statement(parser)  # the same token failed again after recovery
            return True
        self.report_token(token, expected)
        if scan.errors >= MAX_ERRORS:
            return False
        self.last_error_pos = token.start_pos or 0
        if self.open_before_line_start_keyword(token) is not None:
            self.unwind_to_keyword_level(parser, token)
            return True
        depth = self.unwind_statement(parser)
        end = statement_end(scan.text, token.start_pos or 0, depth)
        if end <= (token.start_pos or 0) and token.type == "RBRACE":
            self.feed(parser, token)  # the `}` ends the statement: it closes the block
        self.seek(parser, end)
        return True

    def keyword_read_as_name(self, parser: Any, token: Token) -> bool:
        """`step` at the start of a line where an expression goes (`[1,` left open above):
        the lexer read the item keyword as a name, and the parser failed on the token
        after it. Report the bracket left open before the keyword, and start its item."""
        prev = self.scan.prev
        kind = self.keywords.terminal.get(str(prev)) if prev is not None else None
        if prev is None or prev.type != "NAME" or kind not in self.keywords.item_terminals:
            return False
        keyword = Token.new_borrow_pos(kind, str(prev), prev)
        opened = self.open_before_line_start_keyword(keyword)
        if opened is None:
            return False
        self.report_unclosed(opened, self.scan.tspan(keyword), f" before `{keyword}`")
        self.last_error_pos = keyword.start_pos or 0
        if self.unwind_to_keyword_level(parser, keyword):
            self.feed(parser, token)
        return True

    def feed(self, parser: Any, token: Token) -> bool:
        """Give the parser a token again; False (and the token skipped) when it fails."""
        try:
            parser.feed_token(token)
        except UnexpectedInput:
            return False
        self.scan.accepted(token)
        return True

    def keyword(self, token: Token, expected: set[str]) -> Token:
        """A keyword read as a name where no name fits is that keyword (a `timeout` line
        inside an unclosed bracket starts a policy)."""
        kind = self.keywords.terminal.get(str(token))
        if token.type != "NAME" or kind is None or "NAME" in expected:
            return token
        return Token.new_borrow_pos(kind, str(token), token)

    def report_token(self, token: Token, expected: set[str]) -> None:
        scan = self.scan
        opened = self.open_before_line_start_keyword(token)
        if opened is not None:
            self.report_unclosed(opened, scan.tspan(token), f" before `{token}`")
        elif scan.head and scan.head[0].type == "WHEN":
            first = scan.head[1] if len(scan.head) > 1 else token
            scan.report(
                codes.WHEN_TAKES_RULE,
                "`when` takes a trigger rule, not an expression",
                self.to_statement_end(first, token),
                WHEN_HINT,
            )
        elif token.type in ("COMPARE", "IN", "NOT") and "AND" in expected:
            scan.report(
                codes.CHAINED_COMPARISON,
                f"comparisons do not chain: unexpected `{token}` after a comparison",
                scan.tspan(token),
                "combine two comparisons with `and`: `a < b and b < c`",
            )
        elif self.unit_after_space(token):
            self.report_spaced_unit(token)
        elif self.string_closed_inside_interpolation():
            self.report_quote_in_interpolation()
        elif str(token) in RESERVED_WORDS and "NAME" in expected:
            scan.report(
                codes.RESERVED_WORD,
                f"`{token}` is a reserved word and cannot be used as a name",
                scan.tspan(token),
                "choose another name",
            )
        else:
            self.report_generic(token, expected)

    def unit_after_space(self, token: Token) -> bool:
        """`deadline 3 days`: a bare number where a duration goes, then a word."""
        prev = self.scan.prev
        return (
            token.type == "NAME"
            and prev is not None
            and prev.type == "DURATION"
            and str(prev).replace("_", "").replace(".", "").isdigit()
        )

    def report_spaced_unit(self, token: Token) -> None:
        scan = self.scan
        number, word = str(scan.prev), str(token)
        span = _join(scan.tspan(scan.prev), scan.tspan(token))  # type: ignore[arg-type]
        if word in DURATION_UNITS:
            scan.report(
                codes.UNKNOWN_DURATION_UNIT,
                f"a duration is written without a space: `{number}{word}`, not `{number} {word}`",
                span,
                f"write `{number}{word}`",
            )
            return
        scan.report(
            codes.UNKNOWN_DURATION_UNIT,
            f"unknown duration unit `{word}`; use ms, s, m or h, right after the number",
            span,
            f"for example `{number}s`, `{number}m` or `{number}h`",
        )

    def string_closed_inside_interpolation(self) -> bool:
        """`"${x ?? "none"}"`: the `"` meant to open an inner string closed the outer one."""
        prev = self.scan.prev
        return prev is not None and prev.type == "STRING" and _open_interpolation(str(prev))

    def report_quote_in_interpolation(self) -> None:
        scan = self.scan
        prev: Token = scan.prev  # type: ignore[assignment]
        end_line, end_column = prev.end_line or 1, prev.end_column or 2
        quote = scan.span(end_line, end_column - 1, end_line, end_column)
        scan.report(
            codes.BAD_INTERPOLATION,
            f'the `"` at {quote.line}:{quote.column} ends the string that starts at '
            f'{prev.line}:{prev.column}: inside `${{...}}` of a `"..."` string, '
            'a `"` cannot appear',
            quote,
            *_quote_hints(scan.text, prev),
        )

    def report_generic(self, token: Token, expected: set[str]) -> None:
        scan, words = self.scan, self.keywords
        word, span = str(token), scan.tspan(token)
        ends = token.type in ("RBRACE", "_NL")
        if {"TIMEOUT", "RETRY"} <= expected and not ends:
            if word in MISPLACED_POLICIES:
                message, hint = MISPLACED_POLICIES[word]
                scan.report(codes.UNKNOWN_POLICY, message, span, hint)
                return
            scan.report(
                codes.UNKNOWN_POLICY,
                f"unknown policy `{word}`",
                span,
                self.policy_alias_hint(token)
                or _guess(word, words.policies)
                or f"policies are {', '.join(words.policies)}",
            )
        elif {"RATE_KW", "BREAKER"} <= expected and not ends:
            if word in ("cooldown", "failures"):
                scan.report(
                    codes.UNKNOWN_POLICY,
                    f"`{word}` belongs on the `breaker` line, not on a line of its own",
                    span,
                    f"write `{self.breaker_line(token)}`",
                )
                return
            scan.report(
                codes.UNKNOWN_POLICY,
                f"unknown resource setting `{word}`; use rate, concurrency or breaker",
                span,
                _guess(word, words.resource_settings),
            )
        elif {"STEP", "INPUT"} <= expected and not ends:
            scan.report(
                codes.SYNTAX_ERROR,
                f"expected a plan item, found {_what(token)}",
                span,
                _guess(word, words.items) or f"plan items are {', '.join(words.items)}",
            )
        else:
            scan.report(
                codes.SYNTAX_ERROR,
                f"unexpected {_what(token)}; expected {_describe(expected)}",
                span,
            )

    def policy_alias_hint(self, token: Token) -> str | None:
        """`depends_on a`: a word other tools use for a policy plait spells differently."""
        policy = POLICY_ALIASES.get(str(token).lower())
        if policy is None:
            return None
        text, end = self.scan.text, token.end_pos or 0
        rest = text[end : statement_end(text, end, 0)].strip()
        return f"plait writes this as `{f'{policy} {rest}' if rest else policy}`"

    def breaker_line(self, token: Token) -> str:
        """The `breaker` line with the stray setting moved onto it."""
        text, start = self.scan.text, token.start_pos or 0
        setting = " ".join(text[start : statement_end(text, token.end_pos or start, 0)].split())
        before = text[:start].rstrip().rsplit("\n", 1)[-1].split("#")[0]
        breaker = " ".join(before.split())
        if not breaker.startswith("breaker after"):
            breaker = "breaker after 5 failures"
        return f"{breaker} {setting}"

    def open_before_line_start_keyword(self, token: Token) -> Open | None:
        """The bracket or block a plan item / policy keyword at a line start shows unclosed."""
        scan = self.scan
        if not scan.stack or not self.starts_line(token):
            return None
        inner = scan.stack[-1]
        if (
            token.type == "DEADLINE"
            and inner.kind == "block"
            and not inner.label.startswith(("plan", "resource", "loop"))
        ):
            return None  # `deadline` in a step or `defaults`: named as a misplaced setting
        if token.type in self.keywords.item_terminals and (
            inner.kind != "block" or not inner.label.startswith("plan")
        ):
            return inner
        if token.type in self.keywords.policy_terminals and inner.kind != "block":
            return inner
        return None

    def report_unclosed(self, opened: Open, span: Span, where: str = "") -> None:
        scan = self.scan
        at = scan.tspan(opened.token)
        closer = "]" if opened.kind == "[" else ")" if opened.kind == "(" else "}"
        what = (
            opened.label
            if opened.kind == "block"
            else "the dict"
            if opened.kind == "dict"
            else f"`{opened.token}`"
        )
        hints = (
            (LOOP_BODY_HINT,)
            if where and opened.kind == "block" and opened.label.startswith("loop")
            else ()
        )
        scan.report(
            codes.UNCLOSED_BLOCK,
            f"expected `{closer}` to close {what} opened at {at.line}:{at.column}{where}",
            span,
            *hints,
            labels=(Label(at, f"{what} opened here"),),
        )

    def to_statement_end(self, first: Token, token: Token) -> Span:
        """From `first` to the end of the statement `token` is in, trailing blanks excluded."""
        text = self.scan.text
        end = statement_end(text, token.start_pos or 0, 0)
        end = max(len(text[:end].rstrip()), token.end_pos or 0)
        return self.scan.span(first.line or 1, first.column or 1, *self.scan.position(end))

    def report_end_of_file(self, expected: set[str]) -> None:
        # at the end of the last line with text: that is where the missing token belongs
        scan = self.scan
        line, column = scan.position(len(scan.text.rstrip()))
        span = scan.span(line, column, line, column + 1)
        opened = scan.stack[-1] if scan.stack else None
        if opened is not None and (_closer_type(opened) in expected or scan.at_line_start):
            self.report_unclosed(opened, span)
        else:
            scan.report(
                codes.SYNTAX_ERROR, f"unexpected end of file; expected {_describe(expected)}", span
            )

    def report_interpolation(self, token: Token, expected: set[str]) -> None:
        scan = self.scan
        if not scan.text.strip():
            message = "empty `${}` in string"
        elif token.type == "$END":
            message = f"incomplete expression in `${{...}}`; expected {_describe(expected)}"
        else:
            message = f"unexpected {_what(token)} in `${{...}}`; expected {_describe(expected)}"
        if token.type == "$END":  # lark places it on the last token; it belongs at the end
            line, column = scan.position(len(scan.text))
            span = scan.span(line, column, line, column + 1)
        else:
            span = scan.tspan(token)
        scan.report(codes.BAD_INTERPOLATION, message, span, "write `$${` for a literal `${`")

    def implausible(self, choices: set[str]) -> set[str]:
        """Terminals LALR's merged states allow here that the open brackets, or the
        statement, rule out (after an expression, `every` and `{` only follow a loop's
        `until`)."""
        scan = self.scan
        inner = scan.stack[-1].kind if scan.stack else None
        ruled_out = {"RPAR", "RSQB", "RBRACE"}
        if inner:
            ruled_out.discard(_closer_type(scan.stack[-1]))
            ruled_out.add("$END")
        ruled_out.add("COMMA" if inner in (None, "block") else "_NL")
        if inner != "dict" and not (
            inner in (None, "block") and scan.head and scan.head[0].type == "STEP"
        ):
            ruled_out.add("COLON")
        if "OR" in choices and not (scan.head and scan.head[0].type == "LOOP"):
            ruled_out |= {"EVERY", "LBRACE"}
        return ruled_out

    # --- unexpected characters ----------------------------------------------------------------

    def on_character(self, problem: UnexpectedCharacters) -> bool:
        scan = self.scan
        text, pos = scan.text, problem.pos_in_stream or 0
        line, column = scan.position(pos)
        char = text[pos]
        parser = problem.interactive_parser
        if scan.interp:
            scan.report(
                codes.BAD_INTERPOLATION,
                f"unexpected character `{char}` in `${{...}}`",
                scan.span(line, column, line, column + 1),
            )
            return False
        end_of_line = text.find("\n", pos)
        end_of_line = len(text) if end_of_line < 0 else end_of_line
        if char == '"':
            long = text.startswith('"""', pos)
            scan.report(
                codes.UNTERMINATED_STRING,
                "unterminated string",
                scan.span(line, column, line, column + max(1, end_of_line - pos)),
                'close it with `"""`'
                if long
                else 'close it with `"` on the same line; use `"""` for text over several lines',
            )
            if long or scan.errors >= MAX_ERRORS:
                return False
            # The string most likely swallowed the brackets that closed the statement
            # (`f(x = "text)`): end the statement with its line, or the brackets it left
            # open would swallow the lines after it and report a cascade of errors there.
            self.unwind_statement(parser)
            self.seek(parser, statement_end(text, end_of_line, 0))
            return True
        shown = char if char.isprintable() else repr(char)
        scan.report(
            codes.SYNTAX_ERROR,
            f"unexpected character `{shown}`",
            scan.span(line, column, line, column + 1),
            _CHARACTER_HINTS.get(char),
        )
        if scan.errors >= MAX_ERRORS:
            return False
        depth = self.unwind_statement(parser)
        self.seek(parser, statement_end(text, pos + 1, depth))
        return True

    # --- recovery -----------------------------------------------------------------------------

    def unwind_statement(self, parser: Any) -> int:
        """Close the brackets opened by the current statement and cut the parser back to
        its start; return how many brackets there were."""
        stack, depth = self.scan.stack, 0
        while stack and stack[-1].kind != "block":
            stack.pop()
            depth += 1
        self.rewind(parser, None)
        return depth

    def unwind_to_keyword_level(self, parser: Any, token: Token) -> bool:
        """Drop open brackets (and, for a plan item, blocks other than the plan's), then give
        the keyword to the parser again: it starts the next statement."""
        stack, outermost = self.scan.stack, None
        while stack:
            top = stack[-1]
            if top.kind == "block" and (
                token.type in self.keywords.policy_terminals or top.label.startswith("plan")
            ):
                break
            stack.pop()
            if top.kind == "block":
                outermost = top.token
        self.rewind(parser, outermost)
        return self.feed(parser, token)

    def rewind(self, parser: Any, block: Token | None) -> None:
        """Cut the parser's stacks back to where the current statement started: after the
        last statement end, finished statement or block `{` below `block` (a block being
        dropped) or the top."""
        values: list[Any] = parser.parser_state.value_stack
        states: list[int] = parser.parser_state.state_stack
        limit = len(values)
        if block is not None:
            limit = next((i for i, v in enumerate(values) if v is block), limit)
        base, depth = 0, 0  # depth: blocks and dicts closed (`}`) above, skipped whole
        for i in range(limit - 1, -1, -1):
            value = values[i]
            kind = value.type if isinstance(value, Token) else None
            if kind == "RBRACE":
                depth += 1
            elif depth and kind in ("LBRACE", "DICT_OPEN"):
                depth -= 1
            elif not depth and _ends_statement(value):
                base = i + 1
                break
        del values[base:]
        del states[base + 1 :]
        scan = self.scan
        scan.head, scan.at_line_start, scan.brace_pending = [], True, False
        scan.prev = Token("_NL", "\n")

    def seek(self, parser: Any, pos: int) -> None:
        """Continue lexing at `pos` of the text (never back)."""
        state = parser.lexer_thread.state
        here = state.line_ctr.char_pos
        if pos > here:
            state.line_ctr.feed(self.scan.text[here:pos])

    def starts_line(self, token: Token) -> bool:
        text, start = self.scan.text, token.start_pos or 0
        return not text[text.rfind("\n", 0, start) + 1 : start].strip()


def _ends_statement(value: object) -> bool:
    if isinstance(value, Token):
        return value.type in ("_NL", "LBRACE")
    return (
        isinstance(value, Tree)
        and bool(value.children)
        and isinstance(value.children[-1], _STATEMENTS)
    )


def _join(first: Span, last: Span) -> Span:
    return span_of(first.line, first.column, last.end_line, last.end_column)


# A plan item inside a loop's body (SPEC section 11).
LOOP_BODY_HINT = (
    "a loop's body holds its policies and steps only: loops do not nest, and inputs, "
    "outputs, resources and presets stand outside it; close the loop with `}` first"
)


def _closer_type(opened: Open) -> str:
    return {"(": "RPAR", "[": "RSQB"}.get(opened.kind, "RBRACE")


def statement_end(text: str, pos: int, depth: int) -> int:
    """Where the statement around `pos` ends: a newline or `;` outside brackets, or the `}`
    that closes the enclosing block; `depth` brackets are open at `pos`."""
    from plait.compiler.parse import MAX_NESTING

    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "#":
            found = text.find("\n", pos)
            pos = n if found < 0 else found
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
        end = _LONG_STRING_REST.match(text, pos + 3)
    else:
        end = _STRING_REST.match(text, pos + 1)
    return end.end() if end else len(text)


def _next_line_is_item(text: str, pos: int) -> bool:
    match = _LINE_START_WORD.match(text, pos)
    return bool(match and match.group(1) in keywords().line_items)


def _open_interpolation(string: str) -> bool:
    """Whether a `"..."` token's text ends inside a `${...}` (its closing `"` was not one)."""
    opened = string.rfind("${")
    while opened > 0 and string[opened - 1] == "$":  # `$${` is a literal `${`
        opened = string.rfind("${", 0, opened - 1)
    return opened >= 0 and "}" not in string[opened:]


def _quote_hints(text: str, string: Token) -> tuple[str, ...]:
    """How to write `"${x ?? "none"}"`: as a `\"\"\"` string, or without the quotes."""
    whole = _intended_string(text, string)
    if whole is None:
        return ('use a `"""` string, in which `"` may appear inside `${...}`',)
    inner = whole[1:-1]
    hints = [f'use a `"""` string, in which `"` may appear inside `${{...}}`: `"""{inner}"""`']
    if inner.startswith("${") and inner.endswith("}") and inner.count("${") == 1:
        hints.append(
            f"or, as the string is only `${{...}}`, write the expression alone: "
            f"`{inner[2:-1].strip()}`"
        )
    return tuple(hints)


def _intended_string(text: str, string: Token) -> str | None:
    """The string the user meant: from the `"` that opened `string` past the `}` of its open
    `${`, skipping the inner strings, to the next `"` on the line; None if there is none."""
    start = string.start_pos or 0
    end_of_line = text.find("\n", start)
    end_of_line = len(text) if end_of_line < 0 else end_of_line
    pos = start + str(string).rfind("${") + 2
    while pos < end_of_line and text[pos] != "}":
        if text[pos] == '"':
            close = text.find('"', pos + 1, end_of_line)
            pos = end_of_line if close < 0 else close
        pos += 1
    close = text.find('"', pos, end_of_line)
    return text[start : close + 1] if pos < end_of_line and close >= 0 else None


def _what(token: Token) -> str:
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


def _guess(word: str, choices: tuple[str, ...]) -> str | None:
    close = did_you_mean(word, choices)
    return close[0] if close else None
