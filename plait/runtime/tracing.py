"""OpenTelemetry traces of a run, built from its events (optional: `pip install plait[otel]`).

Switched on by `--trace console|otlp`, or by the standard `OTEL_TRACES_EXPORTER`
(`console`, `otlp`, `none`) and `OTEL_EXPORTER_OTLP_ENDPOINT` variables. Spans follow the
OpenTelemetry GenAI semantic conventions:

- the run: `invoke_workflow {plan}` (`gen_ai.operation.name = invoke_workflow`);
- each step: `execute_tool {tool}` (`gen_ai.tool.name`), or `chat {model}` for `llm.chat`
  (`gen_ai.request.model`, `gen_ai.usage.input_tokens` / `output_tokens` summed from the
  tool's `llm_usage` events); a standby's span is a child of its primary's;
- each attempt: `{step} attempt {n}` (`{step}[{i}] attempt {n}` for a map element), a child
  of its step;
- retries, fallbacks and breaker changes are span events; a failed attempt or step has
  status ERROR and `error.type` = its error kind.

Span times are the events' timestamps, so a trace drawn afterwards shows the real timeline.
The OpenTelemetry packages are imported lazily: plait runs without them unless asked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from plait.errors import UserError
from plait.runtime.events import parse_ts

TRACE_MODES = ("console", "otlp")
INSTALL_HINT = "pip install 'plait[otel]'"


def tracing_mode(option: str | None, env: Mapping[str, str]) -> str | None:
    """The exporter to use: the `--trace` option, else what the `OTEL_*` variables ask."""
    if option:
        return None if option == "none" else option
    exporter = env.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if exporter == "none":
        return None
    if exporter in TRACE_MODES:
        return exporter
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def _ns(ts: str | None) -> int | None:
    return int(parse_ts(ts).timestamp() * 1_000_000_000) if ts else None


def _literal(expr: Any) -> Any:
    """The value of a literal expression in a compiled plan's JSON, else None."""
    if isinstance(expr, Mapping) and expr.get("node") == "literal":
        return expr.get("value")
    return None


class TracingSink:
    """An event-bus sink that turns one run's events into OpenTelemetry spans.

    `plan` is the compiled plan as JSON (`model_dump(mode="json")`): it names each step's
    tool and, for `llm.chat`, a literal `model`.
    """

    def __init__(
        self, tracer: Any, plan: Mapping[str, Any], default_model: str | None = None
    ) -> None:
        from opentelemetry import trace

        # `llm.chat` without a literal `model` asks for PLAIT_LLM_MODEL's
        self._default_model = default_model or None

        self._trace = trace
        self._tracer = tracer
        self._steps: Mapping[str, Any] = plan.get("steps", {}) or {}
        self._run: Any = None
        self._step_spans: dict[str, Any] = {}  # open step spans
        self._ended: dict[str, Any] = {}  # finished ones, never touched again
        self._attempts: dict[tuple[str, int, int | None], Any] = {}
        self._tokens: dict[str, dict[str, int]] = {}
        self._tool_calls: dict[tuple[Any, ...], Any] = {}  # a model's, open (SPEC 11)

    def __call__(self, event: Any) -> None:
        data = event if isinstance(event, Mapping) else event.to_json_dict()
        handler = getattr(self, f"_on_{data.get('event')}", None)
        if handler is not None:
            handler(data)

    # --- spans ---------------------------------------------------------------------------

    def _start(self, name: str, ts: str | None, parent: Any, attributes: Mapping[str, Any]) -> Any:
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        attrs = {k: v for k, v in attributes.items() if v is not None}
        return self._tracer.start_span(name, context=context, start_time=_ns(ts), attributes=attrs)

    def _fail(self, span: Any, kind: str | None, message: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", kind or "tool_error")
        span.set_status(Status(StatusCode.ERROR, message or kind or "failed"))

    def _step_name(self, step: str) -> tuple[str, dict[str, Any]]:
        info = self._steps.get(step, {}) or {}
        tool = str(info.get("tool", "unknown"))
        attrs: dict[str, Any] = {"plait.step": step, "gen_ai.tool.name": tool}
        if tool == "llm.chat":
            model = _literal((info.get("args") or {}).get("model"))
            if model is None and "model" not in (info.get("args") or {}):
                model = self._default_model
            attrs["gen_ai.operation.name"] = "chat"
            attrs["gen_ai.request.model"] = model
            return (f"chat {model}" if model else "chat"), attrs
        attrs["gen_ai.operation.name"] = "execute_tool"
        return f"execute_tool {tool}", attrs

    def _step_span(self, step: str, ts: str | None, standby_for: str | None = None) -> Any:
        span = self._step_spans.get(step) or self._ended.get(step)
        if span is None:
            name, attrs = self._step_name(step)
            parent = self._step_spans.get(standby_for or "") or self._run
            attrs["plait.standby_for"] = standby_for
            span = self._step_spans[step] = self._start(name, ts, parent, attrs)
        return span

    # --- events --------------------------------------------------------------------------

    def _on_run_started(self, e: Mapping[str, Any]) -> None:
        plan = e.get("plan")
        self._run = self._start(
            f"invoke_workflow {plan}",
            e.get("ts"),
            None,
            {
                "gen_ai.operation.name": "invoke_workflow",
                "plait.plan": plan,
                "plait.run_id": e.get("run_id"),
                "plait.plan_sha256": e.get("plan_sha256"),
            },
        )

    def _on_step_started(self, e: Mapping[str, Any]) -> None:
        self._step_span(str(e["step"]), e.get("ts"), e.get("standby_for"))

    def _on_attempt_started(self, e: Mapping[str, Any]) -> None:
        step, element = str(e["step"]), e.get("element")
        parent = self._step_span(step, e.get("ts"))
        label = step if element is None else f"{step}[{element}]"
        self._attempts[(step, int(e["attempt"]), element)] = self._start(
            f"{label} attempt {e['attempt']}",
            e.get("ts"),
            parent,
            {"plait.step": step, "plait.attempt": e["attempt"], "plait.element": element},
        )

    def _on_attempt_finished(self, e: Mapping[str, Any]) -> None:
        span = self._attempts.pop((str(e["step"]), int(e["attempt"]), e.get("element")), None)
        if span is None:
            return
        span.set_attribute("plait.status", str(e.get("status")))
        if e.get("queued_s") is not None:
            span.set_attribute("plait.queued_s", float(e["queued_s"]))
        if e.get("status") != "succeeded":
            self._fail(span, e.get("kind"), e.get("message"))
        span.end(end_time=_ns(e.get("ts")))

    def _on_tool_call_started(self, e: Mapping[str, Any]) -> None:
        """A model's tool call: an `execute_tool` span under the step's `chat` span."""
        step = str(e["step"])
        outer = e.get("parent_call")  # a sub-agent's call: under the call running it
        parent = self._tool_calls.get(_call_key(e, str(outer), None)) if outer else None
        if parent is None:
            parent = self._step_span(step, e.get("ts"))
        self._tool_calls[_call_key(e, str(e["call_id"]), outer)] = self._start(
            f"execute_tool {e['tool']}",
            e.get("ts"),
            parent,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": e["tool"],
                "gen_ai.tool.call.id": e["call_id"],
                "plait.step": step,
                "plait.turn": e.get("turn"),
            },
        )

    def _on_tool_call_finished(self, e: Mapping[str, Any]) -> None:
        span = self._tool_calls.pop(_call_key(e, str(e["call_id"]), e.get("parent_call")), None)
        if span is None:
            return
        span.set_attribute("plait.attempts", int(e.get("attempts") or 0))
        if e.get("status") != "succeeded":
            self._fail(span, e.get("kind"), e.get("message"))
        span.end(end_time=_ns(e.get("ts")))

    def _on_retry_scheduled(self, e: Mapping[str, Any]) -> None:
        self._step_span(str(e["step"]), e.get("ts")).add_event(
            "retry_scheduled",
            {
                k: v
                for k, v in {
                    "plait.attempt": e.get("attempt"),
                    "plait.delay_s": e.get("delay_s"),
                    "plait.hint_s": e.get("hint_s"),
                    "plait.element": e.get("element"),
                }.items()
                if v is not None
            },
            timestamp=_ns(e.get("ts")),
        )

    def _on_fallback_started(self, e: Mapping[str, Any]) -> None:
        self._step_span(str(e["step"]), e.get("ts")).add_event(
            "fallback_started",
            {"plait.fallback": str(e.get("fallback"))},
            timestamp=_ns(e.get("ts")),
        )

    def _breaker(self, e: Mapping[str, Any]) -> None:
        attrs = {"plait.resource": str(e.get("resource"))}
        targets = [self._run, self._step_spans.get(str(e.get("step")))]
        for span in targets:
            if span is not None:
                span.add_event(str(e["event"]), attrs, timestamp=_ns(e.get("ts")))

    _on_breaker_opened = _on_breaker_half_open = _on_breaker_closed = _breaker

    def _on_tool_event(self, e: Mapping[str, Any]) -> None:
        if e.get("tool_event") != "llm_usage":
            return
        step = str(e["step"])
        span = self._step_span(step, e.get("ts"))
        if e.get("model"):
            span.update_name(f"chat {e['model']}")
            span.set_attribute("gen_ai.response.model", str(e["model"]))
        if e.get("provider"):
            span.set_attribute("gen_ai.provider.name", str(e["provider"]))
        attempt = self._attempts.get((step, int(e["attempt"]), e.get("element")))
        usage = {
            "gen_ai.usage.input_tokens": e.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": e.get("completion_tokens"),
        }
        totals = self._tokens.setdefault(step, {})
        for key, value in usage.items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
                span.set_attribute(key, totals[key])
                if attempt is not None:
                    attempt.set_attribute(key, value)

    def _on_step_finished(self, e: Mapping[str, Any]) -> None:
        step = str(e["step"])
        span = self._step_span(step, e.get("ts"))  # skipped steps get a zero-length span
        span.set_attribute("plait.status", str(e.get("status")))
        span.set_attribute("plait.attempts", int(e.get("attempts") or 0))
        for key in ("reason", "fallback_used"):
            if e.get(key):
                span.set_attribute(f"plait.{key}", str(e[key]))
        if e.get("resumed"):
            span.set_attribute("plait.resumed", True)
        if e.get("status") in ("failed", "cancelled"):
            self._fail(span, e.get("kind") or "cancelled", e.get("message"))
        span.end(end_time=_ns(e.get("ts")))
        self._ended[step] = self._step_spans.pop(step)

    def _on_run_finished(self, e: Mapping[str, Any]) -> None:
        end = _ns(e.get("ts"))
        for span in self._attempts.values():
            span.end(end_time=end)
        self._attempts.clear()
        if self._run is None:
            return
        self._run.set_attribute("plait.outcome", str(e.get("outcome")))
        if e.get("cancelled_by"):
            self._run.set_attribute("plait.cancelled_by", str(e["cancelled_by"]))
        if e.get("outcome") == "failed":
            self._fail(self._run, "failed", "the run failed")
        self._run.end(end_time=end)


class Tracing:
    """A tracer provider with its exporter and the sink feeding it; `shutdown()` flushes."""

    def __init__(self, provider: Any, sink: TracingSink) -> None:
        self.provider = provider
        self.sink = sink

    def shutdown(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


def start_tracing(
    mode: str, plan: Mapping[str, Any], exporter: Any = None, env: Mapping[str, str] | None = None
) -> Tracing:
    """Set up a tracer provider for `mode` (or the given `exporter`) and its event sink."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise UserError(f"--trace {mode} needs OpenTelemetry: {INSTALL_HINT}") from None
    service = (env or {}).get("OTEL_SERVICE_NAME") or "plait"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: stdout belongs to `--json`
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif mode == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    else:
        raise UserError(f"unknown --trace {mode!r}: use one of {', '.join(TRACE_MODES)}")
    tracer = provider.get_tracer("plait")
    default_model = (os.environ if env is None else env).get("PLAIT_LLM_MODEL")
    return Tracing(provider, TracingSink(tracer, plan, default_model))


def _otlp_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise UserError(
            "--trace otlp needs the OTLP exporter (opentelemetry-exporter-otlp-"
            f"proto-http): {INSTALL_HINT}"
        ) from None
    return OTLPSpanExporter()


def _call_key(e: Mapping[str, Any], call_id: str, parent_call: Any) -> tuple[Any, ...]:
    """A model's tool call among those open: call ids repeat across map elements,
    iterations, attempts and sub-agents."""
    return (
        str(e["step"]),
        e.get("iteration"),
        e.get("element"),
        int(e["attempt"]),
        parent_call,
        call_id,
    )
