"""The journal is an observer: a journal that fails mid-run never loses the run, and a
damaged one is a one-line exit 2 (issue #9). Also the reading commands on odd runs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.robust_helpers import PLAIT, plait

pytestmark = pytest.mark.timeout(90)


def _run_id(folder: Path) -> str:
    return str(json.loads(plait("runs", "--json", cwd=folder).stdout)[0]["run_id"])


def test_a_journal_locked_mid_run_does_not_lose_the_run(tmp_path: Path) -> None:
    plan = tmp_path / "p.agent"
    plan.write_text(
        "plan p {\n  step a = std.sleep(seconds = 1.5, value = 1)\n"
        "  step b = std.echo(value = a.output)\n  output b = b.output\n}\n"
    )
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [PLAIT, "run", str(plan), "--json", "--events", str(events)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PLAIT_HOME": str(tmp_path), "PLAIT_JOURNAL_BUSY_TIMEOUT": "0.2"},
    )
    end = time.monotonic() + 30
    while time.monotonic() < end and '"step_started"' not in (
        events.read_text() if events.exists() else ""
    ):
        time.sleep(0.05)
    holder = sqlite3.connect(tmp_path / "journal.db", isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["outcome"] == "succeeded" and report["outputs"] == {"b": 1}
    assert [w["kind"] for w in report["warnings"]] == ["journal_failed"]
    assert "warning:" in err and "locked" in err and "Traceback" not in err
    # what was recorded before the failure is still readable
    listed = plait("runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["run_id"] == report["run_id"]


def test_a_damaged_record_is_a_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "p.agent").write_text("plan p {\n  step a = std.echo(value = 1)\n}\n")
    assert plait("run", "p.agent", "-q", cwd=tmp_path).returncode == 0
    rid = _run_id(tmp_path)
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute("UPDATE events SET data = '{not json' WHERE seq = 2")
    db.commit()
    db.close()
    for args in (
        ["show", rid],
        ["report", rid, "-o", "r.html"],
        ["graph", "p.agent", "--run", rid],
    ):
        p = plait(*args, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "is damaged" in lines[0] and "move it aside" in lines[0]


def test_report_of_a_run_whose_output_failed(tmp_path: Path) -> None:
    (tmp_path / "p.agent").write_text(
        "plan p {\n  step a = std.echo(value = {x: 1})\n  output bad = a.output.y\n}\n"
    )
    assert plait("run", "p.agent", "-q", cwd=tmp_path).returncode == 0
    rid = _run_id(tmp_path)
    p = plait("report", rid, "-o", "r.html", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "r.html").read_text()
    assert "output bad" in page and "no key" in page


def test_graph_of_a_run_of_another_plan_exits_2(tmp_path: Path) -> None:
    (tmp_path / "p.agent").write_text("plan p {\n  step a = std.echo(value = 1)\n}\n")
    (tmp_path / "q.agent").write_text("plan q {\n  step z = std.echo(value = 1)\n}\n")
    assert plait("run", "p.agent", "-q", cwd=tmp_path).returncode == 0
    rid = _run_id(tmp_path)
    ok = plait("graph", "p.agent", "--run", rid, cwd=tmp_path)
    assert ok.returncode == 0 and "succeeded" in ok.stdout
    other = plait("graph", "q.agent", "--run", rid, cwd=tmp_path)
    assert other.returncode == 2 and "plan `p`, not of `q`" in other.stderr


def test_an_attempt_refused_by_an_open_breaker_has_no_call_time(tmp_path: Path) -> None:
    (tmp_path / "p.agent").write_text("""plan p {
  resource api { breaker after 1 failures cooldown 1m }
  step a = std.sleep(seconds = 0.3) { uses api
    timeout 100ms }
  step b = std.sleep(seconds = 0.3) { uses api
    after a
    when all_done }
}
""")
    p = plait("run", "p.agent", "-q", "--json", cwd=tmp_path)
    report = json.loads(p.stdout)
    b = report["steps"]["b"]
    assert b["error"]["kind"] == "breaker_open" and b["attempts"] == 1
    assert b["attempt_log"][0]["duration_s"] == 0.0
    assert report["metrics"]["steps"]["b"]["call_s"] == 0.0


ELEMENT_TOOLS = """
import os, time
import plait

@plait.tool(name="side.effect")
def effect(folder: str, item: int) -> int:
    with open(os.path.join(folder, "calls"), "a") as f:
        f.write(f"{item} ")
    if item == 3 and not os.path.exists(os.path.join(folder, "resumed")):
        time.sleep(60)  # killed here on the first run
    return item * 10
"""


def test_resume_keeps_finished_map_elements(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(ELEMENT_TOOLS)
    (tmp_path / "p.agent").write_text(f'''plan p {{
  use "./tools.py"
  step m = for i in [0, 1, 2, 3, 4, 5]: side.effect(folder = "{tmp_path}", item = i) {{
    concurrency 1
  }}
  output m = m.output
}}
''')
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [PLAIT, "run", "p.agent", "-q", "--events", str(events)],
        cwd=tmp_path,
        env={**os.environ, "PLAIT_HOME": str(tmp_path)},
    )
    calls = tmp_path / "calls"
    end = time.monotonic() + 30
    while time.monotonic() < end and not (calls.exists() and "3" in calls.read_text().split()):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait(10)
    assert (tmp_path / "calls").read_text().split() == ["0", "1", "2", "3"]
    (tmp_path / "resumed").write_text("")
    rid = _run_id(tmp_path)
    p = plait("resume", rid, "--json", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["outputs"]["m"] == [0, 10, 20, 30, 40, 50]
    # elements 0-2 finished before the kill and were kept; 3 (running) ran again
    assert (tmp_path / "calls").read_text().split() == ["0", "1", "2", "3", "3", "4", "5"]
    assert report["steps"]["m"]["attempts"] == 6


@pytest.mark.parametrize("size", [5, 100])
def test_html_timeline_has_a_row_per_element_and_failures_show(tmp_path: Path, size: int) -> None:
    import re

    (tmp_path / "p.agent").write_text(f"""plan p {{
  input n: list = {list(range(size))}
  step m = for i in n: std.sleep(seconds = 0.01, value = i) {{
    optional
    concurrency 4
  }}
  step f = for i in n: std.fail(message = "boom ${{i}}") {{
    optional
    concurrency 50
    tolerate 100%
  }}
}}
""")
    assert plait("run", "p.agent", "-q", cwd=tmp_path).returncode == 3
    rid = _run_id(tmp_path)
    assert plait("report", rid, "-o", "r.html", cwd=tmp_path).returncode == 0
    page = (tmp_path / "r.html").read_text()
    svg = page[page.index('<svg id="timeline"') :]
    svg = svg[: svg.index("</svg>")]
    labels = re.findall(r'font-size="12">([^<]+)</text>', svg)
    if size == 5:
        assert labels == [f"m[{i}]" for i in range(5)] + [f"f[{i}]" for i in range(5)]
    else:
        assert len(labels) <= 80 and labels[0] == "m[0-2]" and labels[-1] == "f[99]"
    failed = svg.index('class="attempt failed"')
    assert failed > svg.rindex('class="attempt succeeded"')  # drawn on top
    assert svg.count('class="attempt failed"') == size
