"""`plait run` in a subprocess against real local servers: timeouts, retries that honour
Retry-After, the breaker, fallbacks, the scripted LLM and the fake OpenAI server.

Each plan runs once per module (a subprocess start costs seconds on a shared machine) and
several tests read its report and events.
"""

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
    folder: Path

    def step(self, name: str) -> dict[str, Any]:
        return self.report["steps"][name]  # type: ignore[no-any-return]

    def of(self, event: str, step: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == event and (step is None or e.get("step") == step)
        ]

    def usage(self, step: str) -> list[dict[str, Any]]:
        return [e for e in self.of("tool_event", step) if e["tool_event"] == "llm_usage"]


def plait_run(
    folder: Path,
    plan: str,
    *,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Run:
    """Write the plan (and files beside it) to `folder` and run it with `plait run`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    plan_file = folder / "plan.agent"
    plan_file.write_text(plan)
    events = folder / "events.jsonl"
    base_env = {k: v for k, v in os.environ.items() if k not in LLM_VARS}
    started = time.monotonic()
    proc = subprocess.run(
        [PLAIT, "run", str(plan_file), "--json", "--quiet", "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=folder,
        env={**base_env, "PLAIT_HOME": str(folder), **(env or {})},
    )
    seconds = time.monotonic() - started
    assert proc.stdout.strip(), f"no report (exit {proc.returncode}): {proc.stderr}"
    lines = events.read_text().splitlines() if events.exists() else []
    return Run(
        proc.returncode,
        json.loads(proc.stdout),
        [json.loads(x) for x in lines],
        proc.stderr,
        seconds,
        folder,
    )


@pytest.fixture(scope="module")
def web() -> Iterator[TestServer]:
    with TestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as srv:
        yield srv


# --- HTTP: timeouts, Retry-After, 5xx, 4xx + fallback, the breaker --------------------------


@pytest.fixture(scope="module")
def http_run(web: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return plait_run(
        tmp_path_factory.mktemp("http"),
        f'''
plan t {{
  resource api {{
    breaker after 2 failures cooldown 30s
  }}
  step slow = http.get(url = "{web.url("/slow?s=20")}") {{
    optional
    timeout 300ms
  }}
  step limited = http.get(url = "{web.url("/flaky/a?fail=1&code=429&retry_after=1")}") {{
    retry 2 backoff 10ms
  }}
  step broken = http.get(url = "{web.url("/status/502")}") {{
    optional
    retry 2 backoff 10ms
  }}
  step primary = http.get(url = "{web.url("/status/404")}") {{
    retry 3 backoff 10ms
    fallback backup
  }}
  step backup = http.post(url = "{web.url("/json")}", json = {{why: "fallback"}})
  step dead = for i in [1, 2, 3, 4, 5]: http.get(url = "{web.url("/status/500")}",
                                                  params = {{i: i}}) {{
    uses api
    concurrency 1
    tolerate 100%
  }}
  output ok = limited.output.body.ok
  output via = primary.output.body.body.why
}}
''',
    )


def test_http_run_outcome(http_run: Run) -> None:
    assert http_run.code == 3, http_run.stderr
    assert http_run.report["outcome"] == "degraded"
    assert http_run.report["outputs"] == {"ok": True, "via": "fallback"}
    assert http_run.seconds < 30  # the 20 s answer was not waited for


def test_http_timeout_fails_the_attempt_with_kind_timeout(http_run: Run) -> None:
    slow = http_run.step("slow")
    assert slow["status"] == "failed" and slow["error"]["kind"] == "timeout"
    assert slow["duration_s"] < 5


def test_retry_waits_at_least_retry_after(http_run: Run, web: TestServer) -> None:
    limited = http_run.step("limited")
    assert limited["status"] == "succeeded" and limited["attempts"] == 2
    assert limited["attempt_log"][0]["kind"] == "rate_limited"
    [scheduled] = http_run.of("retry_scheduled", "limited")
    assert scheduled["hint_s"] == 1 and scheduled["delay_s"] >= 1  # not the 10ms backoff
    assert web.count("/flaky/a") == 2


def test_5xx_is_retried_then_exhausted(http_run: Run, web: TestServer) -> None:
    error = http_run.step("broken")["error"]
    assert error["kind"] == "transient" and error["retry"] == "exhausted"
    assert "HTTP 502" in error["message"] and "status 502" in error["message"]
    assert web.count("/status/502") == 3


def test_4xx_is_not_retried_and_the_fallback_answers(http_run: Run, web: TestServer) -> None:
    primary = http_run.step("primary")
    assert primary["status"] == "recovered" and primary["fallback_used"] == "backup"
    assert primary["attempts"] == 1
    assert primary["error"]["kind"] == "permanent"
    assert primary["error"]["retry"] == "not_retryable"
    assert web.count("/status/404") == 1


def test_breaker_stops_calling_a_dead_service(http_run: Run, web: TestServer) -> None:
    assert web.count("/status/500") == 2  # the open breaker refused the other three
    kinds = [e["kind"] for e in http_run.step("dead")["elements"]["errors"]]
    assert sorted(kinds) == ["breaker_open"] * 3 + ["transient"] * 2
    assert [e["resource"] for e in http_run.of("breaker_opened")] == ["api"]


# --- LLM: the scripted provider and the fake OpenAI-compatible server ----------------------

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


@pytest.fixture(scope="module")
def llm_run(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Run:
    # the server answers in request order: `checked` runs after `remote` (`after`)
    fake_llm.script += [
        {"status": 429, "retry_after": 1},
        {"content": '{"category": "bug"}'},
        {"content": '{"category": "bug", "urgency": 4}'},
        {"content": "I think it is a bug"},
    ]
    fake_llm.reply = '{"category": "bug", "urgency": 4}'
    return plait_run(
        tmp_path_factory.mktemp("llm"),
        """
plan t {
  input ticket: str = "refund please"
  step classify = llm.chat(prompt = "classify: ${ticket}",
                           schema = {category: "str", urgency: "int"},
                           provider = "scripted:rules.yaml") {
    retry 2 backoff 10ms
  }
  step draft = llm.chat(prompt = "draft for ${classify.output.category}",
                        provider = "scripted:rules.yaml")
  step remote = llm.chat(prompt = "classify remotely",
                         schema = {category: "str", urgency: "int"}) {
    retry 2 backoff 10ms
  }
  step checked = llm.chat(prompt = "again", schema = {category: "str", urgency: "int"}) {
    after remote
    retry 1 on invalid_output backoff 10ms
  }
  output category = classify.output.category
  output reply = draft.output
  output urgency = remote.output.urgency
}
""",
        env={
            "PLAIT_LLM_BASE_URL": fake_llm.url("/v1"),
            "PLAIT_LLM_MODEL": "m1",
            "PLAIT_LLM_API_KEY": "sk-e2e-secret",
        },
        files={"rules.yaml": RULES},
    )


def test_llm_run_outcome(llm_run: Run) -> None:
    assert llm_run.code == 0, llm_run.stderr
    assert llm_run.report["outputs"] == {
        "category": "billing",
        "reply": "Dear customer, we are on it.",
        "urgency": 4,
    }


def test_scripted_failure_is_retried(llm_run: Run) -> None:
    classify = llm_run.step("classify")
    assert classify["attempts"] == 2
    assert classify["attempt_log"][0]["kind"] == "transient"
    assert [e["provider"] for e in llm_run.usage("draft")] == ["scripted"]


def test_remote_rate_limit_and_bad_schema_are_retried(llm_run: Run, fake_llm: FakeLLM) -> None:
    remote = llm_run.step("remote")
    assert [a["kind"] for a in remote["attempt_log"]] == ["rate_limited", "invalid_output", None]
    [first, _] = llm_run.of("retry_scheduled", "remote")
    assert first["hint_s"] == 1 and first["delay_s"] >= 1
    checked = llm_run.step("checked")
    assert checked["attempt_log"][0]["kind"] == "invalid_output"
    assert checked["output"] == {"category": "bug", "urgency": 4}
    assert all(r.headers["authorization"] == "Bearer sk-e2e-secret" for r in fake_llm.requests)


def test_token_usage_reaches_the_events(llm_run: Run) -> None:
    [usage] = llm_run.usage("checked")[-1:]
    assert usage["model"] == "m1" and usage["provider"] == "openai"
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["latency_s"] >= 0


# --- local tools: shell, file, py.call, use; and an unconfigured LLM -----------------------

TOOLS = """
import plait

@plait.tool
def count_words(text: str) -> int:
    return len(text.split())

def double(n: int) -> int:
    return n * 2
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return plait_run(
        tmp_path_factory.mktemp("local"),
        """
plan t {
  use "./tools.py"
  step words = tools.count_words(text = "a b c")
  step twice = py.call(function = "tools:double", n = words.output)
  step save = file.write(path = "out/n.txt", content = "${twice.output}")
  step back = file.read(path = "out/n.txt") {
    after save
  }
  step sh = shell.run(cmd = "sleep 60 & echo $! > child.pid; wait") {
    optional
    timeout 500ms
  }
  step ask = llm.chat(prompt = "hello") {
    optional
  }
  output n = back.output
}
""",
        files={"tools.py": TOOLS},
    )


def test_local_tools_work_together(local_run: Run) -> None:
    assert local_run.code == 3, local_run.stderr
    assert local_run.report["outputs"] == {"n": "6"}
    assert (local_run.folder / "out" / "n.txt").read_text() == "6"


def test_shell_timeout_leaves_no_process(local_run: Run) -> None:
    assert local_run.step("sh")["error"]["kind"] == "timeout"
    pid = int((local_run.folder / "child.pid").read_text())
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_no_llm_configured_fails_saying_what_to_set(local_run: Run) -> None:
    error = local_run.step("ask")["error"]
    assert error["kind"] == "permanent" and "PLAIT_LLM_BASE_URL" in error["message"]
    assert local_run.step("ask")["attempts"] == 1
