"""OpenTelemetry spans built from run events, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from plait.runtime.events import (
    AttemptFailed,
    AttemptFinished,
    AttemptStarted,
    BreakerOpened,
    EventBus,
    FallbackStarted,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolEvent,
)
from plait.runtime.tracing import start_tracing, tracing_mode

PLAN = {
    "plan": "triage",
    "steps": {
        "classify": {"tool": "llm.chat", "args": {"model": {"node": "literal", "value": "m-1"}}},
        "rules": {"tool": "std.echo", "args": {}, "standby_for": "classify"},
        "later": {"tool": "std.echo", "args": {}},
    },
}


def _run_events(bus: EventBus) -> None:
    bus.emit(RunStarted(plan="triage", steps={"classify": {}, "rules": {}, "later": {}}))
    bus.emit(StepStarted(step="classify"))
    bus.emit(AttemptStarted(step="classify", attempt=1))
    bus.emit(
        ToolEvent(
            step="classify",
            attempt=1,
            tool_event="llm_usage",
            model="m-1b",
            provider="openai",
            prompt_tokens=10,
            completion_tokens=4,
        )
    )
    bus.emit(AttemptFailed(step="classify", attempt=1, kind="timeout", message="slow"))
    bus.emit(
        AttemptFinished(
            step="classify",
            attempt=1,
            status="failed",
            duration_s=0.1,
            kind="timeout",
            message="slow",
            queued_s=0.02,
        )
    )
    bus.emit(RetryScheduled(step="classify", attempt=2, delay_s=0.5))
    bus.emit(AttemptStarted(step="classify", attempt=2))
    bus.emit(
        ToolEvent(
            step="classify",
            attempt=2,
            tool_event="llm_usage",
            model="m-1b",
            prompt_tokens=7,
            completion_tokens=3,
        )
    )
    bus.emit(
        AttemptFinished(
            step="classify",
            attempt=2,
            status="failed",
            duration_s=0.1,
            kind="transient",
            message="5xx",
        )
    )
    bus.emit(BreakerOpened(resource="llm_api", step="classify"))
    bus.emit(FallbackStarted(step="classify", fallback="rules"))
    bus.emit(StepStarted(step="rules", standby_for="classify"))
    bus.emit(AttemptStarted(step="rules", attempt=1))
    bus.emit(AttemptFinished(step="rules", attempt=1, status="succeeded", duration_s=0.01))
    bus.emit(StepFinished(step="rules", status="succeeded", attempts=1))
    bus.emit(
        StepFinished(
            step="classify",
            status="recovered",
            attempts=2,
            kind="transient",
            message="5xx",
            fallback_used="rules",
        )
    )
    bus.emit(StepFinished(step="later", status="skipped", reason="upstream_failed"))
    bus.emit(RunFinished(outcome="degraded"))


def _spans() -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    tracing = start_tracing("console", PLAN, exporter=exporter)
    _run_events(EventBus("run-1", [tracing.sink]))
    tracing.shutdown()
    return {s.name: s for s in exporter.get_finished_spans()}


def test_run_step_and_attempt_spans_follow_genai_conventions() -> None:
    spans = _spans()
    run = spans["invoke_workflow triage"]
    chat = spans["chat m-1b"]  # renamed from the literal model to the model that answered
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["plait.outcome"] == "degraded"
    assert chat.parent.span_id == run.context.span_id
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "m-1"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 17
    assert chat.attributes["gen_ai.usage.output_tokens"] == 7
    assert chat.attributes["plait.status"] == "recovered"
    first = spans["classify attempt 1"]
    assert first.parent.span_id == chat.context.span_id
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "timeout"
    assert first.attributes["gen_ai.usage.input_tokens"] == 10
    assert first.attributes["plait.queued_s"] == 0.02
    assert spans["classify attempt 2"].attributes["error.type"] == "transient"
    standby = spans["execute_tool std.echo"]
    assert standby.attributes["gen_ai.tool.name"] == "std.echo"
    assert {"rules attempt 1"} <= set(spans)
    assert spans["rules attempt 1"].parent.span_id != run.context.span_id


def test_retries_fallbacks_and_breakers_are_span_events() -> None:
    spans = _spans()
    chat_events = {e.name: e for e in spans["chat m-1b"].events}
    assert chat_events["retry_scheduled"].attributes["plait.delay_s"] == 0.5
    assert chat_events["fallback_started"].attributes["plait.fallback"] == "rules"
    assert chat_events["breaker_opened"].attributes["plait.resource"] == "llm_api"
    assert "breaker_opened" in {e.name for e in spans["invoke_workflow triage"].events}


def test_every_span_ends_and_skipped_steps_get_a_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = start_tracing("console", PLAN, exporter=exporter)
    _run_events(EventBus("run-1", [tracing.sink]))
    tracing.shutdown()
    names = [s.name for s in exporter.get_finished_spans()]
    # run + 3 steps + 3 attempts
    assert len(names) == 7
    skipped = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("plait.step") == "later"
    ]
    assert (skipped[0].attributes or {})["plait.reason"] == "upstream_failed"


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, {}, None),
        ("console", {}, "console"),
        (None, {"OTEL_TRACES_EXPORTER": "console"}, "console"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        (None, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, None),
        ("otlp", {"OTEL_TRACES_EXPORTER": "none"}, "otlp"),
    ],
)
def test_tracing_mode(option: str | None, env: dict[str, str], expected: str | None) -> None:
    assert tracing_mode(option, env) == expected


def test_otlp_exporter_posts_spans_to_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str, int]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(size)
            received.append((self.path, self.headers.get("Content-Type", ""), size))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}"
        )
        tracing = start_tracing("otlp", PLAN)
        _run_events(EventBus("run-otlp", [tracing.sink]))
        tracing.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no spans were exported"
    path, content_type, size = received[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert size > 100


def test_a_models_tool_calls_are_execute_tool_spans_under_its_chat_span() -> None:
    from plait.runtime.events import ToolCallFinished, ToolCallStarted

    exporter = InMemorySpanExporter()
    tracing = start_tracing("console", PLAN, exporter=exporter)
    bus = EventBus("run-1", [tracing.sink])
    bus.emit(RunStarted(plan="triage", steps={"classify": {}}))
    bus.emit(StepStarted(step="classify"))
    bus.emit(AttemptStarted(step="classify", attempt=1))
    common = {"step": "classify", "attempt": 1, "turn": 1, "tool": "search"}
    bus.emit(ToolCallStarted(call_id="call_1_1", arguments={"q": "x"}, **common))
    bus.emit(ToolCallStarted(call_id="call_1_2", arguments={"q": "y"}, **common))
    bus.emit(ToolCallFinished(call_id="call_1_1", status="succeeded", attempts=1, **common))
    bus.emit(
        ToolCallFinished(
            call_id="call_1_2",
            status="failed",
            attempts=3,
            kind="timeout",
            message="slow",
            **common,
        )
    )
    bus.emit(AttemptFinished(step="classify", attempt=1, status="succeeded", duration_s=0.1))
    bus.emit(StepFinished(step="classify", status="succeeded", attempts=1))
    bus.emit(RunFinished(outcome="succeeded"))
    tracing.shutdown()
    spans = exporter.get_finished_spans()
    chat = next(s for s in spans if s.name == "chat m-1")
    calls = [s for s in spans if s.name == "execute_tool search"]
    assert len(calls) == 2
    assert all(s.parent is not None and s.parent.span_id == chat.context.span_id for s in calls)
    failed = next(s for s in calls if s.attributes["gen_ai.tool.call.id"] == "call_1_2")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["plait.attempts"] == 3


def test_chat_span_names_the_model_from_plait_llm_model() -> None:
    """`llm.chat` without `model` asks for PLAIT_LLM_MODEL's: the span says which."""
    plan = {"plan": "p", "steps": {"ask": {"tool": "llm.chat", "args": {}}}}
    exporter = InMemorySpanExporter()
    tracing = start_tracing(
        "console", plan, exporter=exporter, env={"PLAIT_LLM_MODEL": "env-model-7"}
    )
    bus = EventBus("run-2", [tracing.sink])
    bus.emit(RunStarted(plan="p", steps={"ask": {}}))
    bus.emit(StepStarted(step="ask"))
    bus.emit(StepFinished(step="ask", status="skipped", reason="condition_false"))
    bus.emit(RunFinished(outcome="succeeded"))
    tracing.shutdown()
    chat = {s.name: s for s in exporter.get_finished_spans()}["chat env-model-7"]
    assert chat.attributes["gen_ai.request.model"] == "env-model-7"


def test_a_sub_agents_calls_sit_under_the_call_that_runs_it() -> None:
    from plait.runtime.events import ToolCallFinished, ToolCallStarted

    exporter = InMemorySpanExporter()
    tracing = start_tracing("console", PLAN, exporter=exporter)
    bus = EventBus("run-1", [tracing.sink])
    bus.emit(RunStarted(plan="triage", steps={"classify": {}}))
    bus.emit(StepStarted(step="classify"))
    bus.emit(AttemptStarted(step="classify", attempt=1))
    outer = {"step": "classify", "attempt": 1, "turn": 1, "call_id": "call_1_1"}
    bus.emit(ToolCallStarted(tool="researcher", **outer))
    # the sub-agent's own first call has the same id, in its own conversation
    inner = {**outer, "tool": "search", "parent_call": "call_1_1"}
    bus.emit(ToolCallStarted(**inner))
    bus.emit(ToolCallFinished(status="succeeded", attempts=1, **inner))
    bus.emit(ToolCallFinished(tool="researcher", status="succeeded", attempts=1, **outer))
    bus.emit(AttemptFinished(step="classify", attempt=1, status="succeeded", duration_s=0.1))
    bus.emit(StepFinished(step="classify", status="succeeded", attempts=1))
    bus.emit(RunFinished(outcome="succeeded"))
    tracing.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat, researcher = spans["chat m-1"], spans["execute_tool researcher"]
    search = spans["execute_tool search"]
    assert researcher.parent is not None and researcher.parent.span_id == chat.context.span_id
    assert search.parent is not None and search.parent.span_id == researcher.context.span_id
