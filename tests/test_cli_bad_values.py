"""Bad values given to plait end in a one-line error and exit 2, never exit 70 (issue #9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLAIT = str(Path(sys.executable).parent / "plait")
pytestmark = pytest.mark.timeout(60)

PLAN = """plan p {
  input x: any = 1
  step a = std.echo(value = x)
}
"""


def plait(*args: str | Path, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLAIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PLAIT_HOME": str(cwd)},
    )


def assert_clean_exit_2(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), p.stderr
    for word in words:
        assert word in p.stderr, p.stderr


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "p.agent"
    path.write_text(PLAN)
    return path


def test_deeply_nested_json_input(tmp_path: Path, plan: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(json.dumps({"x": 0})[:-2] + deep + "}")
    assert_clean_exit_2(
        plait("run", plan, "--inputs", "deep.json", cwd=tmp_path), "deep.json", "nested"
    )
    assert_clean_exit_2(
        plait("run", plan, "--input", "x=" + "[" * 5000 + "]" * 5000, cwd=tmp_path), "`x`", "nested"
    )


def test_inputs_file_that_is_not_utf8(tmp_path: Path, plan: Path) -> None:
    (tmp_path / "bad.json").write_bytes(b'{"x": "\xff"}')
    assert_clean_exit_2(
        plait("run", plan, "--inputs", "bad.json", cwd=tmp_path), "bad.json", "UTF-8"
    )


def test_inject_count_that_is_a_digit_but_not_a_number(tmp_path: Path, plan: Path) -> None:
    assert_clean_exit_2(plait("run", plan, "--inject", "a=timeout:²", cwd=tmp_path), "--inject")


def test_compiled_plan_nested_too_deep(tmp_path: Path, plan: Path) -> None:
    compiled = plait("compile", plan, cwd=tmp_path)
    assert compiled.returncode == 0
    data = json.loads(compiled.stdout)
    expr: dict[str, object] = {"kind": "literal", "value": 1}
    text = json.dumps(data).replace(
        json.dumps(data["steps"]["a"]["args"]["value"]),
        '{"kind": "list", "items": [' * 3000 + json.dumps(expr) + "]}" * 3000,
    )
    (tmp_path / "deep.json").write_text(text)
    p = plait("run", "deep.json", cwd=tmp_path)
    assert p.returncode == 2 and "internal error" not in p.stderr, p.stderr


def test_backoff_factor_that_overflows(tmp_path: Path) -> None:
    (tmp_path / "f.agent").write_text(
        'plan p {\n  step a = std.fail(message = "x") { retry 3 backoff 1ms x1'
        + "0" * 400
        + " }\n}\n"
    )
    for command in ("check", "compile", "run"):
        p = plait(command, "f.agent", cwd=tmp_path)
        assert p.returncode == 2 and "internal error" not in p.stderr, (command, p.stderr)
        assert "factor" in p.stderr


def test_a_factor_whose_waits_overflow_at_run_time_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "f.agent").write_text(
        'plan p {\n  step a = std.fail(message = "x") { retry 5 backoff 1ms x1'
        + "0" * 200
        + ' max 10ms }\n  step b = std.fail(message = "y") { retry 5 backoff 1ms x1'
        + "0" * 300
        + " }\n}\n"
    )
    p = plait("run", "f.agent", "--json", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    assert report["steps"]["a"]["attempts"] == 6
    assert report["steps"]["b"]["error"]["kind"] == "tool_error"


def test_a_lone_surrogate_escape(tmp_path: Path) -> None:
    (tmp_path / "g.agent").write_text('plan p {\n  step b = std.echo(value = "\\u{D800}")\n}\n')
    for command in ("check", "compile", "run"):
        p = plait(command, "g.agent", cwd=tmp_path)
        assert p.returncode == 2 and "internal error" not in p.stderr, (command, p.stderr)
        assert "surrogate" in p.stderr


@pytest.mark.parametrize("command", ["check", "compile", "run", "graph"])
def test_plan_files_that_are_not_regular_files(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "fifo.agent"
    os.mkfifo(fifo)
    assert_clean_exit_2(plait(command, fifo, cwd=tmp_path, timeout=20), "not a regular file")
    assert_clean_exit_2(plait(command, "/dev/zero", cwd=tmp_path, timeout=20), "not a regular file")


def test_a_plan_file_over_the_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.agent"
    with open(big, "wb") as f:
        f.truncate(33 * 1024 * 1024)
    assert_clean_exit_2(plait("check", big, cwd=tmp_path), "32 MB")
