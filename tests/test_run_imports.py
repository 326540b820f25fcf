"""`plait run` whose stderr is not a terminal does not load rich (the live view's library):
its memory is part of every run's peak (issue #13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from plait.cli import main
sys.argv = ["plait", "run", sys.argv[1], "--no-journal", *sys.argv[2:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
print("exit", code, "rich", sorted(m for m in sys.modules if m.split(".")[0] == "rich"))
"""


def _run(plan: Path, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(plan), *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=plan.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_run_without_a_terminal_does_not_import_rich(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text('plan p {\n  step a = std.echo(value = "x")\n}\n', encoding="utf-8")
    assert _run(plan).endswith("exit 0 rich []")
    assert _run(plan, "--quiet", "--json").endswith("exit 0 rich []")
