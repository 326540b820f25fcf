"""User tools end to end: `use "./tools.py"`, `use "pkg.module"`, and entry points of the
group `plait.tools` from a package installed on a temporary sys.path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.registry import ToolLoadError, builtin_registry, plan_registry
from tests.stdlib.conftest import make_ctx, run_with

TOOLS = '''
from __future__ import annotations
import asyncio
import plait

@plait.tool
def shout(text: str, times: int = 1) -> str:
    """Upper-case `text`."""
    return text.upper() * times

@plait.tool(name="acme.lookup")
async def lookup(ctx: plait.ToolContext, key: str) -> dict[str, object]:
    await asyncio.sleep(0)
    return {"key": key, "step": ctx.step, "dir": str(ctx.plan_dir)}

def not_a_tool() -> None:
    pass
'''


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS)
    return tmp_path


def test_use_a_file_beside_the_plan(plan_dir: Path) -> None:
    registry = plan_registry(["./tools.py"], plan_dir)
    assert set(registry.own_names()) == {"tools.shout", "acme.lookup"}
    shout = registry.get("tools.shout")
    assert shout is not None and not shout.is_async
    assert [(p.name, p.annotation, p.required) for p in shout.params] == [
        ("text", "str", True),
        ("times", "int", False),
    ]
    assert shout.description == "Upper-case `text`."
    assert shout.func(**shout.validate_args({"text": "hi", "times": 2})) == "HIHI"
    lookup = registry.get("acme.lookup")
    assert lookup is not None and lookup.is_async and lookup.context_param == "ctx"
    ctx = make_ctx(plan_dir, step="find")
    assert run_with(ctx, lambda: lookup.func(ctx, key="k")) == {
        "key": "k",
        "step": "find",
        "dir": str(plan_dir),
    }


def test_use_checks_arguments_by_type_hints(plan_dir: Path) -> None:
    shout = plan_registry(["./tools.py"], plan_dir).get("tools.shout")
    assert shout is not None
    with pytest.raises(ToolError) as info:
        shout.validate_args({"text": "x", "times": "many"})
    assert info.value.kind is ErrorKind.INVALID_INPUT and "`times`" in info.value.message
    with pytest.raises(ToolError):
        shout.validate_args({"txt": "x"})
    assert shout.literal_error("times", "3") is not None  # compile time is strict
    assert shout.literal_error("times", 3) is None


def test_plans_do_not_see_each_others_tools(plan_dir: Path, tmp_path: Path) -> None:
    plan_registry(["./tools.py"], plan_dir)
    other = plan_registry([], tmp_path)
    assert other.get("tools.shout") is None and other.get("acme.lookup") is None
    assert builtin_registry().get("tools.shout") is None
    assert other.get("http.get") is not None


def test_use_a_module_on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"plait_test_pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    # an imported module's tools also register globally (as plugins do): unique names here
    (tmp_path / name / "textkit.py").write_text(
        TOOLS.replace("acme.lookup", f"{name}.lookup").replace("def shout", "def yell")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = plan_registry([f"{name}.textkit"], Path("/nonexistent"))
    assert {"textkit.yell", f"{name}.lookup"} <= set(registry.own_names())


@pytest.mark.parametrize(
    ("target", "content", "expect"),
    [
        ("./missing.py", None, "no such file"),
        ("./broken.py", "raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
        ("./syntax.py", "def (:", "SyntaxError"),
        ("no_such_module_plait_xyz", None, "ModuleNotFoundError"),
    ],
)
def test_use_failures_are_load_errors(
    tmp_path: Path, target: str, content: str | None, expect: str
) -> None:
    if content is not None:
        (tmp_path / target).write_text(content)
    with pytest.raises(ToolLoadError) as info:
        plan_registry([target], tmp_path)
    assert expect in str(info.value)


def _install_plugin(site: Path, dist: str, module: str, source: str) -> None:
    """What `pip install` leaves behind: the module and a .dist-info with entry points."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[plait.tools]\n{dist} = {module}\n")


def _registered_names(site: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent("""
        from plait.stdlib.registry import builtin_registry, ToolContext
        reg = builtin_registry()
        print(sorted(n for n in reg.names() if n.startswith(("weather.", "broken."))))
        spec = reg.get("weather.forecast")
        print(spec.func(**spec.validate_args({"city": "Oslo"})))
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_entry_point_plugins_register_tools(tmp_path: Path) -> None:
    _install_plugin(
        tmp_path,
        "plait_weather",
        "plait_weather_tools",
        textwrap.dedent("""
        from plait import tool

        @tool(name="weather.forecast")
        def forecast(city: str, days: int = 1) -> str:
            return f"{city}: sunny for {days} day(s)"
    """),
    )
    _install_plugin(
        tmp_path,
        "plait_broken",
        "plait_broken_tools",
        "raise ImportError('missing dependency foo')",
    )
    proc = _registered_names(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['weather.forecast']", "Oslo: sunny for 1 day(s)"]
    assert "plait_broken" in proc.stderr and "missing dependency foo" in proc.stderr
