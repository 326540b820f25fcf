"""Source text and positions: spans, and the side table mapping IR entities to their spans."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of the plan file: 1-based lines and columns; the end column is exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: int
    column: int
    end_line: int
    end_column: int


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
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""
