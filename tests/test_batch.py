"""`plait batch` in this process's event loop, through real subprocesses and real files:
output lines, bad lines, exit codes, resources shared by the whole batch, resume after a
torn line and after Ctrl-C, the summary (durations, token usage) and progress lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import FakeLLM

PLAIT = [str(Path(sys.executable).parent / "plait")]
pytestmark = pytest.mark.timeout(90)

RECORD_KEYS = {"line", "run_id", "outcome", "outputs", "reasons"}

# A tool that notes each call (start time, pid) in calls.log beside the plan, then fails or
# succeeds as asked: how the tests see what really reached the tool.
TOOLS = """
import os, time
from pathlib import Path
import plait
from plait.errors import Transient

def _note(tag):
    with open(Path(__file__).parent / "calls.log", "a") as f:
        f.write(f"{time.time():.6f} {os.getpid()} {tag}\\n")

@plait.tool(name="t.call")
def call(n: int, fail: bool = False, sleep: float = 0.0) -> int:
    _note(n)
    if sleep:
        time.sleep(sleep)
    if fail:
        raise Transient(f"service down for {n}")
    return n * 2
"""


def plait(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLAIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def write_plan(tmp: Path, text: str, tools: bool = False) -> Path:
    if tools:
        (tmp / "tools.py").write_text(TOOLS)
    path = tmp / "plan.agent"
    path.write_text(text)
    return path


def write_lines(tmp: Path, lines: list[Any], name: str = "in.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls(tmp: Path) -> list[tuple[float, int, str]]:
    log = tmp / "calls.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        ts, pid, tag = line.split()
        out.append((float(ts), int(pid), tag))
    return out


ECHO_PLAN = """plan echo {
  input n: int
  input tag: str = "t"
  step a = std.echo(value = "${tag}-${n}")
  step b = std.flaky(fail_times = 1, value = a.output) { optional }
  output out = a.output
}
"""


def test_one_line_per_input_with_outputs_and_bad_lines_as_failed(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, ECHO_PLAN.replace("{ optional }", "{ retry 1 backoff 0ms }"))
    inputs = write_lines(
        tmp_path,
        [
            {"n": 1},
            "not json",
            {"n": 2, "tag": "x"},
            "",
            {"n": "three"},
            [1, 2],
            {"tag": "missing n"},
            {"n": 4, "nope": 1},
            {"n": 5},
        ],
    )
    out = tmp_path / "out.jsonl"
    p = plait("batch", plan, "--inputs", inputs, "-o", out)
    assert p.returncode == 1, p.stderr  # some lines failed
    recs = records(out)
    assert all(set(r) == RECORD_KEYS for r in recs)
    by_line = {r["line"]: r for r in recs}
    assert sorted(by_line) == [1, 2, 3, 5, 6, 7, 8, 9]  # line 4 is blank: no run
    assert by_line[1]["outcome"] == "succeeded" and by_line[1]["outputs"] == {"out": "t-1"}
    assert by_line[3]["outputs"] == {"out": "x-2"} and by_line[9]["outputs"] == {"out": "t-5"}
    assert len({by_line[n]["run_id"] for n in (1, 3, 9)}) == 3
    for n, words in [
        (2, "not valid JSON"),
        (5, "`n` must be int"),
        (6, "JSON object"),
        (7, "missing required input `n`"),
        (8, "unknown input `nope`"),
    ]:
        r = by_line[n]
        assert r["outcome"] == "failed" and r["run_id"] is None and r["outputs"] == {}
        assert r["reasons"][0]["kind"] == "invalid_input"
        assert words in r["reasons"][0]["why"], r
    assert "line 2 failed" in p.stderr  # plain progress: failed lines as they come
    assert "succeeded" in p.stdout and "p95" in p.stdout  # the summary table


def test_exit_codes_follow_the_worst_line(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, ECHO_PLAN)
    ok = plait(
        "batch",
        plan,
        "--inputs",
        write_lines(tmp_path, [{"n": 1}]),
        "-o",
        tmp_path / "a.jsonl",
        "--quiet",
    )
    # std.flaky fails its first attempt and is optional: every run is degraded
    assert ok.returncode == 3 and records(tmp_path / "a.jsonl")[0]["outcome"] == "degraded"
    assert records(tmp_path / "a.jsonl")[0]["reasons"][0]["step"] == "b"
    allowed = plait(
        "batch",
        plan,
        "--inputs",
        tmp_path / "in.jsonl",
        "-o",
        tmp_path / "b.jsonl",
        "--quiet",
        "--allow-degraded",
    )
    assert allowed.returncode == 0
    plain = write_plan(tmp_path, ECHO_PLAN.replace("{ optional }", "{ retry 1 }"))
    good = plait("batch", plain, "--inputs", tmp_path / "in.jsonl", "-o", tmp_path / "c.jsonl")
    assert good.returncode == 0, good.stderr
    missing = plait("batch", plain, "--inputs", tmp_path / "nope.jsonl", "-o", tmp_path / "d")
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
    (tmp_path / "bad.agent").write_text("plan bad {\n  step a = std.echo(\n}\n")
    bad = plait(
        "batch",
        tmp_path / "bad.agent",
        "--inputs",
        tmp_path / "in.jsonl",
        "-o",
        tmp_path / "e.jsonl",
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert not (tmp_path / "e.jsonl").exists()


def test_rate_limit_is_shared_by_every_run_of_the_batch(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        """plan rated {
  use "./tools.py"
  input n: int
  resource api {
    rate 4/s
  }
  step a = t.call(n = n) { uses api }
  output out = a.output
}
""",
        tools=True,
    )
    inputs = write_lines(tmp_path, [{"n": i} for i in range(12)])
    p = plait(
        "batch", plan, "--inputs", inputs, "-o", tmp_path / "out.jsonl", "--concurrency", "12"
    )
    assert p.returncode == 0, p.stderr
    starts = sorted(ts for ts, _pid, _tag in calls(tmp_path))
    assert len(starts) == 12
    # never more than 4 starts in any window of (nearly) one second, across all runs
    for i, t in enumerate(starts):
        assert sum(1 for s in starts[i:] if s - t < 0.95) <= 4, starts
    assert starts[-1] - starts[0] >= 1.9  # 12 starts at 4/s need two full windows


def test_one_breaker_protects_the_service_for_the_whole_batch(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        """plan guarded {
  use "./tools.py"
  input n: int
  resource api {
    breaker after 3 failures cooldown 30s
  }
  step a = t.call(n = n, fail = true) { uses api }
  output out = a.output ?? "none"
}
""",
        tools=True,
    )
    inputs = write_lines(tmp_path, [{"n": i} for i in range(10)])
    p = plait("batch", plan, "--inputs", inputs, "-o", tmp_path / "out.jsonl", "--concurrency", "1")
    assert p.returncode == 1
    assert len(calls(tmp_path)) == 3  # the service saw 3 calls, not 3 per run
    kinds = sorted(r["reasons"][0]["kind"] for r in records(tmp_path / "out.jsonl"))
    assert kinds == ["breaker_open"] * 7 + ["transient"] * 3


def test_rerun_skips_done_lines_and_reruns_a_torn_one(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, ECHO_PLAN.replace("{ optional }", "{ retry 1 }"))
    inputs = write_lines(tmp_path, [{"n": i} for i in range(1, 6)])
    out = tmp_path / "out.jsonl"
    done = {
        "line": 2,
        "run_id": "r-old",
        "outcome": "succeeded",
        "outputs": {"out": "old"},
        "reasons": [],
    }
    # line 2 finished earlier; line 4 was being written when the process was killed
    out.write_text(json.dumps(done) + "\n" + '{"line": 4, "run_id": "r-to')
    p = plait("batch", plan, "--inputs", inputs, "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    recs = records(out)
    assert recs[0] == done
    assert sorted(r["line"] for r in recs) == [1, 2, 3, 4, 5]
    summary = json.loads(p.stdout)
    assert summary["skipped"] == 1 and summary["ran"]["succeeded"] == 4
    assert summary["overall"]["succeeded"] == 5 and summary["finished"] is True
    again = plait("batch", plan, "--inputs", inputs, "-o", out, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["ran"]["succeeded"] == 0
    assert len(records(out)) == 5
    (tmp_path / "junk.jsonl").write_text("hello\n")
    junk = plait("batch", plan, "--inputs", inputs, "-o", tmp_path / "junk.jsonl")
    assert junk.returncode == 2 and "not a line written by plait batch" in junk.stderr


def interrupt_and_resume(
    tmp_path: Path, extra: list[str], signum: int = signal.SIGINT, lines: int = 40
) -> None:
    """Start a batch of slow runs, interrupt it, rerun it: every line exactly once."""
    plan = write_plan(
        tmp_path,
        """plan slow {
  use "./tools.py"
  input n: int
  step a = t.call(n = n, sleep = 0.3)
  output out = a.output
}
""",
        tools=True,
    )
    inputs = write_lines(tmp_path, [{"n": i} for i in range(lines)])
    out = tmp_path / "out.jsonl"
    args = [
        *PLAIT,
        "batch",
        str(plan),
        "--inputs",
        str(inputs),
        "-o",
        str(out),
        "--concurrency",
        "4",
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # interrupt once some lines are written
        if out.exists() and len(out.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), stderr
    assert "rerun the same command" in stderr and "Traceback" not in stderr
    first = records(out)  # every line written is whole
    assert 4 <= len(first) < lines
    assert out.read_text().endswith("\n")
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    recs = records(out)
    assert sorted(r["line"] for r in recs) == list(range(1, lines + 1))
    assert recs[: len(first)] == first
    assert all(
        r["outcome"] == "succeeded" and r["outputs"]["out"] == 2 * (r["line"] - 1) for r in recs
    )


def test_ctrl_c_stops_cleanly_and_the_rerun_completes(tmp_path: Path) -> None:
    interrupt_and_resume(tmp_path, [])


def test_sigterm_stops_cleanly_too(tmp_path: Path) -> None:
    interrupt_and_resume(tmp_path, ["--quiet"], signal.SIGTERM, lines=20)


def test_summary_counts_tokens_and_durations(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        """plan ask {
  input q: str
  step a = llm.chat(prompt = "answer: ${q}")
  output answer = a.output
}
""",
    )
    inputs = write_lines(tmp_path, [{"q": f"question {i}"} for i in range(6)])
    with FakeLLM(reply="forty-two and some more words") as llm:
        p = plait(
            "batch",
            plan,
            "--inputs",
            inputs,
            "-o",
            tmp_path / "out.jsonl",
            "--json",
            env={"PLAIT_LLM_BASE_URL": llm.url("/v1"), "PLAIT_LLM_MODEL": "m"},
        )
        usage = [r.body for r in llm.requests]
    assert p.returncode == 0, p.stderr
    assert len(usage) == 6
    summary = json.loads(p.stdout)
    assert summary["tokens"]["completion"] == 6 * (len("forty-two and some more words") // 4)
    assert summary["tokens"]["prompt"] > 0
    assert (
        summary["tokens"]["total"] == summary["tokens"]["prompt"] + summary["tokens"]["completion"]
    )
    assert 0 < summary["duration_p50_s"] <= summary["duration_p95_s"]
    assert all(
        r["outputs"]["answer"] == "forty-two and some more words"
        for r in records(tmp_path / "out.jsonl")
    )


def test_ray_without_ray_installed_says_what_to_install(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, ECHO_PLAN)
    inputs = write_lines(tmp_path, [{"n": 1}])
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "ray.py").write_text("raise ImportError('No module named ray')\n")
    p = plait(
        "batch",
        plan,
        "--inputs",
        inputs,
        "-o",
        tmp_path / "o.jsonl",
        "--executor",
        "ray",
        env={"PYTHONPATH": str(hide)},
    )
    assert p.returncode == 2, p.stderr
    assert "pip install 'plait[ray]'" in p.stderr and "Traceback" not in p.stderr
    r = plait("run", plan, "--input", "n=1", "--executor", "ray", env={"PYTHONPATH": str(hide)})
    assert r.returncode == 2 and "pip install 'plait[ray]'" in r.stderr


def test_a_terminal_gets_a_progress_bar_with_counts_and_eta(tmp_path: Path) -> None:
    import pty

    plan = write_plan(tmp_path, ECHO_PLAN.replace("{ optional }", "{ retry 1 }"))
    inputs = write_lines(tmp_path, [{"n": i} for i in range(20)] + ["oops"])
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*PLAIT, "batch", str(plan), "--inputs", str(inputs), "-o", str(tmp_path / "out.jsonl")],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.wait(timeout=60)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 1
    assert "20/21" not in screen or "21/21" in screen  # the bar ends complete
    assert "21/21" in screen and "ETA" in screen
    assert "20 ok" in screen and "1 failed" in screen
    assert "line 21 failed" in screen  # failed lines printed above the bar
