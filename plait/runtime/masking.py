"""Masking secrets: every `env.NAME` value and `secret` input becomes `***` in what plait writes.

As CI systems do, a secret is replaced wherever it occurs as a substring, recursively through
lists and dicts (keys too). Secrets shorter than 4 characters are not masked (they would
blank out ordinary words) and are listed in `too_short` so the run can warn about them.

A secret also travels encoded: percent-encoded in a URL (`a/b` as `a%2Fb`, a space as `+`),
escaped in JSON text (`"` as `\\"`, `\\` as `\\\\`, `\\u0001`) or in a Python `repr()` (`'` as
`\\'`, a newline as `\\n`), or escaped again (the `repr()` of a JSON text). Each secret is
therefore matched by one regular expression in which every character may appear as itself
or in any of those encodings, so a mixture (part escaped, part not) is masked too.

`mask_event` is the one place events are masked: every string in every field of every event
on its way out of the scheduler (the bus calls it before any sink sees the event), so the
`--events` file, the report (a fold of events), the journal's display tables, progress,
`plait show`, the HTML report and OTel spans all carry masked values only.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4

# Fields the bus stamps or the runtime names: never a value from outside
_STAMPS = frozenset({"event", "seq", "ts", "run_id"})


def _char_forms(char: str) -> set[str]:
    """Every way one character of a secret may be written in text plait writes."""
    forms = {
        char,
        json.dumps(char)[1:-1],
        json.dumps(char, ensure_ascii=False)[1:-1],
        repr(char)[1:-1],
        f"\\u{ord(char):04x}" if ord(char) < 0x10000 else char,
    }
    if char == "'":
        forms.add("\\'")  # repr() of a text that also holds `"`
    if char == '"':
        forms.add('\\"')
    if char == "/":
        forms.add("\\/")  # JSON may escape a slash
    if char == " ":
        forms.add("+")  # form encoding of a query string
    # escaped twice or three times: the repr() of a JSON text (an error quoting a body)
    for form in list(forms):
        if "\\" in form:
            forms.add(form.replace("\\", "\\" * 2))
            forms.add(form.replace("\\", "\\" * 4))
    encoded = char.encode("utf-8", "surrogatepass")
    forms.add("".join(f"%{b:02X}" for b in encoded))
    forms.add("".join(f"%{b:02x}" for b in encoded))
    return forms


def secret_pattern(secret: str) -> re.Pattern[str]:
    """A regex matching `secret` written plainly or with any of its characters encoded."""
    parts = []
    for char in secret:
        forms = sorted(_char_forms(char), key=lambda f: -len(f))
        parts.append(f"(?:{'|'.join(map(re.escape, forms))})")
    return re.compile("".join(parts))


class Masker:
    """Replaces every occurrence of the given secrets (in any encoding) with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if isinstance(s, str) and s}
        self.too_short: list[str] = sorted(s for s in unique if len(s) < MIN_SECRET_LENGTH)
        # Longest first, so a secret containing another is masked as a whole.
        self.secrets: tuple[str, ...] = tuple(
            sorted((s for s in unique if len(s) >= MIN_SECRET_LENGTH), key=lambda s: -len(s))
        )
        self._patterns = [secret_pattern(s) for s in self.secrets]
        # One search tells whether a text holds any secret at all (most texts hold none)
        self._any = (
            re.compile("|".join(f"(?:{p.pattern})" for p in self._patterns))
            if self._patterns
            else None
        )

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def mask(self, value: Any) -> Any:
        """A copy of `value` with every secret masked; the value itself when nothing to mask."""
        if not self.secrets:
            return value
        return self._mask(value)

    def mask_text(self, text: str) -> str:
        """`text` with every secret replaced by `***`.

        Overlapping occurrences of different secrets are merged into one `***`, so no part
        of any secret survives (masking one secret first could break up another).
        """
        if self._any is None or self._any.search(text) is None:
            return text
        pieces: list[str] = []
        position = 0
        for start, end in self._spans(text):
            pieces.append(text[position:start])
            pieces.append(MASK)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def mask_event(self, event: Any) -> None:
        """Mask every field of an event (a dataclass) but the bus's stamps, whatever it
        holds and whoever set it (a tool's `ctx.emit` fields included). Values are
        replaced by masked copies, never changed in place: a step's outcome is also the
        scheduler's, which keeps the real values."""
        for item in dataclasses.fields(event):
            if item.name not in _STAMPS:
                value = getattr(event, item.name)
                masked = self._mask(value)
                if masked is not value:
                    setattr(event, item.name, masked)

    def _mask(self, value: Any) -> Any:
        """A masked copy of `value` (`value` itself when nothing in it changed)."""
        if isinstance(value, str):
            return value if isinstance(value, Enum) else self.mask_text(value)
        if isinstance(value, dict):
            masked = {self._mask(k): self._mask(v) for k, v in value.items()}
            return value if _same(masked.items(), value.items()) else masked
        if isinstance(value, list | tuple):
            items = [self._mask(item) for item in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items if isinstance(value, list) else tuple(items)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changed = {
                f.name: masked
                for f in dataclasses.fields(value)
                if f.init
                and (masked := self._mask(getattr(value, f.name))) is not getattr(value, f.name)
            }
            return dataclasses.replace(value, **changed) if changed else value
        return value

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """The merged (start, end) regions of `text` covered by some secret."""
        found: list[tuple[int, int]] = []
        for pattern in self._patterns:
            match = pattern.search(text)
            while match is not None:  # every start, overlapping ones included
                found.append((match.start(), match.end()))
                match = pattern.search(text, match.start() + 1)
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:  # overlapping, not merely adjacent
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def _same(new: Iterable[tuple[Any, Any]], old: Iterable[tuple[Any, Any]]) -> bool:
    return all(a is c and b is d for (a, b), (c, d) in zip(new, old, strict=True))
