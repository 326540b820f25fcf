"""Every output has a version, a read time and an age (SPEC section 10, "Versions"), and
every attempt an idempotency key."""

from __future__ import annotations

import hashlib
import json

import pytest

from plait.runtime.clock import FakeClock
from plait.versions import value_hash
from tests.consistency.conftest import Planner
from tests.servers import VersionedStore

pytestmark = pytest.mark.timeout(60)

TOOLS = """
import plait
from plait import ToolContext

KEYS = []

@plait.tool(name="t.versioned")
def versioned(value: int) -> plait.Versioned:
    return plait.Versioned({"n": value}, version=f"v{value}")

@plait.tool(name="t.key")
def key(ctx: ToolContext, fail: int = 0) -> str:
    KEYS.append(ctx.idempotency_key)
    if len(KEYS) <= fail:
        raise plait.Transient("not yet")
    return ctx.idempotency_key
"""


def test_hash_is_canonical_json() -> None:
    value = {"b": [1, 2.5, "é"], "a": None}
    text = '{"a":null,"b":[1,2.5,"é"]}'
    assert json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == text
    assert value_hash(value) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_versions_of_plain_versioned_and_failed_steps(planner: Planner) -> None:
    ran = planner.run(
        """
        plan p {
          use "./tools.py"
          step a = std.echo(value = {x: 1})
          step b = t.versioned(value = 3)
          step c = std.fail(message = "no") { optional }
          step d = std.echo(value = [a.version, b.version, c.version, b.output.n])
          output ages = [a.age, b.read_at]
        }
        """,
        tools=TOOLS,
    )
    rep = ran.report
    assert rep.steps["a"].version == value_hash({"x": 1})
    assert rep.steps["b"].version == "v3"
    assert rep.steps["c"].version is None and rep.steps["c"].read_at is None
    assert rep.steps["d"].output == [value_hash({"x": 1}), "v3", None, 3]
    assert rep.steps["b"].read_at is not None and rep.steps["b"].read_at.endswith("Z")
    age, read_at = rep.outputs["ages"]
    assert isinstance(age, float) and 0 <= age < 30
    assert read_at == rep.steps["b"].read_at
    finished = ran.of("step_finished", "b")[0]
    assert (finished.version, finished.read_at) == ("v3", rep.steps["b"].read_at)


def test_fallback_gives_the_standbys_version_and_default_gives_null(planner: Planner) -> None:
    ran = planner.run("""
        plan p {
          step a = std.fail(message = "x") { fallback b }
          step b = std.echo(value = 7)
          step c = std.fail(message = "x") { default 5 }
        }
        """)
    steps = ran.report.steps
    assert steps["a"].version == steps["b"].version == value_hash(7)
    assert steps["a"].read_at == steps["b"].read_at
    assert steps["c"].status == "recovered" and steps["c"].output == 5
    assert steps["c"].version is None and steps["c"].read_at is None


def test_map_version_hashes_the_element_versions(planner: Planner) -> None:
    ran = planner.run("""
        plan p {
          step m = for x in [1, 2]: std.echo(value = x)
        }
        """)
    assert ran.report.steps["m"].version == value_hash([value_hash(1), value_hash(2)])


def test_age_follows_the_run_clock(planner: Planner) -> None:
    clock = FakeClock(autojump=True)
    ran = planner.run(
        """
        plan p {
          step a = std.echo(value = 1)
          step wait = std.flaky(fail_times = 1) { after a; retry 1 backoff 90s }
          step b = std.echo(value = a.age) { after wait }
        }
        """,
        clock=clock,
    )
    assert ran.report.steps["b"].output == pytest.approx(90, abs=1)
    assert ran.report.steps["a"].read_at == "2026-01-01T00:00:00.000000Z"


def test_idempotency_keys_equal_across_retries(planner: Planner) -> None:
    ran = planner.run(
        """
        plan p {
          use "./tools.py"
          step k = t.key(fail = 2) { retry 3 backoff 0ms }
          step m = for x in [1, 2]: std.echo(value = x)
        }
        """,
        tools=TOOLS,
        run_id="r1",
    )
    assert ran.report.steps["k"].output == "r1:k"
    assert ran.report.steps["k"].attempts == 3


def test_http_get_versions_and_conditional_put(planner: Planner, store: VersionedStore) -> None:
    store.records["x"] = {"n": 1}
    store.versions["x"] = 4
    ran = planner.run(
        f'''
        plan p {{
          step read = http.get(url = "{store.url("/records/x")}")
          step write = http.put(url = "{store.url("/records/x")}", json = {{n: 2}},
                                if_match = read.version)
          step again = http.put(url = "{store.url("/records/x")}", json = {{n: 3}},
                                if_match = read.version) {{ after write; optional }}
        }}
        ''',
        run_id="r9",
    )
    steps = ran.report.steps
    assert steps["read"].version == '"4"'
    assert steps["write"].status == "succeeded" and steps["write"].version == '"5"'
    assert steps["again"].status == "failed" and steps["again"].error.kind == "stale"
    assert store.records["x"] == {"n": 2} and store.conflicts == 1
    assert store.keys == ["r9:write", "r9:again"]


def test_null_if_match_is_invalid_input(planner: Planner, store: VersionedStore) -> None:
    ran = planner.run(f'''
        plan p {{
          step w = http.put(url = "{store.url("/records/y")}", json = 1, if_match = null)
        }}
        ''')
    assert ran.report.steps["w"].error.kind == "invalid_input"
    assert "null" in ran.report.steps["w"].error.message
    assert store.writes == 0
