"""docs/reference.md is checked: every ```agent block in it is a valid plan (`plait check`
on each, as a user would run it), and the README points at it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
BLOCK = re.compile(r"^```agent\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def agent_blocks() -> list[str]:
    return BLOCK.findall(REFERENCE.read_text(encoding="utf-8"))


def test_every_agent_block_of_the_reference_checks(tmp_path: Path) -> None:
    blocks = agent_blocks()
    assert len(blocks) >= 7  # one per main topic, at least
    paths = []
    for i, text in enumerate(blocks):
        path = tmp_path / f"block{i + 1}.agent"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "plait", "check", "--strict", *paths],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok: ") == len(blocks)


def test_the_reference_covers_each_topic() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for heading in (
        "Files and lexical rules",
        "Plan items",
        "Policies",
        "Retry timing",
        "Fallback, default, optional",
        "Trigger rules",
        "Map steps",
        "Resources",
        "Expressions",
        "Outcomes and exit codes",
        "The run report",
        "Events",
        "Standard library",
        "The scripted LLM",
        "The journal",
    ):
        assert f"\n## {heading}\n" in text, heading
    for word in (
        "d_k = min(MAX, BACKOFF * FACTOR^(k-1))",
        "upstream_skipped",
        "trigger_not_met",
        "not_needed",
        "retry_after",
        "times",
        "PLAIT_HOME",
        "--prune",
        "Acquisition order",
    ):
        assert word in text, word


def test_the_readme_links_to_the_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/reference.md" in readme
    assert "SPEC" not in readme.split("## A short tour", 1)[1].split("## Command line", 1)[0]
