"""Tools for inventory.agent: the arithmetic a plan cannot do, and a payment that fails."""

from __future__ import annotations

import json

import plait
from plait.errors import Permanent
from plait.stdlib.file import atomic_write, locked, resolve


@plait.tool(name="inv.take")
def take(stock: str, item: str, qty: int) -> str:
    """The inventory (JSON text) after taking `qty` of `item`; fails if there is too little."""
    counts = json.loads(stock)
    if counts.get(item, 0) < qty:
        raise Permanent(f"only {counts.get(item, 0)} {item} left, {qty} wanted")
    counts[item] -= qty
    return json.dumps(counts, sort_keys=True)


@plait.tool(name="inv.release")
def release(ctx: plait.ToolContext, path: str, item: str, qty: int) -> str:
    """Put `qty` of `item` back into the inventory file: read, add and replace under the
    same lock `file.write(if_version = ...)` takes, so no concurrent reservation is lost."""
    target = resolve(ctx, path)
    with locked(target):
        counts = json.loads(target.read_text())
        counts[item] = counts.get(item, 0) + qty
        atomic_write(target, json.dumps(counts, sort_keys=True).encode())
    return f"{qty} {item} back (idempotency key {ctx.idempotency_key})"


@plait.tool(name="inv.charge")
def charge(card: str, amount: int) -> str:
    """A payment service that declines the card `declined`."""
    if card == "declined":
        raise Permanent(f"card {card!r} was declined ({amount} EUR)")
    return f"charged {amount} EUR"
