"""`llm.chat` with tools (SPEC section 11) against a real local chat-completions server that
decides its replies from the conversation it receives: concurrent tool calls, each tool
call under its own timeout, retry and breaker, arguments checked before any call,
`max_turns`, schema re-asks, and the exact messages sent on each turn."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.runtime.api import run_plan
from plait.runtime.events import Event
from tests.servers import AgentLLM

TOOLS = '''
import asyncio, json, time
from pathlib import Path
import plait

LOG = Path(__file__).with_name("calls.log")


def _log(name, **args):
    with LOG.open("a") as f:
        f.write(json.dumps({"tool": name, "at": time.monotonic(), **args}) + "\\n")


@plait.tool
def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    _log("add", a=a, b=b)
    return a + b


@plait.tool
async def slow(seconds: float, label: str) -> str:
    """Wait, then say so."""
    _log("slow", label=label)
    await asyncio.sleep(seconds)
    return f"{label} done"


@plait.tool
def broken(reason: str) -> str:
    """Always fails."""
    _log("broken", reason=reason)
    raise plait.Transient("service down: " + reason)
'''


@pytest.fixture
def agent_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentLLM]:
    with AgentLLM() as server:
        monkeypatch.setenv("PLAIT_LLM_BASE_URL", server.base + "/v1")
        monkeypatch.setenv("PLAIT_LLM_MODEL", "m")
        monkeypatch.delenv("PLAIT_LLM_PROVIDER", raising=False)
        yield server


def run_agent(
    tmp_path: Path, server: AgentLLM, step: str, *, extra: str = ""
) -> tuple[Any, list[Event]]:
    (tmp_path / "tools.py").write_text(TOOLS)
    plan = tmp_path / "plan.agent"
    plan.write_text(
        f'plan agent {{\n  use "./tools.py"\n{extra}\n  {step}\n  output answer = ask.output\n}}\n'
    )
    events: list[Event] = []
    report = run_plan(plan, events=events.append)
    return report, events


def calls_log(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "calls.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def last_tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_the_messages_sent_on_each_turn(tmp_path: Path, agent_llm: AgentLLM) -> None:
    def decide(body: dict[str, Any]) -> Any:
        if not any(m["role"] == "tool" for m in body["messages"]):
            return [("tools_add", {"a": 2, "b": 3})]
        return f"The sum is {last_tool_results(body)[-1]}"

    agent_llm.decide = decide
    report, _ = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "What is 2 + 3?", '
        'system = "Be brief.", tools = ["tools.add"])',
    )
    assert report.outputs == {"answer": "The sum is 5.0"}
    first, second = agent_llm.bodies()
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "tools_add",
                "description": "Add two numbers.",
                "parameters": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["a", "b"],
                    "properties": {
                        "a": {"type": "number", "description": "the first number."},
                        "b": {"type": "number", "description": "the second number."},
                    },
                },
            },
        }
    ]
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_1",
                    "type": "function",
                    "function": {"name": "tools_add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_1", "content": "5.0"},
    ]
    step = report.steps["ask"]
    assert (step.turns, step.tool_calls) == (2, {"tools.add": {"calls": 1, "failures": 0}})
    assert report.to_json_dict()["steps"]["ask"]["turns"] == 2


def test_tool_calls_of_one_reply_run_concurrently(tmp_path: Path, agent_llm: AgentLLM) -> None:
    def decide(body: dict[str, Any]) -> Any:
        if not any(m["role"] == "tool" for m in body["messages"]):
            return [("tools_slow", {"seconds": 0.6, "label": x}) for x in ("a", "b", "c")]
        return " + ".join(last_tool_results(body))

    agent_llm.decide = decide
    started = time.monotonic()
    report, events = run_agent(
        tmp_path, agent_llm, 'step ask = llm.chat(prompt = "go", tools = ["tools.slow"])'
    )
    took = time.monotonic() - started
    assert report.outputs == {"answer": "a done + b done + c done"}
    kinds = [e.event for e in events if e.event.startswith("tool_call")]
    assert kinds[:3] == ["tool_call_started"] * 3  # all three began before any ended
    starts = [c["at"] for c in calls_log(tmp_path)]
    assert max(starts) - min(starts) < 0.5  # (one after another would be 0.6 s apart)
    assert took < 3.0  # generous: sequential calls alone would take 1.8 s
    finished = [e for e in events if e.event == "tool_call_finished"]
    assert {(e.call_id, e.turn, e.tool, e.status) for e in finished} == {  # type: ignore[attr-defined]
        (f"call_1_{i}", 1, "tools.slow", "succeeded") for i in (1, 2, 3)
    }


def test_arguments_that_do_not_fit_never_reach_the_tool(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    def decide(body: dict[str, Any]) -> Any:
        results = last_tool_results(body)
        if not results:
            return [
                ("tools_add", {"a": "two", "b": 3}),
                ("tools_add", {"a": 1}),
                ("tools_nope", {}),
                ("tools_add", {"a": 1, "b": 2, "c": 3}),
            ]
        return json.dumps(results)

    agent_llm.decide = decide
    report, _ = run_agent(
        tmp_path, agent_llm, 'step ask = llm.chat(prompt = "go", tools = ["tools.add"])'
    )
    assert calls_log(tmp_path) == []  # not one call reached the tool
    results = [json.loads(r) for r in json.loads(report.outputs["answer"])]
    assert [r["error"] for r in results] == ["invalid_input"] * 4
    assert "`a`" in results[0]["message"]
    assert "missing required argument `b`" in results[1]["message"]
    assert "no tool `tools_nope` in `tools`" in results[2]["message"]
    assert "has no argument `c`" in results[3]["message"]
    assert report.steps["ask"].status == "succeeded"  # failed tool calls do not fail it
    assert report.steps["ask"].tool_calls == {
        "tools.add": {"calls": 3, "failures": 3},
        "tools_nope": {"calls": 1, "failures": 1},
    }


def test_max_turns_ends_with_loop_exhausted(tmp_path: Path, agent_llm: AgentLLM) -> None:
    agent_llm.decide = lambda body: [("tools_add", {"a": 1, "b": 1})]
    report, _ = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "go", tools = ["tools.add"], max_turns = 3)',
    )
    step = report.steps["ask"]
    assert step.status == "failed"
    assert step.error is not None and step.error.kind == "loop_exhausted"
    assert len(agent_llm.bodies()) == 3
    assert len(calls_log(tmp_path)) == 2  # the third reply's calls are not run
    assert report.outcome == "failed"


def test_a_tool_calls_timeout_retry_and_breaker_apply(tmp_path: Path, agent_llm: AgentLLM) -> None:
    def decide(body: dict[str, Any]) -> Any:
        results = last_tool_results(body)
        if len(results) == 0:
            return [("tools_slow", {"seconds": 5, "label": "late"})]
        if len(results) == 1:
            return [("tools_broken", {"reason": "r1"})]
        if len(results) == 2:
            return [("tools_broken", {"reason": "r2"})]
        return json.dumps(results)

    agent_llm.decide = decide
    extra = (
        "  defaults {\n    timeout 300ms\n    retry 1 backoff 0ms\n    uses svc\n  }\n"
        "  resource svc {\n    breaker after 4 failures cooldown 60s\n  }"
    )
    report, events = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "go", '
        'tools = ["tools.slow", "tools.broken"]) {\n'
        "    uses llm\n    timeout 30s\n  }",
        extra=extra + "\n  resource llm {\n    concurrency 1\n  }",
    )
    timed_out, broken, rejected = (json.loads(r) for r in json.loads(report.outputs["answer"]))
    assert timed_out["error"] == "timeout"
    assert broken == {"error": "transient", "message": "service down: r1"}
    assert rejected["error"] == "breaker_open"  # the fourth failed attempt opened it
    tried = [c["tool"] for c in calls_log(tmp_path)]
    assert tried == ["slow", "slow", "broken", "broken"]  # retried once each; r2 never ran
    finished = [e for e in events if e.event == "tool_call_finished"]
    assert [e.attempts for e in finished] == [2, 2, 1]  # type: ignore[attr-defined]
    assert any(e.event == "breaker_opened" for e in events)
    assert not any(
        e.event.startswith("attempt_") and getattr(e, "attempt", 1) > 1 for e in events
    )  # tool calls make no attempt events of the step


def test_an_answer_that_does_not_fit_the_schema_is_asked_again(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    def decide(body: dict[str, Any]) -> Any:
        last = body["messages"][-1]
        if last["role"] == "user" and last["content"].startswith("Your answer does not"):
            return '{"total": 5}'
        return '{"sum": "five"}'

    agent_llm.decide = decide
    report, _ = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "go", tools = ["tools.add"], schema = {total: "int"})',
    )
    assert report.outputs == {"answer": {"total": 5}}
    retry = agent_llm.bodies()[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"sum": "five"}'}
    assert retry[-1]["content"].startswith("Your answer does not match the schema: ")
    assert report.steps["ask"].turns == 2


def test_a_preset_in_tools_hides_what_it_fixes_and_uses_its_policies(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    def decide(body: dict[str, Any]) -> Any:
        results = last_tool_results(body)
        if not results:
            return [("plus2", {"a": 40}), ("plus2", {"a": 1, "b": 1})]
        return " | ".join(results)

    agent_llm.decide = decide
    extra = "  tool plus2 = tools.add(b = 2) {\n    timeout 5s\n  }"
    report, _ = run_agent(
        tmp_path, agent_llm, 'step ask = llm.chat(prompt = "go", tools = [plus2])', extra=extra
    )
    declared = agent_llm.bodies()[0]["tools"][0]["function"]
    assert declared["name"] == "plus2"
    assert list(declared["parameters"]["properties"]) == ["a"]
    first, second = report.outputs["answer"].split(" | ")
    assert first == "42.0"
    assert json.loads(second) == {
        "error": "invalid_input",
        "message": "argument `b` is set by the preset `plus2` and may not be passed",
    }
    assert [c["b"] for c in calls_log(tmp_path)] == [2]


def test_the_step_timeout_runs_from_the_first_request_not_from_waiting_for_a_slot(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    asked: list[float] = []

    def decide(body: dict[str, Any]) -> Any:
        asked.append(time.monotonic())
        if not last_tool_results(body):
            return [("tools_add", {"a": 1, "b": 1})]
        return "two"

    agent_llm.decide = decide
    started = time.monotonic()
    report, _ = run_agent(
        tmp_path,
        agent_llm,
        "step hold = std.sleep(seconds = 2.5, value = 1) {\n    uses llm\n  }\n"
        '  step ask = llm.chat(prompt = "1 + 1?", tools = ["tools.add"]) {\n'
        "    uses llm\n    timeout 2s\n  }",
        extra="  resource llm {\n    concurrency 1\n  }",
    )
    # `ask` waited about 2.5 s for `hold`'s slot, then talked well within its 2 s
    assert asked[0] - started >= 2.4  # (it really waited for the slot)
    assert report.steps["ask"].status == "succeeded", report.steps["ask"].error
    assert report.outputs == {"answer": "two"}


def test_the_step_timeout_covers_the_conversations_tool_calls(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    def decide(body: dict[str, Any]) -> Any:
        if not last_tool_results(body):
            return [("tools_slow", {"seconds": 8, "label": "late"})]
        return "done"

    agent_llm.decide = decide
    started = time.monotonic()
    report, _ = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "go", tools = ["tools.slow"]) {\n    timeout 1s\n  }',
    )
    assert time.monotonic() - started < 6  # cut at 1 s, not after the 8 s tool call
    error = report.steps["ask"].error
    assert error is not None and error.kind == "timeout"
    assert len(agent_llm.bodies()) == 1


def test_a_sub_agent_runs_its_own_conversation_and_its_calls_name_their_parent(
    tmp_path: Path, agent_llm: AgentLLM
) -> None:
    def decide(body: dict[str, Any]) -> Any:
        sub = body["messages"][0]["content"] == "You add."
        results = last_tool_results(body)
        if sub:  # three turns: two additions, then the answer
            if len(results) < 2:
                return [("tools_add", {"a": 2, "b": 3 - len(results)})]
            return f"sum {results[0]}"
        if not results:
            return [("adder", {"prompt": "add 2 and 3"})]
        return f"The adder said: {results[0]}"

    agent_llm.decide = decide
    report, events = run_agent(
        tmp_path,
        agent_llm,
        'step ask = llm.chat(prompt = "What is 2 + 3?", tools = [adder])',
        extra='  tool adder = llm.chat(system = "You add.", tools = ["tools.add"], max_turns = 3)',
    )
    assert report.outputs == {"answer": "The adder said: sum 5.0"}
    started = [e for e in events if e.event == "tool_call_started"]
    assert [(e.tool, e.parent_call) for e in started] == [  # type: ignore[attr-defined]
        ("adder", None),
        ("tools.add", "call_1_1"),
        ("tools.add", "call_1_1"),
    ]
    adder = next(b for b in agent_llm.bodies() if b["messages"][0]["content"] != "You add.")
    [declared] = adder["tools"]
    assert declared["function"]["name"] == "adder"
    assert set(declared["function"]["parameters"]["properties"]) == {
        "prompt",
        "model",
        "temperature",
        "schema",
        "max_tokens",
    }  # what the preset fixes and the conversation's own settings are hidden
    assert [c["tool"] for c in calls_log(tmp_path)] == ["add", "add"]
    assert report.steps["ask"].turns == 2  # the sub-agent's own turns are its own
    assert report.steps["ask"].tool_calls == {
        "adder": {"calls": 1, "failures": 0},
        "tools.add": {"calls": 2, "failures": 0},
    }


def test_scripted_tool_calls_match_the_prompt_first_then_the_tool_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLAIT_LLM_PROVIDER", raising=False)
    (tmp_path / "script.json").write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "match": "weather in Paris",
                        "reply": {
                            "tool_calls": [
                                {"name": "std_echo", "arguments": {"value": "sunny"}},
                                {"name": "std.echo", "arguments": {"value": {"t": 21}}},
                            ]
                        },
                    },
                    {"match": '^sunny\\n\\{"t":21\\}$', "reply": "Sunny and 21 in Paris"},
                ]
            }
        )
    )
    plan = tmp_path / "plan.agent"
    plan.write_text(
        "plan scripted {\n"
        '  step ask = llm.chat(prompt = "What is the weather in Paris?", '
        'provider = "scripted:script.json", tools = ["std.echo"], max_turns = 3)\n'
        "  output answer = ask.output\n}\n"
    )
    events: list[Event] = []
    report = run_plan(plan, events=events.append)
    assert report.outputs == {"answer": "Sunny and 21 in Paris"}  # not the prompt's rule again
    started = [e for e in events if e.event == "tool_call_started"]
    assert [(e.call_id, e.tool) for e in started] == [  # type: ignore[attr-defined]
        ("call_1_1", "std.echo"),
        ("call_1_2", "std.echo"),
    ]
    assert report.steps["ask"].turns == 2
