"""Source text and positions: spans, and the side table mapping IR entities to their spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class Span(NamedTuple):
    """A region of the plan file: 1-based lines and columns; the end column is exclusive.

    A named tuple, not a pydantic model: a parse of 10,000 steps keeps ~200,000 of them, and
    a tuple is built ~5x faster and takes a quarter of the memory of a model with its
    `__dict__`. In the IR it still validates from, and serialises to, the JSON object
    `{"line": .., "column": .., "end_line": .., "end_column": ..}` (see the schema below).
    Being a tuple it also equals a plain tuple of the same four numbers, and orders by
    position.
    """

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        as_dict = core_schema.typed_dict_schema(
            {name: core_schema.typed_dict_field(core_schema.int_schema()) for name in cls._fields},
            extra_behavior="forbid",
        )
        from_dict = core_schema.no_info_after_validator_function(lambda d: cls(**d), as_dict)
        return core_schema.json_or_python_schema(
            json_schema=from_dict,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_dict]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(_span_dict),
        )


def _span_dict(span: Span) -> dict[str, int]:
    return {"line": span[0], "column": span[1], "end_line": span[2], "end_column": span[3]}


# Keys of the span table name an IR entity by path, so checks that run on the
# position-free IR can still point at the source. The shapes in use:
#   ("plan",)                        the plan's name
#   ("input", NAME)                  an input's name;   ("input", NAME, "default") its default
#   ("output", NAME)                 an output's name   (its expression carries its own span)
#   ("resource", NAME)               a resource's name
#   ("resource", NAME, FIELD)        its rate, concurrency or breaker setting
#   ("step", NAME)                   a step's name;     ("step", NAME, "tool") the tool name
#   ("step", NAME, "arg", ARG)       an argument's name (its value expression carries its own span)
#   ("step", NAME, "policy", POLICY) a policy clause (timeout, retry, after, fallback, ...)
#   ("step", NAME, "after", TARGET)  one name in `after`; likewise "fallback" and "uses"
#   ("step", NAME, "var")            a map step's loop variable
#   ("defaults", POLICY)             a policy inside `defaults`; ("defaults", "uses", R)
#   ("use", INDEX)                   the INDEX-th `use` item (0-based)
#   ("deadline",) ("concurrency",)   plan-level settings
SpanKey = tuple[str, ...]


@dataclass
class SourceMap:
    """The plan file as read, and where each IR entity was written."""

    path: str
    text: str
    spans: dict[SpanKey, Span] = field(default_factory=dict)

    def span(self, *key: str) -> Span | None:
        return self.spans.get(tuple(key))

    def line_text(self, line: int) -> str:
        lines = source_lines(self.text)
        return lines[line - 1] if 0 < line <= len(lines) else ""


# What ends a line of a plan (SPEC section 2): `\n`, `\r\n` or a lone `\r`, and nothing else.
# U+2028, U+2029, NEL (U+0085), VT, FF and the other characters `str.splitlines` also
# breaks at are ordinary characters inside a comment or a string, so they never move a
# diagnostic to another line.
_BLANK_AT_END = " \t\n"


def plan_text(text: str) -> str:
    """A plan's text as the compiler reads it: line ends made `\n`, blank space at the end
    of the file dropped (one final newline kept).

    Done once, before any parser sees the text, so that (1) every stage counts lines by
    `\n` alone and (2) no stage can spend more than linear time on a long run of trailing
    blanks (scanning them once per position was quadratic: 200 KB of spaces took 26 s).
    Lines and columns of everything before the trailing blanks are unchanged.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    stripped = text.rstrip(_BLANK_AT_END)
    return stripped + "\n" if stripped and len(stripped) != len(text) else stripped


def source_lines(text: str) -> list[str]:
    """The lines of a plan's text, split at `\n` only (see `plan_text`)."""
    return text.split("\n")
