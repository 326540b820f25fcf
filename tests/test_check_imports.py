"""`plait check` stays light: it imports neither httpx, the LLM client's YAML rules reader,
the runtime nor networkx (for a plan whose steps depend only on steps above them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from plait.cli import main
sys.argv = ["plait", "check", sys.argv[1]]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("httpx", "yaml", "networkx")
               or m.startswith("plait.runtime"))
print("exit", code, "heavy", heavy)
"""


def test_check_imports_neither_httpx_nor_the_runtime() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "examples" / "triage.agent")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("exit 0 heavy []"), done.stdout
