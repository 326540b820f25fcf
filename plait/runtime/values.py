"""Tool results as JSON values: the one coercion applied to what a tool returns.

Everything after a tool call (the report, `--json`, the summary, events, the journal, the
HTML page, traces) only ever sees JSON values: `None`, `bool`, `int`, a finite `float`,
`str`, `list` and `dict` with string keys. A tool may return anything Python allows, so
its result goes through `to_json_value` right after the call (for a sync tool, still in
its thread; for a process-isolated one, in its worker), and a value that cannot become
JSON fails the attempt with `invalid_output` naming where it is ("tool returned a value
that is not JSON: object at `.when`").

The coercion (README, "What a tool may return"):
- `str` / `int` / `bool` subclasses (enums included) become the plain type; other enums
  their `.value`; a NaN or infinite float is not JSON.
- `datetime`, `date`, `time`: ISO-8601 text; `timedelta`: seconds (float);
  `Decimal`: an int when it is whole, else a float; `UUID` and paths: text.
- `bytes`, `bytearray`, `memoryview`: UTF-8 text (other bytes are not JSON).
- `tuple`, `list`, `range`, iterators, generators, `map()`...: a list; `set` and
  `frozenset`: a list sorted by JSON text.
- Mappings: an object; keys must be text, or numbers, `bool` or `None` (written as
  `json.dumps` writes them).
- dataclass instances and pydantic models: an object of their fields.
- `plait.Versioned(value, version=...)` stays itself, its value coerced.
- A container that contains itself, nesting deeper than `MAX_DEPTH`, anything else
  (`object()`, a function, a compiled regex, a socket): not JSON.

The output size limit is checked in the same walk: the result's size is its JSON text's,
counted as it is built (strings by their UTF-8 length), and an iterator is consumed only
up to the limit, so an endless generator fails instead of eating the memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from plait.errors import InvalidOutput
from plait.versions import Versioned

DEFAULT_OUTPUT_LIMIT = 16_000_000  # bytes of JSON text: "16 MB"
MAX_DEPTH = 200  # deeper values are refused: JSON readers and writers recurse
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class NotJson(InvalidOutput):
    """A tool's result that cannot become JSON, or is over the output size limit."""


def format_size(n: int) -> str:
    """`104 MB`, `16 MB`, `512 kB`, `900 bytes` (decimal units, rounded down)."""
    if n >= 1_000_000:
        return f"{n // 1_000_000} MB"
    if n >= 1_000:
        return f"{n // 1_000} kB"
    return f"{n} bytes"


def to_json_value(value: Any, limit: int | None = DEFAULT_OUTPUT_LIMIT) -> Any:
    """`value` as a JSON value (see the module doc); raises `NotJson` (kind
    `invalid_output`) saying what and where, or that it is over `limit` bytes."""
    if isinstance(value, Versioned):  # a value with its version (SPEC section 10)
        return Versioned(
            to_json_value(value.value, limit),
            version=None if value.version is None else str(value.version),
        )
    kind = type(value)  # (the common scalars without a walker: every tool call comes here)
    if value is None or kind is bool:
        if limit is None or limit >= _NULL_OR_BOOL_SIZE:
            return value
    elif kind is int:
        if limit is None or limit >= _INT_SIZE:
            return value
    elif kind is str and value.isascii() and (limit is None or limit >= len(value) + 2):
        return value
    walker = _Walker(limit)
    result = walker.walk(value, (), 0)
    if limit is not None and walker.size > limit:
        walker.over_limit()
    return result


def check_size(value: Any, limit: int | None) -> None:
    """Raise `NotJson` when a JSON value is over `limit` bytes of JSON text."""
    if limit is not None:
        to_json_value(value, limit)


def path_text(path: tuple[str | int, ...]) -> str:
    """A location in a value: `.when`, `.items[3]`, `["a key"]`; `` for the whole."""
    parts = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p and not p[0].isdigit() and set(p) <= _IDENT_CHARS:
            parts.append(f".{p}")
        else:
            parts.append(f"[{json.dumps(p, ensure_ascii=False)}]")
    return "".join(parts)


# The size an output's scalar counts towards its limit (shared by `to_json_value`'s
# shortcut and the walker, so both count alike; a str counts its UTF-8 bytes plus 2).
_NULL_OR_BOOL_SIZE = 5
_INT_SIZE = 8


class _Walker:
    __slots__ = ("active", "limit", "size", "stopped")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.size = 0
        self.active: set[int] = set()  # ids of the containers on the current path
        self.stopped = False  # an iterator was cut at the limit: the size is a floor

    def fail(self, what: str, path: tuple[str | int, ...]) -> NotJson:
        where = path_text(path)
        return NotJson(
            f"tool returned a value that is not JSON: {what}{f' at `{where}`' if where else ''}"
        )

    def over_limit(self) -> None:
        assert self.limit is not None
        more = "more than " if self.stopped else ""
        raise NotJson(
            f"output of {more}{format_size(self.size)} exceeds the {format_size(self.limit)} limit"
        )

    def walk(self, value: Any, path: tuple[str | int, ...], depth: int) -> Any:
        kind = type(value)
        if value is None or kind is bool:
            self.size += _NULL_OR_BOOL_SIZE
            return value
        if kind is str:
            return self.text(value, path)
        if kind is int:
            self.size += _INT_SIZE
            return value
        if kind is float:
            return self.number(value, path)
        if kind is dict:
            return self.mapping(value, path, depth)
        if kind is list or kind is tuple:
            return self.sequence(value, path, depth)
        return self.other(value, path, depth)

    def text(self, value: str, path: tuple[str | int, ...]) -> str:
        if value.isascii():
            self.size += len(value) + 2
            return value
        try:
            self.size += len(value.encode("utf-8")) + 2
        except UnicodeEncodeError:
            raise self.fail("text with a lone surrogate (not UTF-8)", path) from None
        return value

    def number(self, value: float, path: tuple[str | int, ...]) -> float:
        if not math.isfinite(value):
            raise self.fail(f"float {value!r}", path)
        self.size += 12
        return value

    def enter(self, value: Any, path: tuple[str | int, ...], depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels", path)
        key = id(value)
        if key in self.active:
            raise self.fail(f"a {_type_name(value)} that contains itself", path)
        self.active.add(key)
        return key

    def mapping(
        self, value: Mapping[Any, Any], path: tuple[str | int, ...], depth: int
    ) -> dict[str, Any]:
        key_id = self.enter(value, path, depth)
        out: dict[str, Any] = {}
        self.size += 2
        try:
            for k, v in value.items():
                name = self.key(k, path)
                self.size += len(name) + 4
                out[name] = self.walk(v, (*path, name), depth + 1)
                self.check_running_size()
        finally:
            self.active.discard(key_id)
        return out

    def key(self, key: Any, path: tuple[str | int, ...]) -> str:
        if isinstance(key, str):
            return self.text(str.__str__(key), path) if type(key) is not str else key
        if isinstance(key, enum.Enum):
            return self.key(key.value, path)
        if key is None or isinstance(key, (bool, int, float)):
            if isinstance(key, float) and not math.isfinite(key):
                raise self.fail(f"a dict key {key!r}", path)
            return json.dumps(key)
        raise self.fail(f"a dict key of type {_type_name(key)}", path)

    def sequence(self, value: Iterable[Any], path: tuple[str | int, ...], depth: int) -> list[Any]:
        key_id = self.enter(value, path, depth)
        self.size += 2
        try:
            out = []
            for i, item in enumerate(value):
                out.append(self.walk(item, (*path, i), depth + 1))
                self.size += 1
                self.check_running_size()
        finally:
            self.active.discard(key_id)
        return out

    def check_running_size(self) -> None:
        # an iterator may be endless: stop at the limit (other containers are finite and
        # are measured whole, so the message can say how big they were)
        if self.limit is not None and self.size > self.limit and self.stopped:
            self.over_limit()

    def iterator(self, value: Iterator[Any], path: tuple[str | int, ...], depth: int) -> list[Any]:
        was = self.stopped
        self.stopped = True  # sizes seen while consuming an iterator stop at the limit
        try:
            return self.sequence(value, path, depth)
        finally:
            self.stopped = was

    def other(self, value: Any, path: tuple[str | int, ...], depth: int) -> Any:
        if isinstance(value, str):
            return self.text(str.__str__(value), path)
        if isinstance(value, bool):
            return self.walk(bool(value), path, depth)
        if isinstance(value, int):
            return self.walk(int(value), path, depth)
        if isinstance(value, float):
            return self.number(float(value), path)
        if isinstance(value, enum.Enum):
            return self.walk(value.value, path, depth)
        converted = _convert_scalar(value)
        if converted is not _NO:
            if isinstance(converted, _Undecodable):
                raise self.fail("bytes that are not UTF-8", path)
            return self.walk(converted, path, depth)
        if isinstance(value, Mapping):
            return self.mapping(value, path, depth)
        if isinstance(value, (list, tuple, range)):
            return self.sequence(value, path, depth)
        if isinstance(value, (set, frozenset)):
            return self.unordered(value, path, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.fields(
                value,
                {f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                path,
                depth,
            )
        dump = _pydantic_fields(value)
        if dump is not None:
            return self.fields(value, dump, path, depth)
        if isinstance(value, Iterator):
            return self.iterator(value, path, depth)
        raise self.fail(_type_name(value), path)

    def fields(
        self, owner: Any, fields: dict[str, Any], path: tuple[str | int, ...], depth: int
    ) -> dict[str, Any]:
        key_id = self.enter(owner, path, depth)
        try:
            return self.mapping(fields, path, depth + 1)
        finally:
            self.active.discard(key_id)

    def unordered(self, value: Iterable[Any], path: tuple[str | int, ...], depth: int) -> list[Any]:
        items = self.sequence(value, path, depth)
        try:
            return sorted(items)
        except TypeError:  # mixed types: by their JSON text, which always compares
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


class _Undecodable:
    pass


_NO = object()


def _convert_scalar(value: Any) -> Any:
    """A value of a well-known type as a JSON-ready Python value, or `_NO`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return _Undecodable()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)  # refused as a non-finite float
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    return _NO


def _pydantic_fields(value: Any) -> dict[str, Any] | None:
    """A pydantic model's fields (as attributes, unconverted), or None for anything else."""
    cls = type(value)
    model_fields = getattr(cls, "model_fields", None)
    if not isinstance(model_fields, dict) or not hasattr(value, "model_dump"):
        return None
    data = {name: getattr(value, name) for name in model_fields}
    extra = getattr(value, "model_extra", None)  # (public; None without extra="allow")
    if isinstance(extra, dict):
        data.update(extra)
    return data


def _type_name(value: Any) -> str:
    cls = type(value)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
