"""The fast parser (plait/compiler/fastparse.py) against the LALR parser: helpers.

`same` compares two syntax trees strictly: node classes, field values with their types
(`1`, `1.0` and `True` are equal in Python, not here), spans, and the key order of each IR
model's `__dict__` (the order of its JSON). `verified_fast_parse` stands in for
`parse._fast_parse` in every compiler test (conftest.py), so every plan the suite parses is
also a differential test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

from plait.compiler import fastparse, nodes
from plait.compiler import parse as parse_module
from plait.compiler.diagnostics import Diagnostic


def lalr(text: str, path: str = "t.agent") -> tuple[nodes.PlanNode | None, list[Diagnostic]]:
    """`parse` with the fast path switched off: the LALR parser and the transformer."""
    saved = parse_module.FAST_PATH
    parse_module.FAST_PATH = False
    try:
        return parse_module.parse(text, path)
    finally:
        parse_module.FAST_PATH = saved


def fast(text: str) -> nodes.PlanNode | None:
    """The fast path's tree, or None where it declines (any other exception propagates)."""
    try:
        return fastparse.parse_plan(text)
    except fastparse.Decline:
        return None


def agrees(text: str) -> bool:
    """Whether the fast path handles `text`; fails when it does and disagrees with LALR."""
    tree = fast(text)
    if tree is None:
        return False
    reference, diagnostics = lalr(text)
    assert diagnostics == [], ("fast path accepted a plan with errors", diagnostics[:3])
    assert reference is not None
    difference = same(tree, reference)
    assert difference is None, difference
    return True


def verified_fast_parse(text: str) -> nodes.PlanNode | None:
    """`parse._fast_parse`, checked against the LALR parser each time it answers."""
    tree = fast(text)
    if tree is not None:
        agrees(text)
    return tree


def same(a: Any, b: Any, where: str = "plan") -> str | None:
    """None when `a` and `b` are the same tree, else where and how they differ."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} != {type(b).__name__} ({a!r} / {b!r})"
    if isinstance(a, BaseModel):
        return _same_model(a, b, where)
    if dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            found = same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple):  # a Span is a tuple: its four numbers are compared
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = same(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            found = same(a[key], b[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if a != b and not (a != a and b != b):  # NaN equals NaN here
        return f"{where}: {a!r} != {b!r}"
    return None


def _same_model(a: BaseModel, b: BaseModel, where: str) -> str | None:
    if a.__pydantic_fields_set__ != b.__pydantic_fields_set__:
        return f"{where}: fields set {a.__pydantic_fields_set__} != {b.__pydantic_fields_set__}"
    if (a.__pydantic_extra__, a.__pydantic_private__) != (
        b.__pydantic_extra__,
        b.__pydantic_private__,
    ):
        return f"{where}: extra or private differ"
    return same(a.__dict__, b.__dict__, where)
