"""Ray, for real: one local Ray (`ray.init(num_cpus=2)`) for the whole test session, and
`plait run/batch --executor ray --address ADDR` as real subprocesses joining it. CPU-bound
Python tools on worker processes, timeouts that kill, retries that resubmit, outputs that
are not JSON, and a batch whose rate limit and breaker hold across workers, interrupted
and resumed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_batch import PLAIT, calls, plait, records, write_lines, write_plan
from tests.test_batch import TOOLS as BATCH_TOOLS

# the session's Ray listens on loopback only (read by Ray when it is first imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(180)

# the batch tests' t.call (it notes each call in calls.log), plus CPU-bound tools
TOOLS = (
    BATCH_TOOLS
    + """
@plait.tool(name="cpu.burn")
def burn(n: int) -> dict:
    x = 0
    for i in range(n):
        x += i % 7
    return {"pid": os.getpid(), "x": x}

@plait.tool(name="cpu.spin")
def spin(pidfile: str) -> int:
    Path(pidfile).write_text(str(os.getpid()))
    while True:
        pass

@plait.tool(name="cpu.shape")
def shape() -> object:
    return {"when": object()}

@plait.tool(name="data.read")
def read(name: str) -> str:
    return (Path(__file__).parent / name).read_text()
"""
)


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray for the session (on loopback), shut down at the end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="plait-tests")
    try:
        # ray.init put its auth settings in os.environ: the subprocesses inherit them
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def ray_plan(tmp: Path, body: str) -> Path:
    plan = write_plan(tmp, 'plan p {\n  use "./tools.py"\n' + body + "}\n")
    (tmp / "tools.py").write_text(TOOLS)
    return plan


def run_json(plan: Path, address: str, *args: str) -> tuple[int, dict[str, Any], str]:
    p = plait(
        "run",
        plan,
        "--executor",
        "ray",
        "--address",
        address,
        "--json",
        "--quiet",
        *args,
        timeout=150,
    )
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}, p.stderr


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cpu_bound_tools_run_as_ray_tasks(tmp_path: Path, ray_address: str) -> None:
    plan = ray_plan(
        tmp_path,
        """
  step work = for i in [1, 2, 3, 4]: cpu.burn(n = 300000)
  step again = std.flaky(fail_times = 2, value = "third time") { retry 3 backoff 10ms }
  output results = work.output
  output again = again.output
""",
    )
    code, report, err = run_json(plan, ray_address)
    assert code == 0, err
    results = report["outputs"]["results"]
    assert [r["x"] for r in results] == [sum(i % 7 for i in range(300000))] * 4
    assert all(r["pid"] != os.getpid() for r in results)
    # a retry is a new task; the run's std.flaky counter travels with each call
    assert report["outputs"]["again"] == "third time"
    assert report["steps"]["again"]["attempts"] == 3


def test_a_timeout_kills_a_sync_tool_and_bad_outputs_are_invalid(
    tmp_path: Path, ray_address: str
) -> None:
    pidfile = tmp_path / "spin.pid"
    plan = ray_plan(
        tmp_path,
        f'''
  step spin = cpu.spin(pidfile = "{pidfile}") {{
    timeout 3s
    optional
  }}
  step shape = cpu.shape() {{ optional }}
  step text = data.read(name = "data.txt")
  output text = text.output
''',
    )
    (tmp_path / "data.txt").write_text("read on a worker")
    code, report, err = run_json(plan, ray_address)
    assert code == 3, err  # degraded: the optional steps failed
    steps = report["steps"]
    assert steps["spin"]["error"]["kind"] == "timeout"
    assert steps["shape"]["error"]["kind"] == "invalid_output"
    assert "not JSON" in steps["shape"]["error"]["message"]
    assert report["outputs"]["text"] == "read on a worker"
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), "the worker spinning past its timeout was not killed"


RATED = """
  input n: int
  resource api {
    rate 4/s
  }
  step a = t.call(n = n) { uses api }
  output out = a.output
"""


def test_a_rate_limit_holds_across_ray_workers(tmp_path: Path, ray_address: str) -> None:
    """Measured where the limit lives (the resource actor's grants) and at the tool."""
    from plait.runtime.api import load_plan
    from plait.runtime.batch import Batch
    from plait.runtime.executors.ray import RayLines

    plan = load_plan(ray_plan(tmp_path, RATED))
    inputs = write_lines(tmp_path, [{"n": i} for i in range(16)])
    lines = RayLines.start(plan, workers=2)  # joins this session's Ray
    try:
        batch = Batch(plan, inputs, tmp_path / "out.jsonl", lines, concurrency=16)
        summary = asyncio.run(batch.run(handle_signals=False))
        grants = sorted(ray.get(lines.resources["api"].rate_starts.remote()))
    finally:
        lines.close()
    assert summary.overall["succeeded"] == 16
    assert sorted(r["outputs"]["out"] for r in records(tmp_path / "out.jsonl")) == [
        2 * i for i in range(16)
    ]
    seen = calls(tmp_path)
    assert len({pid for _ts, pid, _n in seen}) == 2  # both workers ran lines
    assert len(grants) == 16
    for i, t in enumerate(grants):  # never more than 4 starts in any one-second window
        assert sum(1 for g in grants[i:] if g - t < 1.0 - 1e-6) <= 4, grants
    assert grants[-1] - grants[0] >= 3.0 - 1e-6  # 16 starts at 4/s: three more windows
    starts = sorted(ts for ts, _pid, _n in seen)  # at the tool: a hop later, give slack
    for i, t in enumerate(starts):
        assert sum(1 for s in starts[i:] if s - t < 0.6) <= 4, starts


def test_one_breaker_for_every_worker(tmp_path: Path, ray_address: str) -> None:
    plan = ray_plan(
        tmp_path,
        """
  input n: int
  resource api {
    breaker after 3 failures cooldown 60s
  }
  step a = t.call(n = n, fail = true, sleep = 0.2) { uses api }
  output out = a.output ?? "none"
""",
    )
    inputs = write_lines(tmp_path, [{"n": i} for i in range(12)])
    p = plait(
        "batch",
        plan,
        "--inputs",
        inputs,
        "-o",
        tmp_path / "out.jsonl",
        "--executor",
        "ray",
        "--address",
        ray_address,
        "--workers",
        "2",
        "--concurrency",
        "2",
        "--json",
        timeout=150,
    )
    assert p.returncode == 1, p.stderr
    recs = records(tmp_path / "out.jsonl")
    kinds = [r["reasons"][0]["kind"] for r in recs]
    # 3 failures open it; at most one more call was already admitted on the other worker
    assert len(calls(tmp_path)) <= 4
    assert kinds.count("breaker_open") >= 8 and len(recs) == 12


def test_a_ray_batch_interrupted_and_resumed_loses_and_repeats_no_line(
    tmp_path: Path, ray_address: str
) -> None:
    plan = ray_plan(
        tmp_path,
        """
  input n: int
  step a = t.call(n = n, sleep = 0.3)
  output out = a.output
""",
    )
    inputs = write_lines(tmp_path, [{"n": i} for i in range(30)])
    out = tmp_path / "out.jsonl"
    args = [
        *PLAIT,
        "batch",
        str(plan),
        "--inputs",
        str(inputs),
        "-o",
        str(out),
        "--executor",
        "ray",
        "--address",
        ray_address,
        "--workers",
        "2",
        "--concurrency",
        "4",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _o, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    first = records(out)
    assert 4 <= len(first) < 30 and out.read_text().endswith("\n")
    p = subprocess.run(args, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stderr
    recs = records(out)
    assert sorted(r["line"] for r in recs) == list(range(1, 31))
    assert all(r["outputs"]["out"] == 2 * (r["line"] - 1) for r in recs)


def test_a_ray_batch_gives_the_same_lines_as_a_local_one(tmp_path: Path, ray_address: str) -> None:
    plan = ray_plan(
        tmp_path,
        """
  input n: int
  input fail: bool = false
  step a = t.call(n = n, fail = fail) { optional }
  step b = std.flaky(fail_times = 1, value = n) { retry 1 backoff 0ms }
  output doubled = a.output
  output n = b.output
""",
    )
    inputs = write_lines(
        tmp_path, [{"n": 1}, {"n": 2, "fail": True}, "{broken", {"n": "x"}, {"n": 5}]
    )
    outs = {}
    for name, extra in (
        ("local", []),
        ("ray", ["--executor", "ray", "--address", ray_address, "--workers", "2"]),
    ):
        out = tmp_path / f"{name}.jsonl"
        p = plait("batch", plan, "--inputs", inputs, "-o", out, "--quiet", *extra, timeout=150)
        assert p.returncode == 1, p.stderr
        outs[name] = sorted(
            ({k: v for k, v in r.items() if k != "run_id"} for r in records(out)),
            key=lambda r: r["line"],
        )
    assert outs["ray"] == outs["local"]
    assert [r["outcome"] for r in outs["ray"]] == [
        "succeeded",
        "degraded",
        "failed",
        "failed",
        "succeeded",
    ]
    assert outs["ray"][1]["reasons"][0]["kind"] == "transient"
