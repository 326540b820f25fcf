"""Every compiler test checks the fast parser against the LALR parser as it goes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.compiler import parse as parse_module
from tests.compiler.fastcheck import verified_fast_parse


@pytest.fixture(autouse=True)
def _fast_parser_verified(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each plan the fast path accepts in a test is parsed by the LALR parser too, and the
    trees must be the same (tests/compiler/fastcheck.py): the whole suite's plans become a
    differential test. Its answers are kept, so the tests see what users get."""
    monkeypatch.setattr(parse_module, "_fast_parse", verified_fast_parse)
    yield
