"""Re-deciding on `retry … on stale` (SPEC section 10) against a real HTTP store with ETags
and If-Match: no update is lost however the writers interleave."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.consistency.conftest import Planner
from tests.servers import VersionedStore

pytestmark = pytest.mark.timeout(120)

TOOLS = """
import plait

@plait.tool(name="t.plus_one")
def plus_one(record: dict) -> dict:
    return {"n": record["n"] + 1}
"""


def writers_plan(url: str, n: int, retries: int = 5) -> str:
    body = "\n".join(
        f'''
      step read_{i} = http.get(url = "{url}")
      step next_{i} = t.plus_one(record = read_{i}.output.body)
      step write_{i} = http.put(url = "{url}", json = next_{i}.output,
                               if_match = read_{i}.version) {{
        retry {retries} on stale backoff 0ms
      }}'''
        for i in range(n)
    )
    return f'plan writers {{\n  use "./tools.py"\n{body}\n}}\n'


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=1, max_value=5), delay=st.sampled_from([0.0, 0.01]))
def test_no_lost_update_under_concurrent_writers(planner: Planner, n: int, delay: float) -> None:
    with VersionedStore() as store:
        store.records["c"] = {"n": 0}
        store.get_delay = delay
        ran = planner.run(writers_plan(store.url("/records/c"), n), tools=TOOLS)
        assert ran.report.outcome == "succeeded", ran.report.reasons
        assert store.records["c"] == {"n": n}
        redecisions = sum(len(ran.step(f"write_{i}").redecisions) for i in range(n))
        assert redecisions == store.conflicts
        assert store.writes == n


def test_redecision_reruns_the_path_and_reports_it(planner: Planner, store: VersionedStore) -> None:
    store.records["c"] = {"n": 0}
    store.readers_meet = 2  # both reads see the first version, whatever the load
    ran = planner.run(writers_plan(store.url("/records/c"), 2), tools=TOOLS, run_id="r1")
    assert store.conflicts == 1 and store.records["c"] == {"n": 2}
    loser = next(i for i in range(2) if ran.step(f"write_{i}").redecisions)
    entry = ran.step(f"write_{loser}").redecisions[0]
    assert entry == {
        "attempt": 1,
        "sources": [f"read_{loser}"],
        "rerun": [f"read_{loser}", f"next_{loser}"],
    }
    assert ran.step(f"read_{loser}").executions == 2
    assert ran.step(f"next_{loser}").executions == 2
    assert ran.step(f"write_{loser}").executions == 1
    assert ran.step(f"write_{loser}").attempts == 2
    names = [
        e.event
        for e in ran.events
        if getattr(e, "step", None) in (f"read_{loser}", f"write_{loser}")
    ]
    assert names.count("step_finished") == 2  # one per step, executions aside
    for event in (
        "stale_detected",
        "redecide_started",
        "execution_started",
        "execution_finished",
        "redecide_finished",
    ):
        assert event in [e.event for e in ran.events]
    started = ran.of("execution_started", f"read_{loser}")[0]
    assert (started.execution, started.why) == (2, "redecide")
    # the retry after the re-decision has a new idempotency key
    keys = [k for k in store.keys if k and k.startswith(f"r1:write_{loser}")]
    assert keys == [f"r1:write_{loser}", f"r1:write_{loser}#2"]
    again = [e for e in ran.of("attempt_started", f"read_{loser}")]
    assert [e.execution for e in again] == [None, 2]


def test_without_on_stale_the_write_just_fails(planner: Planner, store: VersionedStore) -> None:
    store.records["c"] = {"n": 0}
    store.readers_meet = 2  # both reads see the first version, whatever the load
    text = writers_plan(store.url("/records/c"), 2).replace(
        "retry 5 on stale backoff 0ms", "optional"
    )
    ran = planner.run(text, tools=TOOLS)
    kinds = sorted(
        str(ran.step(f"write_{i}").error.kind) for i in range(2) if ran.step(f"write_{i}").error
    )
    assert kinds == ["stale"] and store.records["c"] == {"n": 1}
    assert "redecide_started" not in [e.event for e in ran.events]


def test_a_write_that_would_no_longer_run_fails_stale(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 0}
    url = store.url("/records/c")
    ran = planner.run(f'''
        plan p {{
          step read = http.get(url = "{url}")
          step first = http.put(url = "{url}", json = {{n: 5}}, if_match = read.version)
          step late = http.put(url = "{url}", json = {{n: 1}}, if_match = read.version) {{
            after first
            if read.output.body.n == 0
            retry 2 on stale backoff 0ms
          }}
        }}
        ''')
    late = ran.step("late")
    assert late.status == "failed" and late.error.kind == "stale"
    assert "would not run now" in late.error.message
    assert store.records["c"] == {"n": 5}
    assert late.redecisions[0]["rerun"] == ["read"]


def test_stale_map_elements_re_decide_together_and_retry(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 0}
    url = store.url("/records/c")
    ran = planner.run(f'''
        plan many {{
          step read = http.get(url = "{url}")
          step saves = for x in ["a", "b", "c"]: http.put(url = "{url}",
              json = {{last: x}}, if_match = read.version) {{
            retry 5 on stale backoff 0ms
          }}
        }}
        ''')
    assert ran.report.outcome == "succeeded", ran.report.reasons
    assert store.writes == 3  # every element wrote once, none lost
    assert store.records["c"]["last"] in ("a", "b", "c")
    saves = ran.step("saves")
    assert 1 <= len(saves.redecisions) <= store.conflicts
    for entry in saves.redecisions:
        assert (entry["sources"], entry["rerun"]) == (["read"], ["read"])
    assert ran.step("read").executions == 1 + len(saves.redecisions)
    # finished elements kept their outputs; a retried element's key carries the decision
    keys = [k for k in store.keys if k]
    assert any("#" in k for k in keys)


def test_a_map_whose_list_changes_when_re_decided_fails_stale(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"items": [1, 2]}
    url = store.url("/records/c")
    ran = planner.run(f'''
        plan shifting {{
          step read = http.get(url = "{url}")
          step saves = for x in read.output.body.items: http.patch(url = "{url}",
              json = {{items: [x]}}, if_match = read.version) {{
            retry 5 on stale backoff 0ms
            compensate undo
          }}
          step undo = std.echo(value = saves.output) {{ timeout 5s }}
        }}
        ''')
    saves = ran.step("saves")
    assert saves.status == "failed" and saves.error.kind == "stale"
    assert "evaluates differently" in saves.error.message
    assert len(saves.redecisions) == 1
    assert store.writes == 1  # only the element that won went through
    # the element that went through is undone: its compensation sees the element outputs
    assert [c["status"] for c in ran.report.compensations] == ["succeeded"]
    undone = ran.step("undo").output
    assert len(undone) == 2 and sum(x is not None for x in undone) == 1


def test_a_loop_between_the_read_and_the_write_runs_again_whole(
    planner: Planner, store: VersionedStore
) -> None:
    import threading
    import time

    store.records["c"] = {"n": 1}

    def meddle() -> None:  # a change behind the plan's back, once the record was read
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if any(r.method == "GET" for r in store.requests):
                with store._lock:
                    store.records["c"] = {"n": 5}
                    store.versions["c"] = 7
                return
            time.sleep(0.005)

    threading.Thread(target=meddle, daemon=True).start()
    url = store.url("/records/c")
    ran = planner.run(f'''
        plan looped {{
          step read = http.get(url = "{url}")
          step think = std.sleep(seconds = 1.0) {{ after read }}
          loop twice max 2 {{
            step note = std.echo(value = read.output.body.n) {{ after think }}
          }}
          step write = http.put(url = "{url}", json = {{seen: twice.output.note}},
                                if_match = read.version) {{
            retry 2 on stale backoff 0ms
          }}
        }}
        ''')
    assert ran.report.outcome == "succeeded", ran.report.reasons
    assert ran.step("write").redecisions == [
        {"attempt": 1, "sources": ["read"], "rerun": ["read", "twice"]}
    ]
    assert ran.step("twice").executions == 2
    assert store.records["c"] == {"seen": 5}
