"""`check` never runs the plan's code: `use "./tools.py"` is read with `ast` and gives the same
tools (names, argument schemas, descriptions) and so the same diagnostics as importing it;
only `plait run` (and `resume`, `batch`) import. `--no-import` refuses even `use "pkg.mod"`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from plait.compiler.api import compile_file
from plait.stdlib.registry import IMPORT_ALL, READ_FILES, ToolSpec, plan_registry

MARKER_TOOLS = '''
import pathlib
pathlib.Path(__file__).with_name("MARKER").write_text("imported")

import plait

@plait.tool
def shout(text: str, times: int = 1) -> str:
    """Upper-case `text`."""
    return text.upper() * times
'''

TYPED_TOOLS = '''
from __future__ import annotations

import typing
from typing import Any, Dict, List, Literal, Optional, Union

import plait
from plait import ToolContext
from plait import tool as register

Headers = dict[str, str]


@plait.tool
def plain(a: str, b: int, c: float, d: bool, e=None, f: Any = 3) -> str:
    """Plain types.

    More text that is not the description.
    """
    return ""


@plait.tool(name="acme.containers", idempotent=False)
async def containers(ctx: plait.ToolContext, xs: list[int], m: dict[str, float],
                     old: List[str] = [], older: Dict[str, int] = {},
                     nested: list[dict[str, list[int]]] | None = None) -> None:
    return None


@register(read=True)
def optionals(a: int | None, b: Optional[str] = None, c: Union[int, str] = 1,
              d: "int | None" = None, e: typing.Optional[float] = 0.5) -> None:
    return None


@plait.tool
def literals(mode: Literal["fast", "slow"], level: Literal[1, 2, 3] = 1,
             either: Literal["a"] | None = None) -> None:
    return None


class Point:
    pass


@plait.tool
def unknown(p: Point, ps: list[Point], h: Headers, *args: int, ctx2: ToolContext,
            **more: Any) -> None:
    return None


@plait.tool
def defaults(a: int = 1 + 1, b: str = "x" * 2, c: tuple = (1, 2), d: list[int] = [1, -2]):
    return None


def not_a_tool(x: int) -> None:
    return None


@plait.tool
def shout(text: str) -> str:
    return text


@plait.tool(name="shout.again")
def shout(text: str, loud: bool = True) -> str:  # noqa: F811 - a redefinition wins, as imported
    return text
'''


def _specs(tmp_path: Path, source: str, policy: Any) -> dict[str, ToolSpec]:
    name = f"t{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{name}.py").write_text(source)
    registry = plan_registry([f"./{name}.py"], tmp_path, policy)
    return {
        spec_name.split(".", 1)[1] if spec_name.startswith(name) else spec_name: registry.get(
            spec_name
        )
        for spec_name in registry.own_names()
    }  # type: ignore[misc]


def _shape(spec: ToolSpec) -> tuple[Any, ...]:
    params = tuple(
        (
            p.name,
            p.annotation,
            p.required,
            p.default
            if isinstance(p.default, str | int | float | bool | list | dict | tuple | None)
            else repr(p.default),
        )
        for p in spec.params
    )
    return (
        params,
        spec.is_async,
        spec.context_param,
        spec.accepts_extra,
        spec.description,
        spec.idempotent,
        spec.read,
    )


SAMPLES: list[Any] = [
    None,
    "x",
    "fast",
    "slow",
    1,
    2,
    0.5,
    True,
    [],
    [1, 2],
    ["a"],
    {},
    {"k": 1.5},
    {"k": "v"},
    [{"k": [1]}],
    {"k": [1]},
]


def test_reading_gives_the_tools_importing_gives(tmp_path: Path) -> None:
    read = _specs(tmp_path, TYPED_TOOLS, READ_FILES)
    imported = _specs(tmp_path, TYPED_TOOLS, IMPORT_ALL)
    assert (
        set(read)
        == set(imported)
        == {
            "plain",
            "acme.containers",
            "optionals",
            "literals",
            "unknown",
            "defaults",
            "shout.again",
        }
    )  # the first `shout` was rebound by the second: no longer a tool
    for name in read:
        if name in ("unknown", "defaults"):
            continue  # a class annotation and computed defaults: see below
        assert _shape(read[name]) == _shape(imported[name]), name
        for param in read[name].params:
            for value in SAMPLES:  # the same literal checks, message for message
                assert read[name].literal_error(param.name, value) == imported[name].literal_error(
                    param.name, value
                ), (name, param, value)


def test_what_reading_cannot_know_checks_as_any(tmp_path: Path) -> None:
    unknown = _specs(tmp_path, TYPED_TOOLS, READ_FILES)["unknown"]
    assert [(p.name, p.annotation) for p in unknown.params] == [
        ("p", "any"),
        ("ps", "list[Any]"),
        ("h", "dict[str, str]"),
    ]
    assert unknown.context_param == "ctx2" and unknown.accepts_extra
    assert unknown.literal_error("p", {"any": "thing"}) is None
    defaults = _specs(tmp_path, TYPED_TOOLS, READ_FILES)["defaults"]
    assert [(p.name, repr(p.default)) for p in defaults.params] == [
        ("a", "1 + 1"),
        ("b", "'x' * 2"),
        ("c", "(1, 2)"),
        ("d", "[1, -2]"),
    ]


def test_a_read_tool_is_never_called(tmp_path: Path) -> None:
    spec = _specs(tmp_path, TYPED_TOOLS, READ_FILES)["plain"]
    with pytest.raises(Exception, match="read for checking, not imported"):
        spec.func(a="x")


def test_a_tool_name_that_is_not_literal_is_reported(tmp_path: Path) -> None:
    (tmp_path / "named.py").write_text(
        "import plait\nNAME = 'x.y'\n\n@plait.tool(name=NAME)\ndef f() -> None: ...\n"
    )
    (tmp_path / "p.agent").write_text('plan p {\n  use "./named.py"\n}\n')
    result = compile_file(tmp_path / "p.agent")
    [diag] = result.diagnostics
    assert diag.code.id == "E321" and "must be a literal string" in diag.message


@pytest.fixture
def marked(tmp_path: Path) -> Path:
    """A plan whose tools file writes MARKER when imported; `use` given relative and
    absolute."""
    (tmp_path / "tools.py").write_text(MARKER_TOOLS)
    (tmp_path / "plan.agent").write_text(
        textwrap.dedent(f'''\
        plan p {{
          use "./tools.py"
          use "{tmp_path / "tools.py"}"
          step a = tools.shout(text = "hi", times = "2")
          output o = a.output
        }}
    ''')
    )
    return tmp_path


def _plait(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["check", "--strict"],
        ["compile"],
        ["graph"],
        ["tools", "tools.shout", "--plan"],
        ["check", "--format", "json"],
    ],
)
def test_checking_a_plan_never_runs_its_code(marked: Path, command: list[str]) -> None:
    proc = _plait(*command, "plan.agent", cwd=marked)
    assert not (marked / "MARKER").exists(), proc.stderr
    if command[0] != "tools":
        assert proc.returncode == 2
        assert "argument `times` of `tools.shout` expects int" in proc.stderr + proc.stdout
    else:
        assert proc.returncode == 0 and "tools.shout(text: str, times: int = 1)" in proc.stdout


def test_running_the_plan_imports_its_code(marked: Path) -> None:
    plan = marked / "plan.agent"
    plan.write_text(plan.read_text().replace('times = "2"', "times = 2"))
    proc = _plait("run", "plan.agent", "--json", "--journal", "j.db", cwd=marked)
    assert proc.returncode == 0, proc.stderr
    assert (marked / "MARKER").read_text() == "imported"
    assert '"o": "HIHI"' in proc.stdout


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, str]:
    """A module on PYTHONPATH that writes a marker when imported."""
    name = f"plait_trusted_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{name}.py").write_text(
        MARKER_TOOLS.replace('with_name("MARKER")', 'parent.parent.joinpath("MARKER")')
    )
    (tmp_path / "plan.agent").write_text(
        f'plan p {{\n  use "{name}"\n  step a = {name}.shout(text = 3)\n}}\n'
    )
    return site, name


def test_a_module_by_dotted_name_is_trusted_installed_code(
    tmp_path: Path, installed: tuple[Path, str]
) -> None:
    site, name = installed
    proc = _plait("check", "plan.agent", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert (tmp_path / "MARKER").exists()  # imported, as documented
    assert proc.returncode == 2 and f"argument `text` of `{name}.shout` expects str" in proc.stderr


def test_no_import_refuses_even_a_dotted_module(
    tmp_path: Path, installed: tuple[Path, str]
) -> None:
    site, name = installed
    env = {"PYTHONPATH": str(site)}
    proc = _plait("check", "plan.agent", "--no-import", cwd=tmp_path, env=env)
    assert not (tmp_path / "MARKER").exists()
    assert proc.returncode == 0, proc.stderr  # a warning: the steps calling it are unchecked
    assert (
        f'warning[W409]: `use "{name}"` was not imported (--no-import): the steps calling '
        "its tools are not checked" in proc.stderr
    )
    strict = _plait("check", "plan.agent", "--no-import", "--strict", cwd=tmp_path, env=env)
    assert strict.returncode == 2 and not (tmp_path / "MARKER").exists()
    for command in (["compile"], ["graph"], ["tools", "--plan"]):
        _plait(*command, "plan.agent", "--no-import", cwd=tmp_path, env=env)
        assert not (tmp_path / "MARKER").exists(), command
