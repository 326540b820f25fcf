"""The journal through the real `plait` command: kill -9 then resume, runs, show, report,
graph --run, --trace, and clear errors (exit 2, no traceback, file untouched) for bad journals.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from plait.compiler.ir import CompiledPlan
from tests.marks import NEEDS_DOT
from tests.runtime.planlib import P, R, S, T, retry

PLAIT = [sys.executable, "-m", "plait"]


def plait(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PLAIT_JOURNAL_BUSY_TIMEOUT": "0.3", **(env or {})}
    full.pop("OTEL_TRACES_EXPORTER", None)
    return subprocess.run(
        [*PLAIT, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def _effect(name: str) -> Any:
    """A shell step whose side effect (a line in the log file) shows how often it ran."""
    return T(f"echo {name} >> ", R("log"), f" && echo out-{name}")


def durable_plan() -> CompiledPlan:
    return P(
        S("first", "shell.run", cmd=_effect("first")),
        S("pause", "std.sleep", seconds=0.3, value="p", after=["first"]),
        S("second", "shell.run", cmd=_effect("second"), after=["pause"]),
        S("long", "std.sleep", seconds=1.5, value="long-done", after=["second"]),
        S("third", "shell.run", cmd=_effect("third"), after=["long"]),
        S("side", "shell.run", cmd=_effect("side")),
        inputs={"log": "str"},
        name="durable",
        outputs={
            "first": R("first.output.stdout"),
            "second": R("second.output.stdout"),
            "third": R("third.output.stdout"),
            "side": R("side.output.stdout"),
            "long": R("long.output"),
        },
    )


def _write_plan(folder: Path, plan: CompiledPlan) -> Path:
    path = folder / "plan.json"
    path.write_text(plan.model_dump_json(indent=1))
    return path


def _effects(log: Path) -> list[str]:
    return sorted(log.read_text().split()) if log.exists() else []


def _finished_steps(journal: Path) -> set[str]:
    if not journal.exists():
        return set()
    conn = sqlite3.connect(journal)
    try:
        return {r[0] for r in conn.execute("SELECT step FROM steps")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def _kill_9_once(
    proc: subprocess.Popen[bytes],
    recorded: Callable[[], bool],
    *,
    within_s: float,
    never: str,
    poll_s: float,
) -> None:
    """SIGKILL `proc` as soon as `recorded()` holds; fails if it ends first, or if that
    takes longer than `within_s` (saying `never`)."""
    try:
        deadline = time.monotonic() + within_s
        while not recorded():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "it ended"
            assert time.monotonic() < deadline, never
            time.sleep(poll_s)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _only_run_id(cwd: Path, journal: Path) -> str:
    result = plait("runs", "--json", "--journal", str(journal), cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)
    return str(run["run_id"])


def test_kill_9_in_a_busy_fan_out_leaves_a_prefix_of_the_history_on_disk(tmp_path: Path) -> None:
    """The writer trails a busy run (its plain events queued as blocks, its finished steps
    as items of their own): killed in the middle, the journal holds events 1..N with no
    gap, and every step recorded as finished has its `step_finished` among them."""
    steps = "\n".join(f"  step s{i} = std.echo(value = root.output)" for i in range(6000))
    plan = tmp_path / "fan.agent"
    plan.write_text(f"plan fan {{\n  step root = std.echo(value = 1)\n{steps}\n}}\n")
    journal = tmp_path / "j.db"
    proc = subprocess.Popen(
        [*PLAIT, "run", str(plan), "--journal", str(journal), "--quiet", "--json"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _kill_9_once(
        proc,
        lambda: len(_finished_steps(journal)) >= 300,
        within_s=60,
        never="nothing was recorded",
        poll_s=0.005,
    )
    conn = sqlite3.connect(journal)
    try:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        ended = {
            r[0] for r in conn.execute("SELECT step FROM events WHERE event = 'step_finished'")
        }
        finished = {r[0] for r in conn.execute("SELECT step FROM steps")}
    finally:
        conn.close()
    assert seqs == list(range(1, len(seqs) + 1)), "a gap in the events on disk"
    assert finished <= ended and len(finished) >= 300
    assert len(seqs) < 4 * 6001 + 2, "the run was not killed in the middle"


def test_kill_9_then_resume_runs_each_effect_exactly_once(tmp_path: Path) -> None:
    plan_path = _write_plan(tmp_path, durable_plan())
    journal, log = tmp_path / "j.db", tmp_path / "effects.log"
    env = {**os.environ, "PLAIT_JOURNAL_BUSY_TIMEOUT": "2"}
    proc = subprocess.Popen(
        [
            *PLAIT,
            "run",
            str(plan_path),
            "--input",
            f"log={log}",
            "--journal",
            str(journal),
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _kill_9_once(  # once `second` is recorded: `long` is now sleeping
        proc,
        lambda: "second" in _finished_steps(journal),
        within_s=30,
        never="the run never got to `second`",
        poll_s=0.02,
    )
    assert _effects(log) == ["first", "second", "side"]
    run_id = _only_run_id(tmp_path, journal)
    listed = plait("runs", "--journal", str(journal), cwd=tmp_path)
    assert "unfinished" in listed.stdout

    resumed = plait("resume", run_id, "--journal", str(journal), "--json", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _effects(log) == ["first", "second", "side", "third"]  # each exactly once
    report = json.loads(resumed.stdout)
    assert report["run_id"] == run_id
    assert report["steps"]["first"]["status"] == "succeeded"
    assert report["steps"]["first"]["attempts"] == 1

    clean_log = tmp_path / "clean.log"
    clean = plait(
        "run",
        str(plan_path),
        "--input",
        f"log={clean_log}",
        "--journal",
        str(tmp_path / "clean.db"),
        "--json",
        "--quiet",
        cwd=tmp_path,
    )
    assert clean.returncode == 0, clean.stderr
    assert report["outputs"] == json.loads(clean.stdout)["outputs"]
    assert report["outputs"]["third"] == "out-third\n"
    assert _effects(clean_log) == ["first", "second", "side", "third"]

    shown = plait("show", run_id, "--journal", str(journal), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "outcome succeeded" in shown.stdout and "sessions 2" in shown.stdout
    for step in ("first", "pause", "second", "long", "third", "side"):
        assert step in shown.stdout


def test_resume_of_a_run_still_going_is_refused_until_it_ends(tmp_path: Path) -> None:
    """Two processes never run one recorded run: the second would repeat its effects."""
    plan = durable_plan()
    # `long` lasts until the test releases it (at most 60 s), so the run is still going
    # when the resume asks, however slowly `plait` starts on a loaded machine
    release = tmp_path / "release"
    plan.steps["long"] = S(
        "long",
        "shell.run",
        after=["second"],
        cmd=f"for i in $(seq 600); do [ -f '{release}' ] && exit 0; sleep 0.1; done; exit 1",
    )
    plan_path = _write_plan(tmp_path, plan)
    journal, log = tmp_path / "j.db", tmp_path / "effects.log"
    proc = subprocess.Popen(
        [
            *PLAIT,
            "run",
            str(plan_path),
            "--input",
            f"log={log}",
            "--journal",
            str(journal),
            "--quiet",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while "second" not in _finished_steps(journal):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run never got to `second`"
            time.sleep(0.02)
        run_id = _only_run_id(tmp_path, journal)
        refused = plait("resume", run_id, "--journal", str(journal), "--quiet", cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert f"run {run_id} is in progress in another process (pid {proc.pid})" in (
            refused.stderr
        )
        assert "Traceback" not in refused.stderr
    finally:
        release.touch()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert _effects(log) == ["first", "second", "side", "third"]  # nothing ran twice
    again = plait("resume", run_id, "--journal", str(journal), "--json", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the lock went with the first process
    assert _effects(log) == ["first", "second", "side", "third"]  # all kept, none re-run


def test_resume_refuses_a_changed_plan_unless_forced(tmp_path: Path) -> None:
    # the deadline cancels `b`: the run did not finish on its own, so it can be resumed
    plan = P(
        S("a", "std.echo", value=1), S("b", "std.sleep", seconds=30), name="small", deadline_s=1.0
    )
    plan_path = _write_plan(tmp_path, plan)
    journal = tmp_path / "j.db"
    first = plait("run", str(plan_path), "--journal", str(journal), "--quiet", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    run_id = _only_run_id(tmp_path, journal)
    plan_path.write_text(plan.model_dump_json(indent=2))  # same plan, other bytes
    refused = plait("resume", run_id, "--journal", str(journal), "--quiet", cwd=tmp_path)
    assert refused.returncode == 2
    assert "changed since run" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    forced = plait("resume", run_id, "--force", "--journal", str(journal), "--quiet", cwd=tmp_path)
    assert forced.returncode == 1  # `b` runs again, and the deadline cancels it again
    unknown = plait("resume", "nope", "--journal", str(journal), cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown run 'nope'" in unknown.stderr


class _StepRows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.svgs = 0
        self.external: list[str] = []
        self.failures = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-status"):
            self.rows[str(a["data-step"])] = str(a["data-status"])
        if tag == "svg":
            self.svgs += 1
        if tag in ("script", "link", "img") or (a.get("src") or "").startswith("http"):
            self.external.append(tag)
        if tag == "table" and a.get("id") == "failures":
            self.failures += 1


def _mixed_plan() -> CompiledPlan:
    return P(
        S("ok", "std.echo", value="fine"),
        S("flaky", "std.flaky", fail_times=1, value="ok", retry=retry(2, 0.05)),
        S("broken", "std.fail", message="it broke", kind="permanent", optional=True),
        S("rescued", "std.fail", message="no", fallback=["rescuer"]),
        S("rescuer", "std.echo", value="saved"),
        S("never", "std.echo", value=1, condition=False),
        name="mixed",
    )


def _mixed_run(tmp_path: Path) -> tuple[Path, Path, str]:
    """The mixed plan recorded in-process (the commands under test run as subprocesses)."""
    from plait.runtime.journal import Journal

    plan_path = _write_plan(tmp_path, _mixed_plan())
    journal = tmp_path / "j.db"
    _record_in_process(plan_path, journal)
    with Journal.open(journal, create=False) as j:
        (run,) = j.list_runs()
    return plan_path, journal, run.run_id


@NEEDS_DOT
def test_html_report_shows_every_step_with_its_status(tmp_path: Path) -> None:
    _plan, journal, run_id = _mixed_run(tmp_path)
    out = tmp_path / "run.html"
    made = plait("report", run_id, "-o", str(out), "--journal", str(journal), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    page = _StepRows()
    page.feed(out.read_text())
    assert page.rows == {
        "ok": "succeeded",
        "flaky": "succeeded",
        "broken": "failed",
        "rescued": "recovered",
        "rescuer": "succeeded",
        "never": "skipped",
    }
    assert page.svgs >= 2  # the coloured graph and the timeline
    assert page.external == []
    assert page.failures == 1
    text = out.read_text()
    assert "it broke" in text and "backoff" in text


def test_html_report_without_graphviz_degrades_to_a_note(tmp_path: Path) -> None:
    _plan, journal, run_id = _mixed_run(tmp_path)
    out = tmp_path / "run.html"
    made = plait(
        "report",
        run_id,
        "-o",
        str(out),
        "--journal",
        str(journal),
        cwd=tmp_path,
        env={"PATH": str(tmp_path / "no-bin")},
    )
    assert made.returncode == 0, made.stderr
    page = _StepRows()
    page.feed(out.read_text())
    assert page.svgs == 1  # the timeline only
    assert "No graph" in out.read_text() and "Graphviz" in out.read_text()
    assert len(page.rows) == 6


def test_show_graph_and_json_metrics(tmp_path: Path) -> None:
    plan_path, journal, run_id = _mixed_run(tmp_path)
    shown = plait("show", run_id[:6], "--journal", str(journal), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "recovered" in shown.stdout and "retries 1" in shown.stdout
    assert "fallbacks used 1" in shown.stdout
    as_json = json.loads(
        plait("show", run_id, "--json", "--journal", str(journal), cwd=tmp_path).stdout
    )
    assert as_json["metrics"]["steps"]["flaky"]["attempts"] == 2
    assert as_json["metrics"]["steps"]["flaky"]["backoff_s"] >= 0.05
    dot = plait("graph", str(plan_path), "--run", run_id, "--journal", str(journal), cwd=tmp_path)
    assert dot.returncode == 0, dot.stderr
    assert "#FEE2E2" in dot.stdout and "#FEF3C7" in dot.stdout  # failed red, recovered amber
    assert "2 attempts" in dot.stdout
    missing = plait("show", "zzz", "--journal", str(journal), cwd=tmp_path)
    assert missing.returncode == 2 and "unknown run" in missing.stderr


def test_trace_console_prints_spans(tmp_path: Path) -> None:
    plan_path = _write_plan(tmp_path, _mixed_plan())
    result = plait(
        "run",
        str(plan_path),
        "--journal",
        str(tmp_path / "j.db"),
        "--quiet",
        "--trace",
        "console",
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr  # degraded
    assert "invoke_workflow mixed" in result.stderr
    assert "execute_tool std.flaky" in result.stderr


def _record_in_process(plan_path: Path, journal_path: Path) -> None:
    """One run recorded in a journal, without the cost of a subprocess."""
    import asyncio

    from plait.runtime.api import Runner, load_plan
    from plait.runtime.journal import Journal
    from plait.runtime.resume import attach_journal

    plan = load_plan(plan_path)
    with Journal.open(journal_path) as journal:
        runner = Runner(plan, {}, environ={})
        attach_journal(runner, journal, plan, plan_path)
        asyncio.run(runner.run())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["corrupt", "newer", "locked"])
def test_bad_journal_is_a_clear_error_and_keeps_records(tmp_path: Path, damage: str) -> None:
    plan_path = _write_plan(tmp_path, P(S("a", "std.echo", value=1), name="tiny"))
    journal = tmp_path / "j.db"
    _record_in_process(plan_path, journal)
    holder = None
    if damage == "corrupt":
        journal.write_bytes(b"garbage " * 512)
        for extra in ("-wal", "-shm"):
            Path(f"{journal}{extra}").unlink(missing_ok=True)
    elif damage == "newer":
        conn = sqlite3.connect(journal)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
    else:
        holder = sqlite3.connect(journal, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    before = _digest(journal)
    try:
        commands = [["run", str(plan_path), "--quiet"], ["show", "x"]]
        if damage == "locked":
            commands = commands[:1]  # WAL: readers are not blocked by a writer
        for args in commands:
            result = plait(*args, "--journal", str(journal), cwd=tmp_path)
            assert result.returncode == 2, (args, result.stderr)
            assert "Traceback" not in result.stderr
            assert {"corrupt": "corrupt", "newer": "newer plait", "locked": "locked"}[
                damage
            ] in result.stderr
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert _digest(journal) == before
    if damage == "locked":
        assert (
            len(json.loads(plait("runs", "--json", "--journal", str(journal), cwd=tmp_path).stdout))
            == 1
        )


def test_runs_without_a_journal_and_plait_home(tmp_path: Path) -> None:
    empty = plait("runs", cwd=tmp_path, env={"PLAIT_HOME": str(tmp_path / "nothing-here")})
    assert empty.returncode == 0 and "no runs recorded" in empty.stderr
    plan_path = _write_plan(tmp_path, P(S("a", "std.echo", value=1), name="homed"))
    home = tmp_path / "home"
    ran = plait("run", str(plan_path), "--quiet", cwd=tmp_path, env={"PLAIT_HOME": str(home)})
    assert ran.returncode == 0, ran.stderr
    assert (home / "journal.db").exists() and not (tmp_path / ".plait").exists()
    listed = plait("runs", cwd=tmp_path, env={"PLAIT_HOME": str(home)})
    assert "homed" in listed.stdout and "succeeded" in listed.stdout


TOOLS = '''
import os
import time

import plait


@plait.tool
def mark(log: str, name: str) -> str:
    """Append `name` to the log: the side effect a resume must not repeat."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(name + "\\n")
    return f"marked-{name}"


@plait.tool
def wait_for(path: str) -> str:
    """Block until `path` exists."""
    while not os.path.exists(path):
        time.sleep(0.02)
    return "released"
'''

AGENT = """
plan interrupted "Ctrl-C in the middle, then resume" {
  use "./tools.py"
  input log: str
  input gate: str
  step one = tools.mark(log = log, name = "one")
  step hold = tools.wait_for(path = gate) { after one }
  step two = tools.mark(log = log, name = "two") { after hold }
  output one = one.output
  output two = two.output
}
"""


def test_ctrl_c_then_resume_with_a_used_python_tool(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "plan.agent").write_text(AGENT)
    journal, log, gate = tmp_path / "j.db", tmp_path / "marks.log", tmp_path / "gate"
    proc = subprocess.Popen(
        [
            *PLAIT,
            "run",
            "plan.agent",
            "--input",
            f"log={log}",
            "--input",
            f"gate={gate}",
            "--journal",
            str(journal),
            "--quiet",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "one" not in _finished_steps(journal):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never finished `one`"
            time.sleep(0.02)
        time.sleep(0.2)  # `hold` is waiting now
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    run_id = _only_run_id(tmp_path, journal)
    gate.write_text("open")
    resumed = plait("resume", run_id, "--journal", str(journal), "--json", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert log.read_text().split() == ["one", "two"]
    report = json.loads(resumed.stdout)
    assert report["outputs"] == {"one": "marked-one", "two": "marked-two"}
    assert report["steps"]["hold"]["status"] == "succeeded"
