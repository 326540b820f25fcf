"""JSON text made piece by piece, for documents with one entry per step.

A run's report and a compiled plan hold an object with an entry per step; made as one
dict and then one string, a 10,000-step document is tens of MB alive at once. Here the
document is a small skeleton whose per-step objects are `Entries`, made one at a time as
the text is written: the pieces join to exactly what `pydantic_core.to_json` makes of the
whole document (compact, or with `indent`), every value written by pydantic-core itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core


@dataclass(slots=True)
class Entries:
    """A JSON object whose (key, value) entries are made as they are written; a value may
    be `Entries` too."""

    entries: Iterable[tuple[str, Any]]


def pieces(value: Any, indent: int | None = None) -> Iterator[str]:
    """The JSON text of `value` in pieces: at most one entry of an `Entries` at a time."""
    return _pieces(value, " " * indent if indent else None, 0)


def _pieces(value: Any, unit: str | None, depth: int) -> Iterator[str]:
    if isinstance(value, Entries):
        yield from _object(value.entries, unit, depth)
        return
    text = pydantic_core.to_json(value, indent=len(unit) if unit else None).decode()
    # (every line break of indented JSON is layout: a string's own are escaped)
    yield text.replace("\n", "\n" + unit * depth) if unit and depth else text


def _object(entries: Iterable[tuple[str, Any]], unit: str | None, depth: int) -> Iterator[str]:
    """An object laid out as pydantic-core lays it out at `depth`: `{}` when empty; else,
    when indenting, an entry per line and the closing brace on a line of its own."""
    pad = "\n" + unit * (depth + 1) if unit else ""
    colon = ": " if unit else ":"
    separator = "{" + pad
    for key, value in entries:
        yield separator + pydantic_core.to_json(key).decode() + colon
        yield from _pieces(value, unit, depth + 1)
        separator = "," + pad
    if separator[0] == "{":
        yield "{}"
    else:
        yield "\n" + unit * depth + "}" if unit else "}"
