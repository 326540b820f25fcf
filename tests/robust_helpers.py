"""Run `.agent` plans with misbehaving Python tools through the real `plait` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAIT = str(Path(sys.executable).parent / "plait")

# Tools that misbehave in the ways Python allows (issue #9).
BAD_TOOLS = """
import asyncio, dataclasses, datetime, decimal, enum, os, re, sys, time, uuid
import plait
import pydantic


@plait.tool(name="bad.value")
def value(what: str) -> object:
    if what == "object":
        return {"when": object()}
    if what == "cycle":
        d = {"a": 1}
        d["self"] = d
        return d
    if what == "bytes":
        return {"data": b"\\xff\\xfe"}
    if what == "nan":
        return [1.0, float("nan")]
    if what == "regex":
        return re.compile("x")
    if what == "endless":
        import itertools
        return itertools.count()
    raise ValueError(what)


@dataclasses.dataclass
class Point:
    x: int
    y: tuple


class Model(pydantic.BaseModel):
    name: str
    tags: set


class Colour(enum.Enum):
    RED = "red"


@plait.tool(name="bad.rich")
def rich() -> object:
    return {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
        "day": datetime.date(2024, 5, 6),
        "tags": {"b", "a", "c"},
        "pair": (1, 2),
        "price": decimal.Decimal("19.99"),
        "count": decimal.Decimal("3"),
        "point": Point(1, (2, 3)),
        "model": Model(name="m", tags={"y", "x"}),
        "squares": (i * i for i in range(4)),
        "mapped": map(str, [1, 2]),
        "colour": Colour.RED,
        "id": uuid.UUID(int=1),
        "text": b"caf\\xc3\\xa9",
        1: "int key",
    }


@plait.tool(name="bad.agen")
async def agen() -> object:
    return (i for i in range(3))


@plait.tool(name="bad.raise")
def raise_(what: str) -> str:
    if what == "exit":
        sys.exit(3)
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "generator_exit":
        raise GeneratorExit
    if what == "stop":
        return next(iter([]))
    if what == "base":
        class Odd(BaseException):
            pass
        raise Odd("odd")
    return "fine"


@plait.tool(name="bad.araise")
async def araise(what: str) -> str:
    if what == "exit":
        sys.exit(3)
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "generator_exit":
        raise GeneratorExit
    if what == "cancelled":
        raise asyncio.CancelledError()
    if what == "base":
        class Odd(BaseException):
            pass
        raise Odd("odd")
    return "fine"


@plait.tool(name="bad.block")
async def block(seconds: float) -> str:
    time.sleep(seconds)
    return "late"


@plait.tool(name="bad.print")
def noisy(text: str) -> str:
    print(text)
    print(text, file=sys.stdout, flush=True)
    os.write(1, (text + "\\n").encode())
    return text


@plait.tool(name="bad.big")
def big(mb: float) -> str:
    return "x" * int(mb * 1_048_576)


@plait.tool(name="bad.emit")
def emitter(ctx: plait.ToolContext, n: int) -> int:
    for i in range(n):
        ctx.emit("tick", {"i": i, "when": datetime.datetime(2024, 1, 1)})
    return n
"""


@dataclass
class Result:
    code: int
    report: dict[str, Any] | None
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    def step(self, name: str) -> dict[str, Any]:
        assert self.report is not None, self.stderr
        return dict(self.report["steps"][name])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def write_plan(folder: Path, body: str, tools: str = BAD_TOOLS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tools.py").write_text(tools)
    plan = folder / "plan.agent"
    plan.write_text(f'plan t {{\n  use "./tools.py"\n{body}\n}}\n')
    return plan


def plait(
    *args: str | Path, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLAIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PLAIT_HOME": str(cwd), **(env or {})},
    )


def run(
    folder: Path,
    body: str,
    *extra: str,
    tools: str = BAD_TOOLS,
    json_out: bool = True,
    timeout: float = 60,
) -> Result:
    plan = write_plan(folder, body, tools)
    events = folder / "events.jsonl"
    report = folder / "report.json"
    args = ["run", plan, "--events", events, "--report", report, *extra]
    if json_out:
        args.append("--json")
    proc = plait(*args, cwd=folder, timeout=timeout)
    data = json.loads(report.read_text()) if report.exists() else None
    lines = events.read_text().splitlines() if events.exists() else []
    return Result(proc.returncode, data, [json.loads(x) for x in lines], proc.stdout, proc.stderr)
