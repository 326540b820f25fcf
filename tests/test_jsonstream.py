"""JSON made piece by piece (`plait.jsonstream`) is the text pydantic-core makes of the
whole document, compact and indented, and holds one entry of an `Entries` at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic_core
import pytest

from plait.jsonstream import Entries, pieces

DOCUMENT: dict[str, Any] = {
    "plan": "p",
    "empty": {},
    "list": [1, 2.5, 1e-7, None, True, "Zoë ☃", {"a": []}],
    'quo"te\n': "a\\b\u0001",
    "steps": {"s0": {"x": 1, "y": {}}, "s1": {"x": 2, "y": [1]}},
    "tail": None,
}


def _streamed(data: Any) -> Any:
    """`data` with every dict made `Entries` (entries made as they are read)."""
    if isinstance(data, dict):
        return Entries((key, _streamed(value)) for key, value in data.items())
    return data


@pytest.mark.parametrize("indent", [None, 2, 4])
def test_pieces_join_to_what_pydantic_core_writes(indent: int | None) -> None:
    expected = pydantic_core.to_json(DOCUMENT, indent=indent).decode()
    assert "".join(pieces(_streamed(DOCUMENT), indent=indent)) == expected
    for top in ({}, {"only": {}}, {"a": {"b": {}}}):
        assert "".join(pieces(_streamed(top), indent=indent)) == (
            pydantic_core.to_json(top, indent=indent).decode()
        )


def test_entries_are_made_only_as_they_are_written() -> None:
    made: list[str] = []

    def entries() -> Iterator[tuple[str, int]]:
        for name in ("a", "b", "c"):
            made.append(name)
            yield name, 1

    stream = pieces(Entries([("steps", Entries(entries()))]))
    assert made == []
    text = ""
    for piece in stream:
        text += piece
        assert len(made) <= text.count(":")  # never ahead of what was written
    assert made == ["a", "b", "c"] and text == '{"steps":{"a":1,"b":1,"c":1}}'
