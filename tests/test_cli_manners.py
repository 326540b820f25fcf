"""The command line's manners (issue #11): stdout carries the answer, stderr the rest; how to
continue after Ctrl-C; what `runs` and `show` call interrupted and killed runs; resuming a
finished run; pruning the journal; examples in every command's --help. Real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLAIT = [sys.executable, "-m", "plait"]
pytestmark = pytest.mark.timeout(90)

ANSWERS = """plan answers {
  step text = std.echo(value = "line one\\nline two")
  step data = std.echo(value = {n: 1, tags: ["a"]})
  output text = text.output
  output data = data.output
  output nothing = data.output?.missing
}
"""

SLOW = """plan slow {
  step a = std.echo(value = "A")
  step b = std.sleep(seconds = 30, value = "B") { after a }
  step c = std.echo(value = "C") { after b }
  output o = c.output
}
"""


def plait(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("PLAIT_HOME", None)  # these tests pass --journal, or use cwd's .plait
    return subprocess.run(
        [*PLAIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def write(folder: Path, text: str, name: str = "plan.agent") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- stdout: the outputs; stderr: progress and the summary ----------------------------------


def test_redirected_stdout_keeps_the_answer(tmp_path: Path) -> None:
    plan = write(tmp_path, ANSWERS)
    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        proc = subprocess.run(
            [*PLAIT, "run", str(plan), "--journal", str(tmp_path / "j.db")],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (
        'text = line one\nline two\ndata = {"n":1,"tags":["a"]}\nnothing = null\n'
    )
    assert "answers: succeeded in" in proc.stderr and "text: started" in proc.stderr


@pytest.mark.parametrize(
    ("name", "stdout"),
    [
        ("text", "line one\nline two\n"),  # a string raw
        ("data", '{"n":1,"tags":["a"]}\n'),  # any other value as JSON
        ("nothing", "null\n"),
    ],
)
def test_output_prints_one_raw_value(tmp_path: Path, name: str, stdout: str) -> None:
    plan = write(tmp_path, ANSWERS)
    proc = plait("run", plan, "--output", name, "-q", "--journal", tmp_path / "j.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == stdout


def test_output_of_an_unknown_name_exits_2_before_running(tmp_path: Path) -> None:
    plan = write(tmp_path, ANSWERS)
    proc = plait("run", plan, "--output", "txt", "--journal", tmp_path / "j.db", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: plan answers has no output `txt`; did you mean `text`?\n"
    assert not (tmp_path / "j.db").exists()  # nothing ran


def test_json_and_output_together_exit_2(tmp_path: Path) -> None:
    plan = write(tmp_path, ANSWERS)
    proc = plait("run", plan, "--output", "text", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and "give one" in proc.stderr


def test_json_puts_only_the_report_on_stdout(tmp_path: Path) -> None:
    plan = write(tmp_path, ANSWERS)
    proc = plait("run", plan, "--json", "--journal", tmp_path / "j.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"]["data"] == {"n": 1, "tags": ["a"]}


# --- interrupted and killed runs -----------------------------------------------------------


def _start(tmp_path: Path, journal: Path) -> subprocess.Popen[str]:
    plan = write(tmp_path, SLOW)
    events = tmp_path / "events.jsonl"
    env = {**os.environ}
    env.pop("PLAIT_HOME", None)
    proc = subprocess.Popen(
        [*PLAIT, "run", str(plan), "--journal", str(journal), "--events", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    deadline = time.monotonic() + 30
    while '"step": "b"' not in (events.read_text() if events.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, "b never started"
        time.sleep(0.05)
    time.sleep(0.3)
    return proc


def _run_id(tmp_path: Path, journal: Path) -> str:
    listed = plait("runs", "--json", "--journal", journal, cwd=tmp_path)
    return str(json.loads(listed.stdout)[0]["run_id"])


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_after_a_signal_the_last_line_says_how_to_resume(
    tmp_path: Path, signum: int, code: int
) -> None:
    journal = tmp_path / "j.db"
    proc = _start(tmp_path, journal)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    run_id = _run_id(tmp_path, journal)
    assert err.rstrip("\n").splitlines()[-1] == (
        f"interrupted; to continue: plait resume {run_id} --journal {journal}"
    )
    listed = plait("runs", "--journal", journal, cwd=tmp_path)
    assert listed.stdout.splitlines()[1].split()[:3] == [run_id, "slow", "interrupted"]
    as_json = json.loads(plait("runs", "--json", "--journal", journal, cwd=tmp_path).stdout)
    assert as_json[0]["status"] == "interrupted" and as_json[0]["outcome"] == "failed"
    shown = plait("show", run_id, "--journal", journal, cwd=tmp_path)
    assert f"run {run_id}  plan slow  outcome interrupted (failed)" in shown.stdout


def test_a_killed_run_and_its_running_step_show_as_unfinished(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    proc = _start(tmp_path, journal)
    proc.kill()
    proc.communicate(timeout=30)
    run_id = _run_id(tmp_path, journal)
    listed = plait("runs", "--journal", journal, cwd=tmp_path)
    assert listed.stdout.splitlines()[1].split()[:3] == [run_id, "slow", "unfinished"]
    shown = plait("show", run_id, "--journal", journal, cwd=tmp_path)
    rows = {
        line.split()[0]: line.split()[1]
        for line in shown.stdout.splitlines()
        if line.split() and line.split()[0] in ("a", "b", "c")
    }
    assert rows == {"a": "succeeded", "b": "unfinished", "c": "pending"}
    assert "running" not in shown.stdout
    report = json.loads(plait("show", run_id, "--json", "--journal", journal, cwd=tmp_path).stdout)
    assert report["steps"]["b"]["status"] == "unfinished"


def test_a_run_still_going_shows_as_running(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    proc = _start(tmp_path, journal)
    try:
        listed = json.loads(plait("runs", "--json", "--journal", journal, cwd=tmp_path).stdout)
        assert listed[0]["status"] == "running"
        shown = plait("show", listed[0]["run_id"], "--journal", journal, cwd=tmp_path)
        assert "b     running" in shown.stdout
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def _sessions(journal: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(journal) as conn:
        return list(conn.execute("SELECT run_id, sessions FROM runs"))


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path: Path) -> None:
    plan = write(tmp_path, ANSWERS)
    journal = tmp_path / "j.db"
    first = plait("run", plan, "--journal", journal, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = _run_id(tmp_path, journal)
    before = _sessions(journal)
    again = plait("resume", run_id, "--journal", journal, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stderr == (
        f"run {run_id} already finished (succeeded); nothing to resume "
        f"(`plait show {run_id}` shows it)\n"
    )
    assert again.stdout == ""
    assert _sessions(journal) == before == [(run_id, 1)]
    as_json = plait("resume", run_id[:8], "--json", "--journal", journal, cwd=tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["run_id"] == run_id
    assert _sessions(journal) == before


def test_resume_of_an_interrupted_run_finishes_it(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    proc = _start(tmp_path, journal)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    run_id = _run_id(tmp_path, journal)
    (tmp_path / "plan.agent").write_text(SLOW.replace("seconds = 30", "seconds = 0.1"))
    resumed = plait(
        "resume", run_id, "--force", "--output", "o", "-q", "--journal", journal, cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "C\n"
    listed = json.loads(plait("runs", "--json", "--journal", journal, cwd=tmp_path).stdout)
    assert listed[0]["status"] == "succeeded"


# --- pruning -----------------------------------------------------------------------------


def _age_runs(journal: Path, days: list[int]) -> list[str]:
    """Backdate the recorded runs, newest first, by the given numbers of days."""
    with sqlite3.connect(journal) as conn:
        ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY rowid DESC")]
        for run_id, age in zip(ids, days, strict=True):
            conn.execute(
                "UPDATE runs SET started_at = datetime('now', ?) || '+00:00' WHERE run_id = ?",
                (f"-{age} days", run_id),
            )
    return ids


def _listed(tmp_path: Path, journal: Path) -> list[str]:
    out = plait("runs", "-n", "0", "--json", "--journal", journal, cwd=tmp_path).stdout
    return [r["run_id"] for r in json.loads(out)]


def test_prune_older_than_and_keep(tmp_path: Path) -> None:
    plan = write(tmp_path, "plan tiny {\n  step a = std.echo(value = 1)\n}\n")
    journal = tmp_path / "j.db"
    for _ in range(4):
        assert plait("run", plan, "-q", "--journal", journal, cwd=tmp_path).returncode == 0
    ids = _age_runs(journal, [0, 3, 10, 20])  # newest first
    old = plait("runs", "--prune", "--older-than", "7d", "--journal", journal, cwd=tmp_path)
    assert old.returncode == 0, old.stderr
    assert old.stderr == f"pruned 2 runs from {journal}\n"
    assert _listed(tmp_path, journal) == ids[:2]
    with sqlite3.connect(journal) as conn:  # nothing of the pruned runs is left
        for table in ("events", "steps", "sessions", "plans"):
            left = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id IN (?, ?)", ids[2:]
            ).fetchone()[0]
            assert left == 0, table
    kept = plait("runs", "--prune", "--keep", "1", "--journal", journal, cwd=tmp_path)
    assert kept.stderr == f"pruned 1 run from {journal}\n"
    assert _listed(tmp_path, journal) == ids[:1]


def test_prune_keep_protects_the_most_recent_old_runs(tmp_path: Path) -> None:
    plan = write(tmp_path, "plan tiny {\n  step a = std.echo(value = 1)\n}\n")
    journal = tmp_path / "j.db"
    for _ in range(3):
        assert plait("run", plan, "-q", "--journal", journal, cwd=tmp_path).returncode == 0
    ids = _age_runs(journal, [8, 9, 10])
    plait(
        "runs", "--prune", "--older-than", "7d", "--keep", "2", "--journal", journal, cwd=tmp_path
    )
    assert _listed(tmp_path, journal) == ids[:2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune"], "--prune needs --older-than AGE, --keep N or both"),
        (["--prune", "--older-than", "7 days"], "--older-than takes an age like 30m, 12h, 7d"),
        (["--keep", "3"], "--older-than and --keep choose what --prune deletes; add --prune"),
        (["--prune", "--keep", "-1"], "--keep takes a count of runs"),
    ],
)
def test_prune_mistakes_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    plan = write(tmp_path, "plan tiny {\n  step a = std.echo(value = 1)\n}\n")
    journal = tmp_path / "j.db"
    plait("run", plan, "-q", "--journal", journal, cwd=tmp_path)
    proc = plait("runs", *args, "--journal", journal, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(_listed(tmp_path, journal)) == 1


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["resume", "runs", "show", "report", "run", "check"])
def test_every_command_help_has_examples(tmp_path: Path, command: str) -> None:
    proc = plait(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0
    examples = proc.stdout.split("Examples:", 1)[1]
    assert f"plait {command} " in examples


def test_runs_help_says_where_the_journal_lives(tmp_path: Path) -> None:
    text = " ".join(plait("runs", "--help", cwd=tmp_path).stdout.split())
    assert ".plait/journal.db" in text and "PLAIT_HOME" in text


# --- small things ----------------------------------------------------------------------------


def test_check_of_a_missing_file_in_json_is_a_json_diagnostic(tmp_path: Path) -> None:
    proc = plait("check", "missing.agent", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 2
    [d] = json.loads(proc.stdout)
    assert (d["path"], d["line"], d["code"], d["severity"]) == (
        "missing.agent",
        None,
        "E116",
        "error",
    )
    assert d["message"] == "no such plan file: missing.agent"


def test_tool_descriptions_are_whole_sentences(tmp_path: Path) -> None:
    proc = plait("tools", "std.flaky", cwd=tmp_path)
    assert proc.returncode == 0
    description = proc.stdout.splitlines()[1].strip()
    assert description == (
        "Fail the first `fail_times` attempts in a run (per step, and per "
        "map element), then return `value`."
    )


TOOLS = """import plait


def helper(x):
    return 10 / x


@plait.tool
def divide(x: int) -> float:
    return helper(x)
"""


def test_a_tools_own_error_says_where_and_debug_prints_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    plan = write(tmp_path, 'plan t {\n  use "./tools.py"\n  step d = tools.divide(x = 0)\n}\n')
    proc = plait("run", plan, "--json", "-q", "--no-journal", cwd=tmp_path)
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["steps"]["d"]["error"]
    assert error["kind"] == "tool_error"
    assert error["message"] == "ZeroDivisionError: division by zero (at tools.py:5 in helper)"
    assert "Traceback" not in proc.stderr
    env_debug = {**os.environ, "PLAIT_DEBUG": "1"}
    env_debug.pop("PLAIT_HOME", None)
    debug = subprocess.run(
        [*PLAIT, "run", str(plan), "-q", "--no-journal"],
        cwd=tmp_path,
        env=env_debug,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'tools.py", line 5, in helper' in debug.stderr
