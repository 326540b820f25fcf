"""Property-based runs of plans whose tools misbehave in every way Python allows (issue #9).

Each example is a plan of a few steps, plain or map, under retries, fallbacks, `optional`,
timeouts and a deadline, whose tools (tests/fuzz_tools.py) return values of many Python
types (self-referencing, huge, non-UTF-8 bytes...), raise exceptions of every class
(`BaseException`s included), block the event loop, sleep past their timeout, or run in a
worker process. Every run must end with a report whose step outcomes match what was
injected, leave no thread, task or child process behind, and be resumable from its journal.

CI runs `PLAIT_FUZZ_EXAMPLES` examples (default 20: well under two minutes); run it with a
larger number locally, e.g. `PLAIT_FUZZ_EXAMPLES=300 pytest tests/test_fuzz_tools.py`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.fuzz_tools  # noqa: F401 - registers the fuzz.* tools
from plait.compiler.ir import MapSpec
from plait.runtime.session import RunSession
from tests.runtime.planlib import L, P, S, retry

EXAMPLES = int(os.environ.get("PLAIT_FUZZ_EXAMPLES", "20"))
pytestmark = pytest.mark.timeout(600)

RAISED_KIND = {
    "value_error": "tool_error",
    "key_error": "tool_error",
    "stop_iteration": "tool_error",
    "system_exit": "tool_error",
    "keyboard_interrupt": "tool_error",
    "generator_exit": "tool_error",
    "odd_base": "tool_error",
    "recursion": "tool_error",
    "transient": "transient",
    "permanent": "permanent",
    "timeout": "timeout",
    "rate_limited": "rate_limited",
    "invalid_output": "invalid_output",
}
GOOD_VALUES = ["json", "tuple", "set", "generator", "datetime", "decimal", "dataclass", "bytes_ok"]
BAD_VALUES = ["bytes_bad", "object", "cycle", "nan", "huge"]
NOT_RETRIED = {"permanent"}
LIMIT = 1000  # the steps' max_output: "huge" is over it

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

actions = st.one_of(
    st.builds(
        lambda k, d: {"do": "value", "kind": k, "data": d},
        st.sampled_from(GOOD_VALUES + BAD_VALUES),
        st.lists(st.integers(0, 9), max_size=4),
    ),
    st.builds(lambda d: {"do": "value", "kind": "json", "data": d}, json_values),
    st.builds(lambda e: {"do": "raise", "exc": e}, st.sampled_from(sorted(RAISED_KIND))),
    st.builds(
        lambda s, p: {"do": "sleep", "seconds": s, "polite": p},
        st.sampled_from([0.0, 0.02, 0.5]),
        st.booleans(),
    ),
)

steps = st.fixed_dictionaries(
    {
        "tool": st.sampled_from(
            ["fuzz.sync", "fuzz.async", "fuzz.sync", "fuzz.async", "fuzz.process"]
        ),
        "action": actions,
        "retries": st.integers(0, 2),
        "elements": st.sampled_from([None, None, 1, 3]),
        "optional": st.booleans(),
        "fallback": st.booleans(),
    }
)


def expected(case: dict[str, Any]) -> tuple[str, str | None]:
    """(status, error kind) the step must end with."""
    action = case["action"]
    if action["do"] == "raise":
        kind: str | None = RAISED_KIND[action["exc"]]
    elif action["do"] == "sleep":
        kind = "timeout" if action["seconds"] > 0.2 else None
    else:
        kind = "invalid_output" if action["kind"] in BAD_VALUES else None
    if kind is None:
        return "succeeded", None
    return ("recovered" if case["fallback"] else "failed"), kind


def build_plan(cases: list[dict[str, Any]]) -> Any:
    made = []
    for i, case in enumerate(cases):
        timeout = 3.0 if case["tool"] == "fuzz.process" else 0.2
        policy: dict[str, Any] = {
            "timeout_s": timeout,
            "optional": case["optional"],
            "max_output": LIMIT,
            "retry": retry(case["retries"]) if case["retries"] else None,
        }
        action = dict(case["action"])
        if case["tool"] == "fuzz.process" and action["do"] == "sleep" and action["seconds"] > 0.2:
            action["seconds"] = 30  # past the worker's timeout: it is killed
        if case["fallback"]:
            policy["fallback"] = [f"fb{i}"]
        step = S(f"s{i}", case["tool"], spec=action, **policy)
        if case["elements"] is not None:
            step = step.model_copy(
                update={"map": MapSpec(var="x", over=L(list(range(case["elements"]))))}
            )
        made.append(step)
        if case["fallback"]:
            made.append(S(f"fb{i}", "std.echo", value="fallback"))
    return P(*made, deadline_s=60.0)


def _children() -> list[int]:
    me, found = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == me and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _settle(check: Any, seconds: float = 5.0) -> Any:
    end = time.monotonic() + seconds
    value = check()
    while value and time.monotonic() < end:
        time.sleep(0.05)
        value = check()
    return value


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(cases=st.lists(steps, min_size=1, max_size=4))
def test_any_tool_behaviour_ends_as_an_outcome(
    tmp_path_factory: pytest.TempPathFactory, cases: list[dict[str, Any]]
) -> None:
    journal = tmp_path_factory.mktemp("fuzz") / "journal.db"
    plan = build_plan(cases)
    threads_before = threading.active_count()

    async def run() -> Any:
        report = await RunSession.start(plan, journal=journal).run()
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no task left behind
        return report

    report = asyncio.run(run())
    # a tool holding the event loop stops every clock: another step may time out meanwhile
    blocking = any(
        c["tool"] == "fuzz.async"
        and c["action"]["do"] == "sleep"
        and not c["action"]["polite"]
        and c["action"]["seconds"] > 0.2
        for c in cases
    )
    for i, case in enumerate(cases):
        status, kind = expected(case)
        got = report.steps[f"s{i}"]
        if blocking and got.error is not None and got.error.kind == "timeout":
            status, kind = ("recovered" if case["fallback"] else "failed"), "timeout"
        assert got.status == status, (case, got)
        assert (got.error.kind if got.error else None) == kind, (case, got)
        if status == "succeeded":
            assert got.output is not None or case["action"].get("data") is None
    assert report.outcome in ("succeeded", "degraded", "failed")
    # no thread (an abandoned sync call ends by itself), task or worker process left
    assert not _settle(lambda: threading.active_count() > threads_before)
    assert not _settle(_children)
    again = RunSession.resume(report.run_id, journal=journal).run_sync()
    assert again.outcome == report.outcome
    assert {n: s.status for n, s in again.steps.items()} == {
        n: s.status for n, s in report.steps.items()
    }
