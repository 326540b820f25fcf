"""Tools for python_tools.agent: plain functions, registered with @plait.tool."""

from __future__ import annotations

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
