"""Masking secrets: every `env.NAME` value and `secret` input becomes `***` in what plait writes.

As CI systems do, a secret is replaced wherever it occurs as a substring, recursively through
lists and dicts (keys too). Secrets shorter than 4 characters are not masked (they would
blank out ordinary words) and are listed in `too_short` so the run can warn about them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4


class Masker:
    """Replaces every occurrence of the given secrets with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if isinstance(s, str) and s}
        self.too_short: list[str] = sorted(s for s in unique if len(s) < MIN_SECRET_LENGTH)
        # Longest first, so a secret containing another is masked as a whole.
        self.secrets: tuple[str, ...] = tuple(
            sorted((s for s in unique if len(s) >= MIN_SECRET_LENGTH), key=lambda s: -len(s)))

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
        if not self.secrets:
            return text
        spans = self._spans(text)
        if not spans:
            return text
        pieces: list[str] = []
        position = 0
        for start, end in spans:
            pieces.append(text[position:start])
            pieces.append(MASK)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return {self._mask(k): self._mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self._mask(item) for item in value)
        return value

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """The merged (start, end) regions of `text` covered by some secret."""
        found: list[tuple[int, int]] = []
        for secret in self.secrets:
            start = text.find(secret)
            while start != -1:
                found.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:  # overlapping, not merely adjacent
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged
