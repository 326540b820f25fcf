"""llm.chat against a fake OpenAI-compatible server on 127.0.0.1, and the scripted provider."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.registry import ToolContext
from tests.servers import FakeLLM
from tests.stdlib.conftest import Events, call, invoke, run_with

SCHEMA = {"category": "str", "urgency": "int"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PLAIT_LLM_BASE_URL",
        "PLAIT_LLM_API_KEY",
        "PLAIT_LLM_MODEL",
        "PLAIT_LLM_PROVIDER",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, llm_server: FakeLLM) -> FakeLLM:
    monkeypatch.setenv("PLAIT_LLM_BASE_URL", llm_server.url("/v1"))
    monkeypatch.setenv("PLAIT_LLM_MODEL", "test-model")
    return llm_server


def fails(ctx: ToolContext, **args: Any) -> ToolError:
    with pytest.raises(ToolError) as info:
        call(ctx, "llm.chat", **args)
    return info.value


# --- the HTTP protocol ----------------------------------------------------------------------


def test_chat_sends_messages_and_reports_usage(
    ctx: ToolContext, configured: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_LLM_API_KEY", "sk-test-123")
    configured.api_key = "sk-test-123"
    configured.reply = "Hello there"
    assert (
        call(ctx, "llm.chat", prompt="Say hi", system="Be brief", temperature=0.2) == "Hello there"
    )
    sent = configured.requests[-1].body
    assert sent["model"] == "test-model" and sent["temperature"] == 0.2
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Say hi"},
    ]
    assert "response_format" not in sent
    assert isinstance(ctx.emit, Events)
    [(name, usage)] = ctx.emit.items
    assert name == "llm_usage" and usage["model"] == "test-model"
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] == 2
    assert 0 <= usage["latency_s"] < 5


def test_arguments_beat_environment(
    ctx: ToolContext, configured: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_LLM_BASE_URL", "http://127.0.0.1:9/nothing-here")
    call(ctx, "llm.chat", prompt="x", base_url=configured.url("/v1"), model="other")
    assert configured.requests[-1].body["model"] == "other"


def test_schema_asks_for_json_and_validates(ctx: ToolContext, configured: FakeLLM) -> None:
    configured.reply = '```json\n{"category": "billing", "urgency": "3", "extra": 1}\n```'
    assert call(ctx, "llm.chat", prompt="classify", schema=SCHEMA) == {
        "category": "billing",
        "urgency": 3,
    }
    sent = configured.requests[-1].body
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0]["role"] == "system"
    assert "urgency" in sent["messages"][0]["content"]


def test_nested_and_list_schema(ctx: ToolContext, configured: FakeLLM) -> None:
    configured.reply = json.dumps(
        {
            "tags": ["a", "b"],
            "who": {"name": "Ann", "vip": True},
            "scores": [1.5],
            "meta": {"x": 1},
            "raw": None,
        }
    )
    schema = {
        "tags": "list[str]",
        "who": {"name": "str", "vip": "bool"},
        "scores": "list[float]",
        "meta": "dict",
        "raw": "any",
    }
    assert call(ctx, "llm.chat", prompt="p", schema=schema)["who"] == {"name": "Ann", "vip": True}


@pytest.mark.parametrize(
    "answer",
    ['{"category": "bug"}', "not json at all", '{"category": "bug", "urgency": "high"}', "[1, 2]"],
)
def test_non_conforming_answer_is_invalid_output(
    ctx: ToolContext, configured: FakeLLM, answer: str
) -> None:
    configured.reply = answer
    err = fails(ctx, prompt="classify", schema=SCHEMA)
    assert err.kind is ErrorKind.INVALID_OUTPUT


def test_unknown_schema_type_is_invalid_input_before_any_call(
    ctx: ToolContext, configured: FakeLLM
) -> None:
    err = fails(ctx, prompt="p", schema={"a": "strng"})
    assert err.kind is ErrorKind.INVALID_INPUT and "strng" in err.message
    assert configured.requests == []


@pytest.mark.parametrize(
    ("step", "kind", "hint"),
    [
        ({"status": 429, "retry_after": 4}, ErrorKind.RATE_LIMITED, 4.0),
        ({"status": 500}, ErrorKind.TRANSIENT, None),
        ({"status": 503, "retry_after": 2}, ErrorKind.TRANSIENT, 2.0),
        ({"status": 400}, ErrorKind.PERMANENT, None),
        ({"raw": "{broken"}, ErrorKind.INVALID_OUTPUT, None),
    ],
)
def test_http_errors_map_to_kinds(
    ctx: ToolContext, configured: FakeLLM, step: dict[str, Any], kind: ErrorKind, hint: float | None
) -> None:
    configured.script.append(step)
    err = fails(ctx, prompt="p")
    assert err.kind is kind
    assert err.retry_after == hint


def test_bad_key_is_permanent_and_says_which_variable(
    ctx: ToolContext, configured: FakeLLM
) -> None:
    configured.api_key = "right"
    err = fails(ctx, prompt="p", api_key="wrong")
    assert err.kind is ErrorKind.PERMANENT
    assert "401" in err.message and "PLAIT_LLM_API_KEY" in err.message


def test_no_provider_says_exactly_what_to_set(ctx: ToolContext) -> None:
    err = fails(ctx, prompt="p")
    assert err.kind is ErrorKind.PERMANENT
    for name in (
        "PLAIT_LLM_BASE_URL",
        "PLAIT_LLM_API_KEY",
        "PLAIT_LLM_MODEL",
        "PLAIT_LLM_PROVIDER=scripted:PATH",
        'provider = "scripted:PATH"',
    ):
        assert name in err.message


def test_no_model_is_permanent(ctx: ToolContext, llm_server: FakeLLM) -> None:
    err = fails(ctx, prompt="p", base_url=llm_server.url("/v1"))
    assert err.kind is ErrorKind.PERMANENT and "PLAIT_LLM_MODEL" in err.message


def test_unknown_provider_is_invalid_input(ctx: ToolContext) -> None:
    assert fails(ctx, prompt="p", provider="gpt").kind is ErrorKind.INVALID_INPUT


def test_slow_server_is_cancellable(ctx: ToolContext, configured: FakeLLM) -> None:
    configured.script.append({"delay": 5})

    async def body() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await invoke(ctx, "llm.chat", prompt="p")
        return time.monotonic() - started

    assert run_with(ctx, body) < 3


# --- the scripted provider ------------------------------------------------------------------


def write_rules(folder: Path, rules: Any, name: str = "rules.json") -> str:
    path = folder / name
    text = json.dumps(rules) if name.endswith(".json") else rules
    path.write_text(text)
    return name


def test_scripted_first_matching_rule_answers(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path,
        {
            "rules": [
                {"match": "refund|invoice", "reply": {"category": "billing", "urgency": 2}},
                {"match": "crash", "reply": "It is a bug"},
                {"match": ".", "reply": "anything"},
            ]
        },
    )
    provider = f"scripted:{name}"
    assert call(ctx, "llm.chat", prompt="I want a refund", provider=provider) == {
        "category": "billing",
        "urgency": 2,
    }
    assert call(ctx, "llm.chat", prompt="App crash on start", provider=provider) == "It is a bug"
    assert call(ctx, "llm.chat", prompt="hm", provider=provider) == "anything"


def test_scripted_from_environment_yaml_relative_to_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_dir = tmp_path / "plans"
    plan_dir.mkdir()
    write_rules(plan_dir, 'rules:\n  - match: "hello"\n    reply: "hi!"\n', "r.yaml")
    monkeypatch.setenv("PLAIT_LLM_PROVIDER", "scripted:r.yaml")
    from tests.stdlib.conftest import make_ctx

    assert call(make_ctx(plan_dir), "llm.chat", prompt="hello world") == "hi!"


def test_scripted_argument_beats_environment(
    ctx: ToolContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_LLM_PROVIDER", "scripted:missing.json")
    name = write_rules(tmp_path, {"default": "from the argument"})
    assert call(ctx, "llm.chat", prompt="x", provider=f"scripted:{name}") == "from the argument"


def test_scripted_text_reply_with_schema_is_validated(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path,
        {
            "rules": [
                {"match": "good", "reply": '{"category": "bug", "urgency": 4}'},
                {"match": "bad", "reply": "category: bug"},
            ]
        },
    )
    assert call(ctx, "llm.chat", prompt="good", schema=SCHEMA, provider=f"scripted:{name}") == {
        "category": "bug",
        "urgency": 4,
    }
    err = fails(ctx, prompt="bad", schema=SCHEMA, provider=f"scripted:{name}")
    assert err.kind is ErrorKind.INVALID_OUTPUT


def test_scripted_object_reply_is_checked_against_the_schema(
    ctx: ToolContext, tmp_path: Path
) -> None:
    """An object reply meets `schema` exactly as a model's answer does (SPEC section 9):
    offline runs fail with invalid_output where real ones would."""
    name = write_rules(
        tmp_path,
        {
            "rules": [
                {"match": "fits", "reply": {"category": "bug", "urgency": 4}},
            ],
            "default": {"anything": [1]},
        },
    )
    provider = f"scripted:{name}"
    assert call(ctx, "llm.chat", prompt="fits", schema=SCHEMA, provider=provider) == {
        "category": "bug",
        "urgency": 4,
    }
    err = fails(ctx, prompt="x", schema=SCHEMA, provider=provider)
    assert err.kind is ErrorKind.INVALID_OUTPUT
    assert "does not fit the schema" in err.message and "category" in err.message
    assert call(ctx, "llm.chat", prompt="x", provider=provider) == {"anything": [1]}  # no schema


def test_scripted_fail_times_then_passed_over(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path,
        {
            "rules": [
                {"match": "ticket", "fail": "rate_limited", "times": 2, "retry_after": 1.5},
                {"match": "ticket", "reply": "answered"},
            ]
        },
    )

    async def body() -> list[Any]:
        results: list[Any] = []
        for _ in range(3):
            try:
                results.append(
                    await invoke(ctx, "llm.chat", prompt="a ticket", provider=f"scripted:{name}")
                )
            except ToolError as exc:
                results.append((exc.kind, exc.retry_after))
        return results

    assert run_with(ctx, body) == [
        (ErrorKind.RATE_LIMITED, 1.5),
        (ErrorKind.RATE_LIMITED, 1.5),
        "answered",
    ]


def test_scripted_times_without_fail_answers_then_passes(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path, {"rules": [{"match": "q", "reply": "first", "times": 1}], "default": "later"}
    )

    async def body() -> list[Any]:
        return [
            await invoke(ctx, "llm.chat", prompt="q", provider=f"scripted:{name}") for _ in range(3)
        ]

    assert run_with(ctx, body) == ["first", "later", "later"]


def test_scripted_fail_without_times_always_fails(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(tmp_path, {"rules": [{"match": "x", "fail": "timeout"}]})
    for _ in range(2):
        assert fails(ctx, prompt="x", provider=f"scripted:{name}").kind is ErrorKind.TIMEOUT


def test_scripted_delay_waits_and_is_cancellable(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path,
        {
            "rules": [
                {"match": "slow", "reply": "done", "delay": 0.3},
                {"match": "stuck", "reply": "never", "delay": 30},
            ]
        },
    )

    async def body() -> tuple[float, float]:
        started = time.monotonic()
        assert await invoke(ctx, "llm.chat", prompt="slow", provider=f"scripted:{name}") == "done"
        waited = time.monotonic() - started
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await invoke(ctx, "llm.chat", prompt="stuck", provider=f"scripted:{name}")
        return waited, time.monotonic() - started

    waited, total = run_with(ctx, body)
    assert waited >= 0.29 and total < 5


def test_scripted_no_match_no_default_is_permanent(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(tmp_path, {"rules": [{"match": "^never$", "reply": "x"}]})
    err = fails(ctx, prompt="something", provider=f"scripted:{name}")
    assert err.kind is ErrorKind.PERMANENT and "no rule" in err.message


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (None, "not found"),
        ("{nope", "does not parse"),
        ('{"rules": [{"match": "(", "reply": "x"}]}', "bad regex"),
        ('{"rules": [{"match": "x", "fail": "explode"}]}', "invalid"),
        ('{"rules": [{"match": "x"}]}', "neither `reply` nor `fail`"),
        ('{"rulez": []}', "invalid"),
    ],
)
def test_scripted_bad_rules_file_is_permanent(
    ctx: ToolContext, tmp_path: Path, content: str | None, expect: str
) -> None:
    if content is not None:
        (tmp_path / "bad.json").write_text(content)
    err = fails(ctx, prompt="x", provider="scripted:bad.json")
    assert err.kind is ErrorKind.PERMANENT
    assert expect in err.message and "bad.json" in err.message


def test_scripted_rules_read_once_per_run(ctx: ToolContext, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"default": "v1"}))

    async def body() -> list[Any]:
        first = await invoke(ctx, "llm.chat", prompt="x", provider="scripted:r.json")
        path.write_text(json.dumps({"default": "v2"}))
        return [first, await invoke(ctx, "llm.chat", prompt="x", provider="scripted:r.json")]

    assert run_with(ctx, body) == ["v1", "v1"]


def test_scripted_times_holds_under_concurrent_calls(ctx: ToolContext, tmp_path: Path) -> None:
    name = write_rules(
        tmp_path,
        {"rules": [{"match": "q", "reply": "once", "times": 1, "delay": 0.1}], "default": "other"},
    )

    async def body() -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    invoke(ctx, "llm.chat", prompt="q", provider=f"scripted:{name}")
                    for _ in range(4)
                )
            )
        )

    assert sorted(run_with(ctx, body)) == ["once", "other", "other", "other"]
