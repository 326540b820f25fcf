"""Values of literal tokens: numbers, durations, rates, percentages and strings.

Pure functions over token text, used by the transformer. A malformed value raises
`LexicalError` (or, for strings, is returned as a `Problem`) with words a user knows; the
positions in a `Problem` are offsets into the token text, so the caller can point at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("h", "m", "s", "ms")  # units combine in this (descending) order
RATE_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9][0-9_]*(?:\.[0-9][0-9_]*)?)([A-Za-z_.][A-Za-z_.]*)?")
_UNICODE_ESCAPE = re.compile(r"\{([0-9A-Fa-f]{1,6})\}")
_PLAIN_INTERPOLATION = re.compile(r'[^"{}]*\}')
_SPECIAL = re.compile(r"[\\$]")  # what `_scan` must look at; the rest is copied as is
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "$": "$"}
ESCAPES_HELP = 'escapes are \\\\ \\" \\n \\r \\t \\$ and \\u{HEX}'


class LexicalError(ValueError):
    """A malformed literal: `message` says what is wrong, `hint` how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@lru_cache(maxsize=4096)  # pure; a plan repeats the same few values
def parse_number(text: str) -> int | float:
    """`42`, `-3`, `0.5`, `1e-3`, `1_000`."""
    try:
        if any(c in text for c in ".eE"):
            return float(text)
        return int(text)
    except ValueError:
        raise LexicalError(f"malformed number `{text}`") from None


@lru_cache(maxsize=4096)  # pure; a plan repeats the same few values
def parse_duration(text: str) -> float:
    """`250ms`, `1.5s`, `1m30s` -> seconds."""
    total, pos, last_rank = 0.0, 0, -1
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise LexicalError(
                f"malformed duration `{text}`", "write durations like 250ms, 30s, 5m or 1m30s"
            )
        number, unit = match.group(1), match.group(2)
        if unit is None:
            raise LexicalError(
                f"duration `{text}` needs a unit",
                f"write `{text}s` for seconds; units are ms, s, m and h",
            )
        if unit not in DURATION_UNITS:
            raise LexicalError(f"unknown duration unit `{unit}`; use ms, s, m or h")
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise LexicalError(
                f"units in `{text}` must go from largest to smallest, each once",
                "write it like `1h30m` or `1m30s`",
            )
        total += _float(number, text) * DURATION_UNITS[unit]
        pos, last_rank = match.end(), rank
    return total


@lru_cache(maxsize=4096)  # pure; a plan repeats the same few values
def parse_rate(text: str) -> tuple[float, float]:
    """`10/s` -> (count, period in seconds)."""
    count, _, period = text.partition("/")
    if period not in RATE_PERIODS:
        raise LexicalError(
            f"unknown rate period `{period}`; use s, m or h", "write rates like 10/s, 600/m or 5/h"
        )
    return _float(count, text), RATE_PERIODS[period]


@lru_cache(maxsize=4096)  # pure; a plan repeats the same few values
def parse_percent(text: str) -> float:
    """`25%` -> 25.0."""
    return _float(text[:-1], text)


@lru_cache(maxsize=4096)  # pure; a plan repeats the same few values
def parse_factor(text: str) -> float:
    """`x2`, `x1.5` -> the backoff factor."""
    return _float(text[1:], text)


def _float(number: str, whole: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise LexicalError(f"malformed number in `{whole}`") from None


# --- strings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interpolation:
    """A `${...}`: its source and where that source starts in the token text."""

    source: str
    offset: int


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in a string, at token-text offsets [start, end)."""

    message: str
    hint: str | None
    start: int
    end: int
    kind: str = "escape"  # "escape" or "interpolation"


StringPart = str | Interpolation


def decode_string(token: str) -> tuple[list[StringPart], list[Problem]]:
    """Split a string token into literal text and `${...}` parts (triple-quoted: dedented first)."""
    if token.startswith('"""'):
        body, offsets = dedent(token[3:-3], 3)
        return _scan(token, body, offsets)
    return _scan(token, token[1:-1], range(1, len(token) - 1))


def dedent(body: str, base: int) -> tuple[str, Sequence[int]]:
    """SPEC section 9: drop a blank first and last line, remove the common indentation.

    Returns the text and, for each of its characters, the offset it came from (`base` is
    the offset of `body` in the token), so errors still point into the source.
    """
    lines, start = [], base
    for line in body.split("\n"):
        lines.append((start, line.removesuffix("\r")))
        start += len(line) + 1
    if len(lines) > 1 and not lines[0][1].strip(" \t"):
        lines.pop(0)
    if lines and not lines[-1][1].strip(" \t"):
        lines.pop()
    if len(lines) == 1:  # the common case (one line of text): its own indentation goes
        start, line = lines[0]
        kept = line.lstrip(" \t") or line
        first = start + len(line) - len(kept)
        return kept, range(first, first + len(kept))
    indents = [
        line[: len(line) - len(line.lstrip(" \t"))] for _, line in lines if line.strip(" \t")
    ]
    # character by character is what is wanted: the shared run of spaces and tabs
    cut = len(os.path.commonprefix(indents)) if indents else 0  # noqa: RUF071
    chars: list[str] = []
    offsets: list[int] = []
    for number, (start, line) in enumerate(lines):
        if number:
            chars.append("\n")
            offsets.append(start - 1)
        kept = line[min(cut, len(line) - len(line.lstrip(" \t"))) :]
        chars.append(kept)
        first = start + len(line) - len(kept)
        offsets.extend(range(first, first + len(kept)))
    return "".join(chars), offsets


_UNTERMINATED_LONG_HINT = "close it with `}`; write `$${` for a literal `${`"
# In a `"..."` string the usual cause is a `"` inside `${...}`, which ends the string there.
_UNTERMINATED_HINT = (
    'close it with `}`; a `"` inside `${...}` ends a `"..."` string, so write '
    'such a string with `"""`; write `$${` for a literal `${`'
)


def _scan(token: str, text: str, offsets: Sequence[int]) -> tuple[list[StringPart], list[Problem]]:
    parts: list[StringPart] = []
    problems: list[Problem] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        special = _SPECIAL.search(text, i)  # plain text runs are copied whole
        if special is None:
            buf.append(text[i:])
            break
        if special.start() > i:
            buf.append(text[i : special.start()])
            i = special.start()
        c = text[i]
        if c == "\\":
            i = _escape(text, i, offsets, buf, problems)
        elif c == "$" and text.startswith("$${", i):
            buf.append("${")
            i += 3
        elif c == "$" and text.startswith("${", i):
            end = _interpolation_end(text, i + 2)
            if end is None:
                problems.append(
                    Problem(
                        "unterminated `${` in string",
                        _UNTERMINATED_LONG_HINT if token.startswith('"""') else _UNTERMINATED_HINT,
                        offsets[i],
                        offsets[i] + 2,
                        "interpolation",
                    )
                )
                break
            if buf:
                parts.append("".join(buf))
                buf = []
            start = offsets[i + 2] if i + 2 < end else offsets[end]
            parts.append(Interpolation(token[start : offsets[end]], start))
            i = end + 1
        else:
            buf.append(c)
            i += 1
    if buf or not parts:
        parts.append("".join(buf))
    return parts, problems


def _escape(
    text: str, i: int, offsets: Sequence[int], buf: list[str], problems: list[Problem]
) -> int:
    """Decode the escape at text[i] (a backslash) into buf; return the index after it."""
    if i + 1 >= len(text):
        problems.append(
            Problem(
                "a string cannot end with a lone `\\`",
                "write `\\\\` for a backslash",
                offsets[i],
                offsets[i] + 1,
            )
        )
        return i + 1
    kind = text[i + 1]
    if kind in _SIMPLE_ESCAPES:
        buf.append(_SIMPLE_ESCAPES[kind])
        return i + 2
    if kind == "u":
        match = _UNICODE_ESCAPE.match(text, i + 2)
        if match and 0xD800 <= int(match.group(1), 16) <= 0xDFFF:
            problems.append(
                Problem(
                    f"`\\u{{{match.group(1)}}}` is a surrogate code point, not a character",
                    "write the character itself, or its code point (`\\u{1F600}`), not a "
                    "UTF-16 surrogate",
                    offsets[i],
                    offsets[match.end() - 1] + 1,
                )
            )
            return match.end()
        if match and int(match.group(1), 16) <= 0x10FFFF:
            buf.append(chr(int(match.group(1), 16)))
            return match.end()
        problems.append(
            Problem(
                "malformed unicode escape; write it like `\\u{1F600}`",
                None,
                offsets[i],
                offsets[i + 1] + 1,
            )
        )
        return i + 2
    shown = kind if kind.isprintable() else repr(kind)
    problems.append(
        Problem(
            f"unknown escape `\\{shown}` in string",
            f"write `\\\\{shown}` for a backslash followed by `{shown}`; {ESCAPES_HELP}",
            offsets[i],
            offsets[i + 1] + 1,
        )
    )
    return i + 2


def _interpolation_end(text: str, i: int) -> int | None:
    """The index of the `}` closing a `${` whose expression starts at i, or None."""
    plain = _PLAIN_INTERPOLATION.match(text, i)  # no quotes or braces inside: the usual case
    if plain is not None:
        return plain.end() - 1
    depth, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_quoted(text, i + 1)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _skip_quoted(text: str, i: int) -> int:
    """Skip a `"..."` inside an interpolation (only possible in a `\"\"\"` string)."""
    n = len(text)
    while i < n and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1
