def test_llm_usage_per_step_and_per_run() -> None:
    """Token usage and the model, from the tool's `llm_usage` events (issue #11)."""
    from plait.runtime.events import (
        AttemptFinished,
        AttemptStarted,
        EventBus,
        RunFinished,
        RunStarted,
        StepFinished,
        ToolEvent,
    )
    from plait.runtime.report import ReportBuilder

    b = ReportBuilder()
    bus = EventBus("r", [b.apply])  # stamps seq and ts, as in a run
    for e in [
        RunStarted(plan="p", steps={"ask": {}, "other": {}, "plain": {}}),
        AttemptStarted(step="ask", attempt=1),
        ToolEvent(
            step="ask",
            attempt=1,
            tool_event="llm_usage",
            model="m-1",
            prompt_tokens=10,
            completion_tokens=4,
        ),
        AttemptFinished(step="ask", attempt=1, status="failed", duration_s=0.1),
        AttemptStarted(step="ask", attempt=2),
        ToolEvent(
            step="ask",
            attempt=2,
            tool_event="llm_usage",
            model="m-2",
            prompt_tokens=7,
            completion_tokens=3,
            total_tokens=11,
        ),
        AttemptFinished(step="ask", attempt=2, status="succeeded", duration_s=0.1),
        StepFinished(step="ask", status="succeeded", attempts=2),
        AttemptStarted(step="other", attempt=1),
        ToolEvent(
            step="other",
            attempt=1,
            tool_event="llm_usage",
            model="scripted",
            prompt_tokens=None,
            completion_tokens=None,
        ),
        AttemptFinished(step="other", attempt=1, status="succeeded", duration_s=0.1),
        StepFinished(step="other", status="succeeded", attempts=1),
        StepFinished(step="plain", status="succeeded", attempts=1),
        RunFinished(outcome="succeeded"),
    ]:
        bus.emit(e)
    data = b.report().to_json_dict()
    assert data["steps"]["ask"]["usage"] == {
        "model": "m-2",
        "requests": 2,
        "prompt_tokens": 17,
        "completion_tokens": 7,
        "total_tokens": 25,
    }
    assert data["steps"]["other"]["usage"] == {
        "model": "scripted",
        "requests": 1,
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
    }
    assert "usage" not in data["steps"]["plain"]
    assert data["usage"] == {
        "model": "m-2, scripted",
        "requests": 3,
        "prompt_tokens": 17,
        "completion_tokens": 7,
        "total_tokens": 25,
    }
