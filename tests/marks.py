"""Markers shared by the test modules."""

from __future__ import annotations

import os
import shutil

import pytest

# Drawing SVG/PNG/PDF needs Graphviz's `dot` program; CI installs it (.ci/run), so there a
# missing `dot` is a failure, not a skip.
NEEDS_DOT = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI") != "true",
    reason="Graphviz `dot` is not installed (required in CI)",
)
