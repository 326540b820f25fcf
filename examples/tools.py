"""Tools for python_tools.agent: plain functions, registered with @plait.tool."""

from __future__ import annotations

import ast
import asyncio
import re

import plait


@plait.tool
def word_count(text: str) -> int:
    """Count the words of `text`."""
    return len(text.split())


@plait.tool
async def slugify(title: str, sep: str = "-") -> str:
    """Lower-case `title` and join its words with `sep`."""
    await asyncio.sleep(0)  # async tools run on the event loop
    return sep.join(re.findall(r"[a-z0-9]+", title.lower()))


@plait.tool(name="text.tag")
def tag(text: str, tags: list[str]) -> str:
    """Append hashtags to `text`."""
    return " ".join([text, *(f"#{t}" for t in tags)])


# --- for react_agent.agent: tools a model calls (SPEC section 11) ------------------------------

_CALC_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.UAdd,
    ast.Pow,
)


@plait.tool
def calc(expression: str) -> float:
    """Evaluate arithmetic: numbers, + - * / ** and parentheses.

    Args:
        expression: the arithmetic to evaluate, e.g. "709000 * 2".
    """
    tree = ast.parse(expression, mode="eval")
    if not all(isinstance(node, _CALC_NODES) for node in ast.walk(tree)):
        raise plait.InvalidInput(f"not plain arithmetic: {expression!r}")
    return float(eval(compile(tree, "<calc>", "eval"), {"__builtins__": {}}))


@plait.tool
def search(ctx: plait.ToolContext, query: str, source: str = "wiki") -> str:
    """Search an encyclopedia; this one is flaky: its first two calls in a run fail.

    Args:
        query: what to look up.
        source: where to look.
    """
    calls = ctx.run_state.setdefault("tools.search.calls", [0])
    calls[0] += 1
    if calls[0] <= 2:
        raise plait.Transient(f"{source} timed out (call {calls[0]})")
    return f"{source}: Oslo has 709000 inhabitants"


@plait.tool
def weather(city: str, units: str = "metric") -> str:
    """Current weather for a city; the service is down today.

    Args:
        city: the city.
        units: metric or imperial.
    """
    raise plait.Transient(f"weather service is down (asked for {city}, {units})")
