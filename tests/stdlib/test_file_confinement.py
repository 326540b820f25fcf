"""file.read / file.write stay in the plan's folder (docs/security.md): `..`, absolute paths,
`~` and symlinks are resolved before the check; `--files DIR` and PLAIT_FILES allow more;
an escape fails with `permanent` naming the allowed folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait.errors import ErrorKind, ToolError
from tests.stdlib.conftest import call, make_ctx


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """A plan folder and, beside it, a folder with a secret file."""
    plan_dir, outside = tmp_path / "plan", tmp_path / "outside"
    plan_dir.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (plan_dir / "inside.txt").write_text("fine")
    (plan_dir / "link").symlink_to(outside / "secret.txt")
    (plan_dir / "dirlink").symlink_to(outside)
    return plan_dir, outside


def _refused(ctx: object, tool: str, **args: str) -> ToolError:
    with pytest.raises(ToolError) as info:
        call(ctx, tool, **args)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "{outside}/secret.txt",
        "link",
        "dirlink/secret.txt",
        "~/.plait-never-there",
        "/etc/passwd",
        "sub/../../outside/secret.txt",
    ],
)
@pytest.mark.parametrize("tool", ["file.read", "file.write"])
def test_an_escape_is_permanent_and_names_the_allowed_folders(
    world: tuple[Path, Path], path: str, tool: str
) -> None:
    plan_dir, outside = world
    ctx = make_ctx(plan_dir)
    args = {"path": path.format(outside=outside)}
    if tool == "file.write":
        args["content"] = "pwned"
    err = _refused(ctx, tool, **args)
    assert err.kind is ErrorKind.PERMANENT
    assert "is outside the folders plait may read and write" in err.message
    assert str(plan_dir.resolve()) in err.message and "--files DIR" in err.message
    assert (outside / "secret.txt").read_text() == "top secret"


def test_inside_the_plan_folder_all_is_as_before(world: tuple[Path, Path]) -> None:
    plan_dir, _ = world
    ctx = make_ctx(plan_dir)
    assert call(ctx, "file.read", path="inside.txt") == "fine"
    assert call(ctx, "file.read", path=str(plan_dir / "inside.txt")) == "fine"
    call(ctx, "file.write", path="a/b/../c.txt", content="x")
    assert (plan_dir / "a" / "c.txt").read_text() == "x"


def test_more_folders_may_be_allowed(world: tuple[Path, Path]) -> None:
    plan_dir, outside = world
    ctx = make_ctx(plan_dir, file_roots=(outside,))
    assert call(ctx, "file.read", path="link") == "top secret"
    assert call(ctx, "file.read", path="../outside/secret.txt") == "top secret"
    call(ctx, "file.write", path=str(outside / "new.txt"), content="ok")
    assert (outside / "new.txt").read_text() == "ok"


PLAN = """plan p {
  input path: str
  step r = file.read(path = path)
  output o = r.output
}
"""


def _run(
    plan_dir: Path, path: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "plait",
            "run",
            "p.agent",
            "--input",
            f"path={path}",
            "--json",
            "--no-journal",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=plan_dir,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_the_command_line_confines_and_allows(world: tuple[Path, Path]) -> None:
    plan_dir, outside = world
    (plan_dir / "p.agent").write_text(PLAN)
    refused = _run(plan_dir, "../../etc/passwd")
    assert refused.returncode == 1
    assert '"kind": "permanent"' in refused.stdout and "outside the folders" in refused.stdout
    allowed = _run(plan_dir, "../outside/secret.txt", "--files", str(outside))
    assert allowed.returncode == 0 and '"o": "top secret"' in allowed.stdout
    by_env = _run(
        plan_dir, "link", env={"PLAIT_FILES": os.pathsep.join(["/nonexistent", str(outside)])}
    )
    assert by_env.returncode == 0 and '"o": "top secret"' in by_env.stdout
