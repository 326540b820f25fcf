"""JSON text from users (`--input`, `--inputs`, compiled plans) read without surprises.

`json.loads` raises `RecursionError` on deeply nested text and accepts nesting that later
stages (pydantic, the expression evaluator, the journal) cannot walk; bytes that are not
UTF-8 raise `UnicodeDecodeError`. `loads` turns all of these into `ValueError`s with a
message that says what is wrong, so a caller can report it as bad input (exit 2).
"""

from __future__ import annotations

import json
from typing import Any

MAX_NESTING = 200  # lists and objects inside each other, at most


def loads(text: str | bytes) -> Any:
    """Parse JSON text; `ValueError` saying why it cannot be used (bad JSON, not UTF-8,
    NaN or Infinity, nested deeper than `MAX_NESTING`)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if nesting(value) > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"not valid JSON: {name} is not a JSON number")


def nesting(value: Any) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING:
                return deepest
        stack.extend((child, depth) for child in items)
    return deepest
