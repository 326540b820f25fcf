"""The compiler side of SPEC section 10: `fresh`, `guard` and `compensate` parse, compile to
fields and edges, are drawn, and are checked where they stand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plait.compiler.api import compile_source


def diags(body: str) -> list[tuple[str, str]]:
    result = compile_source("plan p {\n" + body + "\n}\n")
    return [(d.code.id, d.message) for d in result.diagnostics]


def codes_of(body: str) -> list[str]:
    return [code for code, _ in diags(body)]


PLAN = """
  step read = http.get(url = "http://127.0.0.1:9/x")
  step write = http.put(url = "http://127.0.0.1:9/x", json = 1, if_match = read.version) {
    guard read
    fresh 10s
    retry 3 on stale
    compensate undo
  }
  step undo = http.delete(url = "http://127.0.0.1:9/x", if_match = write.version) {
    timeout 5s
  }
"""


def test_compiled_fields_and_edges() -> None:
    result = compile_source("plan p {\n" + PLAN + "\n}\n")
    assert result.plan is not None and result.diagnostics == []
    data = json.loads(result.plan.model_dump_json())
    write = data["steps"]["write"]
    assert (write["fresh"], write["guard"], write["compensate"]) == (10.0, ["read"], "undo")
    assert data["steps"]["undo"]["standby_for"] == "write"
    assert ["read", "write", "guard"] in data["edges"]
    assert ["write", "undo", "undo"] in data["edges"]
    assert ["write", "undo", "data"] not in data["edges"]


def test_graph_draws_undo_dashed_and_guard_dotted(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text("plan p {\n" + PLAN + "\n}\n")
    out = subprocess.run(
        [sys.executable, "-m", "plait", "graph", str(plan)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "s_read -> s_write [label=guard" in out and "style=dotted" in out
    undo = next(line for line in out.splitlines() if "s_write -> s_undo" in line)
    assert "style=dashed" in undo and "undo" in undo
    mermaid = subprocess.run(
        [sys.executable, "-m", "plait", "graph", str(plan), "--format", "mermaid"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-. undo .->" in mermaid and "-. guard .->" in mermaid


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # guard: unknown, itself, a map, not a read
        ("step w = std.echo(value = 1) { guard nope }", "E326"),
        ('step w = http.get(url = "u") { guard w }', "E326"),
        (
            'step m = for x in [1]: http.get(url = "u")\nstep w = std.echo(value = 1) { guard m }',
            "E326",
        ),
        ("step r = std.echo(value = 1)\nstep w = std.echo(value = 1) { guard r }", "E326"),
        # compensate: unknown, itself, a compensation compensated, read by another step
        ("step s = std.echo(value = 1) { compensate nope }", "E327"),
        ("step s = std.echo(value = 1) { compensate s }", "E327"),
        (
            "step s = std.echo(value = 1) { compensate c }\n"
            "step c = std.echo(value = 1) { compensate d; timeout 1s }\n"
            "step d = std.echo(value = 1) { timeout 1s }",
            "E327",
        ),
        (
            "step s = std.echo(value = 1) { compensate c }\n"
            "step c = std.echo(value = 1) { timeout 1s }\n"
            "step o = std.echo(value = c.output)",
            "E310",
        ),
        (
            "step s = std.echo(value = 1) { compensate c }\n"
            "step c = std.echo(value = 1) { timeout 1s; optional }",
            "E315",
        ),
        (
            "step s = std.echo(value = 1) { compensate c; fallback c }\n"
            "step c = std.echo(value = 1) { timeout 1s }",
            "E313",
        ),
        # fresh: on a standby, not positive
        (
            "step s = std.echo(value = 1) { compensate c }\n"
            "step c = std.echo(value = 1) { timeout 1s; fresh 5s }",
            "E328",
        ),
        ("step s = std.echo(value = 1) { fresh 0s }", "E328"),
        # a cycle made by guard
        (
            'step r = http.get(url = "u", params = {x: w.output})\n'
            "step w = std.echo(value = 1) { guard r }",
            "E309",
        ),
    ],
)
def test_errors(body: str, code: str) -> None:
    assert code in codes_of(body), diags(body)


def test_a_compensation_may_read_its_primary_and_what_it_reads() -> None:
    assert (
        codes_of(
            "step a = std.echo(value = 1)\n"
            "step s = std.echo(value = a.output) { compensate c }\n"
            "step c = std.echo(value = [s.output, a.output]) { timeout 1s }"
        )
        == []
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("step s = std.sleep(seconds = 1) { fresh 1s; timeout 5s }", "W405"),
        ("step s = std.echo(value = 1) { compensate c }\nstep c = std.echo(value = 1)", "W406"),
        ('step w = http.put(url = "u", json = 1, if_match = "\\"v1\\"")', "W407"),
        (
            'step r = http.get(url = "u") { optional }\n'
            'step w = http.put(url = "u", json = 1, if_match = r.version)',
            "W407",
        ),
        (
            'step r = http.get(url = "u")\n'
            'step w1 = http.put(url = "u", json = 1, if_match = r.version) { retry 2 on stale }\n'
            'step w2 = http.put(url = "u", json = 2, if_match = r.version)',
            "W408",
        ),
    ],
)
def test_warnings(body: str, code: str) -> None:
    assert code in codes_of(body), diags(body)


def test_no_warning_for_star_or_retried_shared_condition() -> None:
    assert (
        codes_of(
            'step r = http.get(url = "u")\n'
            'step w0 = http.put(url = "u", json = 0, if_match = "*")\n'
            'step w1 = http.put(url = "u", json = 1, if_match = r.version) '
            "{ retry 2 on stale }\n"
            'step w2 = http.put(url = "u", json = 2, if_match = r.version) '
            "{ retry 2 on stale }"
        )
        == []
    )
