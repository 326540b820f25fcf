"""`llm.chat`: the OpenAI-compatible chat-completions protocol over httpx, answers checked
against a `schema`, and the `scripted` provider that answers from a local rules file so plans
and tests run offline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from plait.errors import ErrorKind, InvalidInput, InvalidOutput, Permanent, error_for_kind
from plait.stdlib import http
from plait.stdlib.registry import ToolContext, tool

ENV_BASE_URL = "PLAIT_LLM_BASE_URL"
ENV_API_KEY = "PLAIT_LLM_API_KEY"
ENV_MODEL = "PLAIT_LLM_MODEL"
ENV_PROVIDER = "PLAIT_LLM_PROVIDER"
SCRIPTED_PREFIX = "scripted:"
HTTP_PROVIDERS = ("openai", "openai-compatible")

NOT_CONFIGURED = (
    "no LLM provider configured: set PLAIT_LLM_BASE_URL (e.g. http://localhost:11434/v1), "
    "PLAIT_LLM_MODEL and, if the server needs one, PLAIT_LLM_API_KEY; or answer offline from "
    "a rules file with PLAIT_LLM_PROVIDER=scripted:PATH or the argument "
    'provider = "scripted:PATH"'
)


def _check_schema(schema: dict[str, Any] | None) -> None:
    """`plait check`: every type name in a literal `schema` must be known."""
    if schema is not None:
        schema_model(schema)


@tool(name="llm.chat", checks={"schema": _check_schema}, self_admitting="tools")
async def chat(
    ctx: ToolContext,
    prompt: str,
    system: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    schema: dict[str, Any] | None = None,
    provider: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    max_tokens: int | None = None,
    tools: list[str] | None = None,
    max_turns: int | None = None,
) -> Any:
    """Ask a chat model; returns the text, or the parsed object when `schema` is set.

    Args:
        prompt: the user message.
        system: a system message.
        schema: the answer's shape, e.g. {category: "str", urgency: "int"}.
        tools: presets and tools the model may call (SPEC section 11).
        max_turns: model requests allowed with `tools` (default 10).
    """
    answer_model = schema_model(schema) if schema is not None else None
    chosen = provider if provider is not None else os.environ.get(ENV_PROVIDER, "")
    scripted = chosen.startswith(SCRIPTED_PREFIX)
    if chosen and not scripted and chosen not in HTTP_PROVIDERS:
        raise InvalidInput(
            f'llm.chat: unknown provider {chosen!r}; use "scripted:PATH" or '
            f"{' / '.join(repr(p) for p in HTTP_PROVIDERS)}"
        )
    request = ChatRequest(
        prompt=prompt,
        system=system,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        answer_model=answer_model,
    )
    if tools:
        return await _converse(ctx, request, chosen, base_url, api_key, tools, max_turns)
    if max_turns is not None:
        raise InvalidInput("llm.chat: `max_turns` is allowed only with `tools`")
    if scripted:
        return await scripted_chat(ctx, chosen[len(SCRIPTED_PREFIX) :], prompt, model, answer_model)
    return await http_chat(ctx, request, base_url, api_key)


async def _converse(
    ctx: ToolContext,
    request: ChatRequest,
    chosen: str,
    base_url: str | None,
    api_key: str | None,
    tools: list[str],
    max_turns: int | None,
) -> Any:
    from plait.stdlib import agent  # the conversation builds on this module

    turns = agent.DEFAULT_MAX_TURNS if max_turns is None else max_turns
    if not 1 <= turns <= 100:
        raise InvalidInput(f"llm.chat: `max_turns` must be from 1 to 100, not {turns}")
    provider: agent.Provider
    if chosen.startswith(SCRIPTED_PREFIX):
        provider = agent.ScriptedProvider(chosen[len(SCRIPTED_PREFIX) :], request.model)
    else:
        endpoint = Endpoint.configured(request.model, base_url, api_key)
        provider = agent.HttpProvider(endpoint, request.temperature, request.max_tokens)
    return await agent.converse(ctx, request, provider, tools, turns)


# --- the OpenAI-compatible protocol ---------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    prompt: str
    system: str | None
    model: str | None
    temperature: float | None
    max_tokens: int | None
    answer_model: type[BaseModel] | None


async def http_chat(
    ctx: ToolContext, req: ChatRequest, base_url: str | None, api_key: str | None
) -> Any:
    """POST {base}/chat/completions; errors map like http.* (429, 5xx, 4xx)."""
    endpoint = Endpoint.configured(req.model, base_url, api_key)
    data = await endpoint.complete(ctx, _request_body(req, endpoint.model))
    text = _read_text(data, endpoint.url)
    return text if req.answer_model is None else parse_answer(text, req.answer_model)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom chat completions are asked for (shared with the agent loop)."""

    url: str
    model: str
    headers: dict[str, str]

    @classmethod
    def configured(cls, model: str | None, base_url: str | None, api_key: str | None) -> Endpoint:
        base = base_url or os.environ.get(ENV_BASE_URL, "")
        if not base:
            raise Permanent(NOT_CONFIGURED)
        chosen = model or os.environ.get(ENV_MODEL, "")
        if not chosen:
            raise Permanent('llm.chat: no model: pass `model = "…"` or set PLAIT_LLM_MODEL')
        key = api_key or os.environ.get(ENV_API_KEY, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return cls(base.rstrip("/") + "/chat/completions", chosen, headers)

    async def complete(self, ctx: ToolContext, body: dict[str, Any]) -> dict[str, Any]:
        """POST one request; the decoded answer (its `usage` emitted as `llm_usage`)."""
        started = time.monotonic()
        response = await http.send(ctx, "POST", self.url, headers=self.headers, json=body)
        if response.status_code in (401, 403):
            raise Permanent(
                f"HTTP {response.status_code} from {http.shown_url(self.url)}: the "
                "server refused the key (check PLAIT_LLM_API_KEY): "
                f"{http.excerpt(response.text)}"
            )
        http.raise_for_status(response)
        try:
            data = response.json()
            if not isinstance(data["choices"][0]["message"], dict):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError):
            raise InvalidOutput(
                f"{http.shown_url(self.url)}: not a chat-completions answer: "
                f"{http.excerpt(response.text)}"
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        answered_by = data.get("model") if isinstance(data.get("model"), str) else None
        ctx.emit(
            "llm_usage",
            {
                "provider": "openai",
                "model": answered_by or self.model,
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "latency_s": round(time.monotonic() - started, 3),
            },
        )
        return data  # type: ignore[no-any-return]


def _request_body(req: ChatRequest, model: str) -> dict[str, Any]:
    system = req.system
    if req.answer_model is not None:
        system = "\n\n".join(s for s in (system, json_instruction(req.answer_model)) if s)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": req.prompt})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.answer_model is not None:
        body["response_format"] = {"type": "json_object"}
    return body


def _read_text(data: dict[str, Any], url: str) -> str:
    """The answer text of a decoded chat-completions response."""
    content = data["choices"][0]["message"].get("content")
    if not isinstance(content, str):
        raise InvalidOutput(f"{http.shown_url(url)}: the answer has no text content")
    return content


def json_instruction(answer_model: type[BaseModel]) -> str:
    schema = json.dumps(answer_model.model_json_schema(), separators=(",", ":"))
    return (
        "Answer with one JSON object only, no prose and no code fences, matching this "
        f"JSON Schema: {schema}"
    )


# --- schemas: {category: "str", urgency: "int"} -> a pydantic model -------------------------

TYPE_NAMES: dict[str, Any] = {
    "str": str,
    "string": str,
    "int": int,
    "integer": int,
    "float": float,
    "number": float,
    "bool": bool,
    "boolean": bool,
    "list": list[Any],
    "dict": dict[str, Any],
    "any": Any,
}


def schema_model(schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model for a `schema` argument (raises InvalidInput for unknown types)."""
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInput("llm.chat: `schema` must be a dict of JSON values") from None
    return _cached_model(key)


@lru_cache(maxsize=256)
def _cached_model(schema_json: str) -> type[BaseModel]:
    return _model_for(json.loads(schema_json), "Answer")


def _model_for(schema: dict[str, Any], name: str) -> type[BaseModel]:
    fields = {key: (_type_for(value, f"{name}.{key}"), ...) for key, value in schema.items()}
    config = ConfigDict(extra="ignore")
    return create_model(re.sub(r"\W", "_", name), __config__=config, **fields)  # type: ignore[call-overload, no-any-return]


def _type_for(spec: Any, where: str) -> Any:
    if isinstance(spec, dict):
        return _model_for(spec, where)
    if isinstance(spec, list) and len(spec) == 1:
        return list[_type_for(spec[0], where)]  # type: ignore[misc]
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in TYPE_NAMES:
            return TYPE_NAMES[name]
        inner = re.fullmatch(r"list\[(.+)\]", name)
        if inner:
            return list[_type_for(inner.group(1), where)]  # type: ignore[misc]
    known = ", ".join(k for k in TYPE_NAMES if k not in ("string", "integer", "number", "boolean"))
    raise InvalidInput(
        f"llm.chat: schema field `{where.split('.', 1)[-1]}` has type {spec!r}; "
        f"use one of {known}, list[T] or a nested dict"
    )


def parse_answer(text: str, answer_model: type[BaseModel]) -> Any:
    """Parse a model's text answer as JSON and validate it (InvalidOutput if it does not fit)."""
    try:
        value = json.loads(_strip_fences(text))
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the answer is not JSON ({exc.msg}): {http.excerpt(text)}") from None
    return check_answer(value, answer_model, text)


def check_answer(value: Any, answer_model: type[BaseModel], text: str) -> Any:
    """A parsed answer validated against the schema (InvalidOutput if it does not fit)."""
    try:
        return answer_model.model_validate(value).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(x) for x in e['loc']) or '(answer)'}`: {e['msg'].lower()}"
            for e in exc.errors()
        )
        raise InvalidOutput(
            f"the answer does not fit the schema: {problems}; answer was: {http.excerpt(text)}"
        ) from None


def _strip_fences(text: str) -> str:
    """Models often wrap JSON in ```json fences despite being told not to."""
    match = re.fullmatch(r"\s*```[A-Za-z]*\s*\n?(.*?)\n?\s*```\s*", text, re.DOTALL)
    return match.group(1) if match else text


# --- the scripted provider ------------------------------------------------------------------

RULES_KEY = "llm.scripted.rules"
HITS_KEY = "llm.scripted.hits"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: str
    reply: Any = None
    fail: ErrorKind | None = None
    delay: float | None = None
    times: int | None = None
    retry_after: float | None = None  # a hint carried by a scripted failure


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = []
    default: Any = None


@dataclass(frozen=True)
class Script:
    path: Path
    rules: tuple[tuple[re.Pattern[str], Rule], ...]
    has_default: bool
    default: Any


async def scripted_chat(
    ctx: ToolContext,
    path_text: str,
    prompt: str,
    model: str | None,
    answer_model: type[BaseModel] | None,
) -> Any:
    """Answer from the first rule whose regex is found in the prompt (SPEC section 9)."""
    reply = await scripted_reply(ctx, path_text, prompt, model)
    if answer_model is None:
        return reply
    if isinstance(reply, str):
        return parse_answer(reply, answer_model)
    # an object reply is checked exactly as a model's parsed answer (SPEC section 9), so an
    # offline run fails with invalid_output where a real one would
    return check_answer(reply, answer_model, to_text(reply))


async def scripted_reply(ctx: ToolContext, path_text: str, text: str, model: str | None) -> Any:
    """The reply of the first rule whose regex is found in `text`, as written in the file
    (a rule's `fail` raised, its `delay` waited)."""
    script = load_script(ctx, path_text)
    started = time.monotonic()
    rule, index = _pick_rule(ctx, script, text)
    if rule is not None and rule.delay:
        await asyncio.sleep(rule.delay)
    if rule is not None and rule.fail is not None:
        raise error_for_kind(
            rule.fail,
            f"scripted failure (rule {index + 1}, match {rule.match!r})",
            retry_after=rule.retry_after,
        )
    if rule is None and not script.has_default:
        raise Permanent(
            f"no rule in {script.path} matches the prompt and it has no `default`:"
            f" {http.excerpt(text, 120)}"
        )
    ctx.emit(
        "llm_usage",
        {
            "provider": "scripted",
            "model": model or "scripted",
            "prompt_tokens": None,
            "completion_tokens": None,
            "latency_s": round(time.monotonic() - started, 3),
        },
    )
    return rule.reply if rule is not None else script.default


def to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _pick_rule(ctx: ToolContext, script: Script, prompt: str) -> tuple[Rule | None, int]:
    """The first matching rule with calls left; counts the hit (before any delay)."""
    hits: dict[tuple[Path, int], int] = ctx.run_state.setdefault(HITS_KEY, {})
    for index, (pattern, rule) in enumerate(script.rules):
        if not pattern.search(prompt):
            continue
        seen = hits.get((script.path, index), 0)
        if rule.times is not None and seen >= rule.times:
            continue  # used up: passed over
        hits[(script.path, index)] = seen + 1
        return rule, index
    return None, -1


def load_script(ctx: ToolContext, path_text: str) -> Script:
    """The parsed rules file, read once per run (relative paths from the plan's folder)."""
    path = (Path(ctx.plan_dir) / Path(path_text.strip()).expanduser()).absolute()
    cache: dict[Path, Script] = ctx.run_state.setdefault(RULES_KEY, {})
    if path not in cache:
        cache[path] = _read_script(path)
    return cache[path]


def _read_script(path: Path) -> Script:
    where = f"scripted LLM rules file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Permanent(
            f"{where} not found (a relative path is read from the plan's folder)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Permanent(f"cannot read {where}: {exc}") from None
    import yaml  # only for scripted rules: `plait check` never reads them

    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise Permanent(f"{where} does not parse: {' '.join(str(exc).split())}") from None
    try:
        parsed = RulesFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(x) for x in e['loc'])}`: {e['msg'].lower()}" for e in exc.errors()
        )
        raise Permanent(f"{where} is invalid: {problems}") from None
    return Script(
        path,
        _compile_rules(parsed.rules, where),
        isinstance(raw, dict) and "default" in raw,
        parsed.default,
    )


def _compile_rules(rules: list[Rule], where: str) -> tuple[tuple[re.Pattern[str], Rule], ...]:
    compiled = []
    for number, rule in enumerate(rules, 1):
        if rule.reply is None and rule.fail is None:
            raise Permanent(f"{where}: rule {number} has neither `reply` nor `fail`")
        try:
            compiled.append((re.compile(rule.match), rule))
        except re.error as exc:
            raise Permanent(
                f"{where}: rule {number} has a bad regex {rule.match!r}: {exc}"
            ) from None
    return tuple(compiled)
