"""Tools whose behaviour a fuzz case describes as JSON (`spec`), for tests/test_fuzz_tools.py:
return a value of some Python type, raise some exception, block, or be slow."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import time
from typing import Any

import plait
from plait import errors


class OddBase(BaseException):
    """A BaseException that is not an Exception, as a careless library might raise."""


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


RAISED: dict[str, BaseException] = {
    "value_error": ValueError("bad"),
    "key_error": KeyError("k"),
    "stop_iteration": StopIteration(),
    "system_exit": SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt(),
    "generator_exit": GeneratorExit(),
    "odd_base": OddBase("odd"),
    "recursion": RecursionError("deep"),
    "transient": errors.Transient("flaky"),
    "permanent": errors.Permanent("no"),
    "timeout": errors.Timeout("slow"),
    "rate_limited": errors.RateLimited("429"),
    "invalid_output": errors.InvalidOutput("shape"),
}


def build_value(kind: str, data: Any) -> Any:
    """A Python value of the described kind (some are not JSON on purpose)."""
    if kind == "json":
        return data
    if kind == "tuple":
        return tuple(data)
    if kind == "set":
        return set(data)
    if kind == "generator":
        return (x for x in data)
    if kind == "datetime":
        return datetime.datetime(2024, 1, 2, 3, 4, 5)
    if kind == "decimal":
        return decimal.Decimal("2.5")
    if kind == "dataclass":
        return Pair(data, (1, 2))
    if kind == "bytes_ok":
        return "é".encode()
    if kind == "bytes_bad":
        return b"\xff"
    if kind == "object":
        return {"x": object()}
    if kind == "cycle":
        loop: list[Any] = [1]
        loop.append(loop)
        return loop
    if kind == "nan":
        return float("nan")
    if kind == "huge":
        return "x" * 5000  # over the 1000-byte limit the fuzz plans set
    raise ValueError(kind)


def _act(spec: dict[str, Any]) -> Any:
    what = spec["do"]
    if what == "raise":
        raise RAISED[spec["exc"]]
    if what == "sleep":
        time.sleep(spec["seconds"])
        return spec.get("seconds")
    return build_value(spec["kind"], spec.get("data"))


@plait.tool(name="fuzz.sync")
def sync(spec: dict[str, Any]) -> Any:
    return _act(spec)


@plait.tool(name="fuzz.async")
async def async_(spec: dict[str, Any]) -> Any:
    if spec["do"] == "sleep" and spec.get("polite"):
        await asyncio.sleep(spec["seconds"])
        return spec["seconds"]
    return _act(spec)  # a blocking sleep here holds the event loop


@plait.tool(name="fuzz.process", isolation="process")
def process(spec: dict[str, Any]) -> Any:
    return _act(spec)
