"""The one expression toolkit: walking, children and printing of expression trees, and the
did-you-mean helper the compiler's messages share."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    """A one-element hint tuple "did you mean `x`?" when a close name exists, else ()."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return (f"did you mean `{close[0]}`?",) if close else ()
