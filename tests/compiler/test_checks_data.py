"""End-to-end checks on `.agent` test data: each offending line carries its expected codes in
a trailing comment (`# E: E301` or `# W: W403`, several separated by spaces), as mypy's test
data does. A file must produce exactly those (line, code) pairs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plait.compiler.api import compile_file

DATA = Path(__file__).parent / "data"
EXPECT = re.compile(r"#\s*[EW]:\s*((?:[EW]\d{3}\s*)+)$")


def expected(path: Path) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            found.update((number, code) for code in match.group(1).split())
    return found


@pytest.mark.parametrize("path", sorted(DATA.glob("*.agent")), ids=lambda p: p.stem)
def test_diagnostics_match_annotations(path: Path) -> None:
    result = compile_file(path)
    actual = {(d.span.line if d.span else 0, d.code.id) for d in result.diagnostics}
    assert actual == expected(path), result.render()
    has_errors = any(code.startswith("E") for _, code in expected(path))
    assert (result.plan is None) == has_errors


def test_every_check_code_has_test_data() -> None:
    """Each E3xx/W4xx code appears in some annotated file (the SPEC example is clean)."""
    from plait.compiler import codes

    ours = {
        c.id for c in vars(codes).values() if isinstance(c, codes.Code) and c.id[:2] in ("E3", "W4")
    }
    covered = {code for path in DATA.glob("*.agent") for _, code in expected(path)}
    # W409 needs `check --no-import`: tests/stdlib/test_source_tools.py holds its test
    assert ours - {"W409"} <= covered, ours - covered
