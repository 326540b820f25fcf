"""The code registry: every diagnostic code has one id and one slug, never shared."""

from __future__ import annotations

from collections import Counter

from plait.compiler import codes


def test_every_code_id_and_slug_is_unique() -> None:
    registry = [v for v in vars(codes).values() if isinstance(v, codes.Code)]
    assert len(registry) > 40
    ids = Counter(c.id for c in registry)
    slugs = Counter(c.slug for c in registry)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [s for s, n in slugs.items() if n > 1] == []
