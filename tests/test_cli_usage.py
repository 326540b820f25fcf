"""LLM token usage and the model, in the report JSON, `plait show` and the HTML report
(issue #11), from a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers import FakeLLM

PLAN = """plan ask {
  step first = llm.chat(prompt = "say hi")
  step second = llm.chat(prompt = "say bye", model = "m-explicit")
  step plain = std.echo(value = 1)
  output a = first.output
}
"""


def plait(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_usage_in_report_show_and_html(tmp_path: Path) -> None:
    plan = tmp_path / "ask.agent"
    plan.write_text(PLAN)
    journal = tmp_path / "j.db"
    with FakeLLM(reply="hello there friend") as llm:
        env = {"PLAIT_LLM_BASE_URL": llm.url("/v1"), "PLAIT_LLM_MODEL": "m-env"}
        run = plait("run", plan, "--json", "-q", "--journal", journal, cwd=tmp_path, env=env)
        bodies = [r.body for r in llm.requests]
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    completion = len("hello there friend") // 4
    first, second = report["steps"]["first"]["usage"], report["steps"]["second"]["usage"]
    assert first["model"] == "m-env" and second["model"] == "m-explicit"
    assert first["requests"] == second["requests"] == 1
    assert first["completion_tokens"] == second["completion_tokens"] == completion
    sent = {b["model"]: len(json.dumps(b["messages"])) // 4 for b in bodies}
    assert first["prompt_tokens"] == sent["m-env"]
    assert first["total_tokens"] == first["prompt_tokens"] + completion
    assert "usage" not in report["steps"]["plain"]
    assert report["usage"]["total_tokens"] == first["total_tokens"] + second["total_tokens"]
    assert report["usage"]["requests"] == 2

    run_id = report["run_id"]
    shown = plait("show", run_id, "--journal", journal, cwd=tmp_path, env={})
    assert shown.returncode == 0, shown.stderr
    assert (
        f"llm first: model m-env, 1 request(s), tokens {first['prompt_tokens']} prompt + "
        f"{completion} completion = {first['total_tokens']}"
    ) in shown.stdout
    assert "llm total: model m-env, m-explicit, 2 request(s)" in shown.stdout
    shown_json = json.loads(
        plait("show", run_id, "--json", "--journal", journal, cwd=tmp_path, env={}).stdout
    )
    assert shown_json["usage"] == report["usage"]

    page = tmp_path / "run.html"
    made = plait("report", run_id, "-o", page, "--journal", journal, cwd=tmp_path, env={})
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert '<table id="usage">' in html and "m-explicit" in html
    assert f"<td>{report['usage']['total_tokens']}</td>" in html
