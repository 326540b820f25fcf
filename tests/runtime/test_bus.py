"""The event bus: stamping, and delivery routed by event class."""

from __future__ import annotations

from typing import Any

from plait.runtime import events as ev


class Routed:
    """A routed sink that takes attempt events only, through its own handler."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, event: ev.Event) -> None:  # never used: every route is explicit
        raise AssertionError("called without a route")

    def handler_for(self, cls: type[ev.Event]) -> Any:
        if cls is ev.AttemptStarted:
            return lambda e: self.seen.append(f"{e.event}:{e.seq}")
        return None


def test_plain_and_routed_sinks_each_get_their_events_in_order() -> None:
    plain: list[ev.Event] = []
    routed = Routed()
    bus = ev.EventBus("r1", [plain.append, routed])
    bus.make(ev.StepStarted, step="a")
    bus.publish(ev.AttemptStarted(step="a", attempt=1))
    bus.make(ev.AttemptStarted, step="a", attempt=2)
    assert [(e.event, e.seq, e.run_id) for e in plain] == [
        ("step_started", 1, "r1"),
        ("attempt_started", 2, "r1"),
        ("attempt_started", 3, "r1"),
    ]
    assert routed.seen == ["attempt_started:2", "attempt_started:3"]
    assert all(e.ts.endswith("Z") for e in plain)


def test_a_sink_subscribed_later_joins_existing_routes() -> None:
    bus = ev.EventBus("r1")
    bus.make(ev.StepStarted, step="a")
    late: list[ev.Event] = []
    bus.subscribe(late.append)
    bus.make(ev.StepStarted, step="b")
    bus.emit(ev.ToolEvent(step="b", attempt=1, tool_event="usage", tokens=3))
    assert [(e.event, e.seq) for e in late] == [("step_started", 2), ("tool_event", 3)]


def test_same_second_durations_match_a_full_parse() -> None:
    pairs = [
        ("2026-01-01T10:00:00.000100Z", "2026-01-01T10:00:00.900000Z"),
        ("2026-01-01T10:00:00.999999Z", "2026-01-01T10:00:01.000001Z"),
        ("2026-01-01T23:59:59.5Z", "2026-01-02T00:00:00.25Z"),
    ]
    for start, end in pairs:
        full = round((ev.parse_ts(end) - ev.parse_ts(start)).total_seconds(), 6)
        assert ev.seconds_between(start, end) == full


def test_stamps_are_iso_utc_with_microseconds(monkeypatch: Any) -> None:
    second = 1767261600  # 2026-01-01T10:00:00Z
    for micros, text in [
        (123456, "2026-01-01T10:00:00.123456Z"),
        (7, "2026-01-01T10:00:00.000007Z"),
        (999999, "2026-01-01T10:00:00.999999Z"),
    ]:
        monkeypatch.setattr(ev, "_time_ns", lambda m=micros: (second * 1_000_000 + m) * 1000 + 999)
        assert ev.utc_now_iso() == text
    monkeypatch.setattr(ev, "_time_ns", lambda: (second + 61) * 1_000_000_000)
    assert ev.utc_now_iso() == "2026-01-01T10:01:01.000000Z"  # the next second is formatted
