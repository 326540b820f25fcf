"""The built-in functions of expressions (SPEC sections 5 and 11): one signature table read
by the checks (arity, did-you-mean, literal argument types) and by the runtime evaluator,
which calls `call_function`. Every function here is pure: JSON values in, a JSON value out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# JSON type names, as messages say them (and as `type_name` gives them).
ANY = ("string", "number", "boolean", "list", "dict", "null")
_NO_DEFAULT: Any = object()


class FunctionError(Exception):
    """A built-in function refused its arguments; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    types: tuple[str, ...]  # the JSON types accepted
    default: Any = _NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[Param, ...]
    impl: Callable[..., Any]
    gives: str  # one line for docs and hints

    @property
    def min_args(self) -> int:
        return sum(1 for p in self.params if p.required)

    @property
    def signature(self) -> str:
        parts = [
            p.name if p.required else f"{p.name} = {json.dumps(p.default)}" for p in self.params
        ]
        return f"{self.name}({', '.join(parts)})"


def json_type(value: Any) -> str:
    """The JSON type name of a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def interpolated(value: Any) -> str:
    """A value as interpolation writes it: a string as is, anything else as compact JSON."""
    return value if isinstance(value, str) else compact_json(value)


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- implementations ----------------------------------------------------------------------


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out


def _split(text: str, sep: str) -> list[str]:
    if sep == "":
        raise FunctionError("the separator of `split` may not be empty")
    return text.split(sep)


def _extreme(name: str, pick: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    def impl(items: list[Any]) -> Any:
        if not items:
            raise FunctionError(f"`{name}` of an empty list")
        kinds = {json_type(item) for item in items}
        if kinds not in ({"number"}, {"string"}):
            found = ", ".join(sorted(kinds))
            raise FunctionError(
                f"`{name}` takes a list of numbers or of strings, not a list holding {found}"
            )
        return pick(items)

    return impl


def _sum(items: list[Any]) -> Any:
    for item in items:
        if json_type(item) != "number":
            raise FunctionError(f"`sum` takes a list of numbers; it holds {_a(item)}")
    return sum(items, 0)


def _round(x: Any, digits: Any = 0) -> Any:
    if isinstance(digits, float):
        if not digits.is_integer():
            raise FunctionError(f"the digits of `round` must be a whole number, not {digits}")
        digits = int(digits)
    if isinstance(x, float) and not math.isfinite(x):
        raise FunctionError(f"`round` cannot round {x}")
    exact = Decimal(str(x)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return int(exact) if digits <= 0 else float(exact)


def _from_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FunctionError(f"`from_json` was given invalid JSON ({exc})") from None


def _a(value: Any) -> str:
    kind = json_type(value)
    return "null" if kind == "null" else f"a {kind}" if kind != "list" else "a list"


_TEXT = ("string",)
_LIST = ("list",)
_DICT = ("dict",)
_NUMBER = ("number",)

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "len",
            (Param("x", ("string", "list", "dict")),),
            len,
            "the length of a text, list or dict",
        ),
        Function("keys", (Param("o", _DICT),), lambda o: list(o.keys()), "an object's keys"),
        Function("values", (Param("o", _DICT),), lambda o: list(o.values()), "an object's values"),
        Function(
            "compact",
            (Param("list", _LIST),),
            lambda items: [i for i in items if i is not None],
            "the list without its nulls",
        ),
        Function("flatten", (Param("list", _LIST),), _flatten, "list items spliced in, one level"),
        Function(
            "join",
            (Param("list", _LIST), Param("sep", _TEXT)),
            lambda items, sep: sep.join(interpolated(i) for i in items),
            "the items as text, separated by `sep`",
        ),
        Function("split", (Param("text", _TEXT), Param("sep", _TEXT)), _split, "a list of texts"),
        Function("lower", (Param("t", _TEXT),), str.lower, "lower-case text"),
        Function("upper", (Param("t", _TEXT),), str.upper, "upper-case text"),
        Function("trim", (Param("t", _TEXT),), str.strip, "text without surrounding whitespace"),
        Function(
            "contains",
            (Param("x", ("string", "list", "dict")), Param("item", ANY)),
            lambda x, item: _contains(x, item),
            "`item in x`",
        ),
        Function("min", (Param("list", _LIST),), _extreme("min", min), "the least item"),
        Function("max", (Param("list", _LIST),), _extreme("max", max), "the greatest item"),
        Function("sum", (Param("list", _LIST),), _sum, "the sum of numbers"),
        Function(
            "round",
            (Param("x", _NUMBER), Param("digits", _NUMBER, 0)),
            _round,
            "`x` rounded half away from zero",
        ),
        Function("to_json", (Param("x", ANY),), compact_json, "compact JSON text"),
        Function("from_json", (Param("text", _TEXT),), _from_json, "the parsed value"),
    )
}


def _contains(x: Any, item: Any) -> bool:
    if isinstance(x, str):
        if not isinstance(item, str):
            raise FunctionError(f"`contains` on a string looks for a string, not {_a(item)}")
        return item in x
    if isinstance(x, dict):
        return isinstance(item, str) and item in x
    return any(_json_equal(member, item) for member in x)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    return bool(a == b)


def arity_problem(func: Function, count: int) -> str | None:
    """Why `count` arguments do not fit `func`, or None when they do."""
    low, high = func.min_args, len(func.params)
    if low <= count <= high:
        return None
    wanted = f"exactly {low}" if low == high else f"{low} to {high}"
    plural = "argument" if high == 1 else "arguments"
    return f"`{func.name}` takes {wanted} {plural}, got {count}"


def type_problem(func: Function, position: int, value: Any) -> str | None:
    """Why `value` cannot be argument `position` of `func`, or None when it can."""
    param = func.params[position]
    kind = json_type(value)
    if kind in param.types:
        return None
    wanted = " or ".join(f"a {t}" for t in param.types)
    return f"argument `{param.name}` of `{func.name}` must be {wanted}, not {_a(value)}"


def call_function(name: str, args: Sequence[Any]) -> Any:
    """Call built-in `name`; raises FunctionError saying why it refused."""
    func = FUNCTIONS.get(name)
    if func is None:
        raise FunctionError(f"unknown function `{name}`")
    problem = arity_problem(func, len(args))
    if problem is not None:
        raise FunctionError(problem)
    for position, value in enumerate(args):
        problem = type_problem(func, position, value)
        if problem is not None:
            raise FunctionError(problem)
    return func.impl(*args)
