"""`plait run` in a subprocess against real local servers: timeouts, retries that honour
Retry-After, the breaker, fallbacks, the scripted LLM and the fake OpenAI server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import FakeLLM, TestServer

PLAIT = str(Path(sys.executable).with_name("plait"))
LLM_VARS = ("PLAIT_LLM_BASE_URL", "PLAIT_LLM_API_KEY", "PLAIT_LLM_MODEL", "PLAIT_LLM_PROVIDER")


@dataclass
class Run:
    code: int
    report: dict[str, Any]
    events: list[dict[str, Any]]
    stderr: str
    seconds: float

    def step(self, name: str) -> dict[str, Any]:
        return self.report["steps"][name]  # type: ignore[no-any-return]

    def of(self, event: str, step: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["event"] == event and (step is None or e.get("step") == step)]


@pytest.fixture
def plait_run(tmp_path: Path) -> Iterator[Any]:
    def run(plan: str, *args: str, env: dict[str, str] | None = None,
            files: dict[str, str] | None = None) -> Run:
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        plan_file = tmp_path / "plan.agent"
        plan_file.write_text(plan)
        events = tmp_path / "events.jsonl"
        base_env = {k: v for k, v in os.environ.items() if k not in LLM_VARS}
        started = time.monotonic()
        proc = subprocess.run(
            [PLAIT, "run", str(plan_file), "--json", "--quiet", "--events", str(events), *args],
            capture_output=True, text=True, timeout=90, cwd=tmp_path,
            env={**base_env, "PLAIT_HOME": str(tmp_path), **(env or {})})
        seconds = time.monotonic() - started
        assert proc.stdout.strip(), f"no report (exit {proc.returncode}): {proc.stderr}"
        lines = events.read_text().splitlines() if events.exists() else []
        return Run(proc.returncode, json.loads(proc.stdout), [json.loads(x) for x in lines],
                   proc.stderr, seconds)

    yield run


def test_http_timeout_degrades_an_optional_step(plait_run: Any, server: TestServer) -> None:
    run = plait_run(f'''
plan t {{
  step slow = http.get(url = "{server.url('/slow?s=20')}") {{
    optional
    timeout 300ms
  }}
  step fast = http.get(url = "{server.url('/json')}")
  output got = fast.output.body.path
}}
''')
    assert run.code == 3, run.stderr
    assert run.report["outcome"] == "degraded"
    assert run.step("slow")["status"] == "failed"
    assert run.step("slow")["error"]["kind"] == "timeout"
    assert run.report["outputs"] == {"got": "/json"}
    assert run.seconds < 15


def test_retry_waits_at_least_retry_after(plait_run: Any, server: TestServer) -> None:
    url = server.url("/flaky/a?fail=1&code=429&retry_after=1")
    run = plait_run(f'''
plan t {{
  step call = http.get(url = "{url}") {{
    retry 2 backoff 10ms
  }}
  output ok = call.output.body.ok
}}
''')
    assert run.code == 0, run.stderr
    assert run.step("call")["status"] == "succeeded"
    assert run.step("call")["attempts"] == 2
    [scheduled] = run.of("retry_scheduled", "call")
    assert scheduled["hint_s"] == 1 and scheduled["delay_s"] >= 1
    assert run.step("call")["attempt_log"][0]["kind"] == "rate_limited"
    assert server.count("/flaky/a") == 2
    assert run.report["outputs"] == {"ok": True}


def test_5xx_is_retried_then_exhausted(plait_run: Any, server: TestServer) -> None:
    run = plait_run(f'''
plan t {{
  step call = http.get(url = "{server.url('/status/502')}") {{
    retry 2 backoff 10ms
  }}
}}
''')
    assert run.code == 1
    error = run.step("call")["error"]
    assert error["kind"] == "transient" and error["retry"] == "exhausted"
    assert "HTTP 502" in error["message"]
    assert server.count("/status/502") == 3


def test_4xx_is_not_retried_and_the_fallback_answers(plait_run: Any,
                                                     server: TestServer) -> None:
    run = plait_run(f'''
plan t {{
  step primary = http.get(url = "{server.url('/status/404')}") {{
    retry 3 backoff 10ms
    fallback backup
  }}
  step backup = http.get(url = "{server.url('/json')}")
  output path = primary.output.body.path
}}
''')
    assert run.code == 3, run.stderr
    primary = run.step("primary")
    assert primary["status"] == "recovered" and primary["fallback_used"] == "backup"
    assert primary["attempts"] == 1 and primary["error"]["kind"] == "permanent"
    assert primary["error"]["retry"] == "not_retryable"
    assert run.report["outputs"] == {"path": "/json"}
    assert server.count("/status/404") == 1


def test_breaker_stops_calling_a_dead_service(plait_run: Any, server: TestServer) -> None:
    dead = server.url("/status/500")
    run = plait_run(f'''
plan t {{
  resource api {{
    breaker after 2 failures cooldown 30s
  }}
  step calls = for i in [1, 2, 3, 4, 5]: http.get(url = "{dead}", params = {{i: i}}) {{
    uses api
    concurrency 1
    tolerate 100%
  }}
}}
''')
    assert server.count("/status/500") == 2  # the breaker refused the other three
    kinds = [e["kind"] for e in run.step("calls")["elements"]["errors"]]
    assert sorted(kinds) == ["breaker_open"] * 3 + ["transient"] * 2
    assert len(run.of("breaker_opened")) == 1


RULES = """
rules:
  - match: "classify"
    fail: transient
    times: 1
  - match: "classify"
    reply: '{"category": "billing", "urgency": 2}'
  - match: "draft"
    reply: "Dear customer, we are on it."
"""


def test_scripted_llm_with_retry_and_schema(plait_run: Any) -> None:
    run = plait_run('''
plan t {
  input ticket: str = "refund please"
  step classify = llm.chat(prompt = "classify: ${ticket}",
                           schema = {category: "str", urgency: "int"},
                           provider = "scripted:rules.yaml") {
    retry 2 backoff 10ms
  }
  step draft = llm.chat(prompt = "draft for ${classify.output.category}")
  output category = classify.output.category
  output reply = draft.output
}
''', env={"PLAIT_LLM_PROVIDER": "scripted:rules.yaml"}, files={"rules.yaml": RULES})
    assert run.code == 0, run.stderr
    assert run.step("classify")["attempts"] == 2
    assert run.report["outputs"] == {"category": "billing",
                                     "reply": "Dear customer, we are on it."}
    usage = [e for e in run.of("tool_event") if e["tool_event"] == "llm_usage"]
    assert {e["step"] for e in usage} == {"classify", "draft"}
    assert all(e["provider"] == "scripted" for e in usage)


def test_fake_openai_server_rate_limit_then_answer(plait_run: Any, llm_server: FakeLLM) -> None:
    llm_server.script.append({"status": 429, "retry_after": 1})
    llm_server.reply = '{"category": "bug", "urgency": 4}'
    run = plait_run('''
plan t {
  step classify = llm.chat(prompt = "classify this", schema = {category: "str", urgency: "int"}) {
    retry 1 backoff 10ms
  }
  output urgency = classify.output.urgency
}
''', env={"PLAIT_LLM_BASE_URL": llm_server.url("/v1"), "PLAIT_LLM_MODEL": "m1",
          "PLAIT_LLM_API_KEY": "sk-e2e-secret"})
    assert run.code == 0, run.stderr
    assert run.report["outputs"] == {"urgency": 4}
    [scheduled] = run.of("retry_scheduled", "classify")
    assert scheduled["hint_s"] == 1
    [usage] = [e for e in run.of("tool_event") if e["tool_event"] == "llm_usage"]
    assert usage["model"] == "m1" and usage["completion_tokens"] > 0
    assert llm_server.requests[-1].headers["authorization"] == "Bearer sk-e2e-secret"


def test_invalid_answer_is_retried_by_schema(plait_run: Any, llm_server: FakeLLM) -> None:
    llm_server.script.append({"content": "I think it's a bug"})
    llm_server.reply = '{"category": "bug", "urgency": 1}'
    run = plait_run('''
plan t {
  step c = llm.chat(prompt = "x", schema = {category: "str", urgency: "int"}) {
    retry 1 on invalid_output backoff 10ms
  }
}
''', env={"PLAIT_LLM_BASE_URL": llm_server.url("/v1"), "PLAIT_LLM_MODEL": "m1"})
    assert run.code == 0, run.stderr
    assert run.step("c")["attempt_log"][0]["kind"] == "invalid_output"
    assert run.step("c")["output"] == {"category": "bug", "urgency": 1}


def test_no_llm_configured_fails_saying_what_to_set(plait_run: Any) -> None:
    run = plait_run('''
plan t {
  step c = llm.chat(prompt = "hello")
}
''')
    assert run.code == 1
    error = run.step("c")["error"]
    assert error["kind"] == "permanent" and "PLAIT_LLM_BASE_URL" in error["message"]
    assert run.step("c")["attempts"] == 1


def test_shell_timeout_leaves_no_process(plait_run: Any, tmp_path: Path) -> None:
    run = plait_run('''
plan t {
  step s = shell.run(cmd = "sleep 60 & echo $! > child.pid; wait") {
    timeout 500ms
  }
}
''')
    assert run.code == 1
    assert run.step("s")["error"]["kind"] == "timeout"
    pid = int((tmp_path / "child.pid").read_text())
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_file_write_and_python_tools(plait_run: Any, tmp_path: Path) -> None:
    run = plait_run('''
plan t {
  use "./tools.py"
  step words = tools.count_words(text = "a b c")
  step twice = py.call(function = "tools:double", n = words.output)
  step save = file.write(path = "out/n.txt", content = "${twice.output}")
  step back = file.read(path = "out/n.txt") {
    after save
  }
  output n = back.output
}
''', files={"tools.py": '''
import plait

@plait.tool
def count_words(text: str) -> int:
    return len(text.split())

def double(n: int) -> int:
    return n * 2
'''})
    assert run.code == 0, run.stderr
    assert run.report["outputs"] == {"n": "6"}
    assert (tmp_path / "out" / "n.txt").read_text() == "6"
