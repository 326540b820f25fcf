"""The tool-calling conversation of `llm.chat(…, tools = […], max_turns = N)` (SPEC 11).

A *turn* is one model request. Each reply's tool calls run concurrently, each under its own
tool's policies: the runtime's `AgentHost` (given as `ToolContext.agent`) admits every model
request like an attempt, runs every tool call with its preset's timeout, retry and
resources, emits the `tool_call_*` events and journals replies and results, so a resumed
conversation repeats no finished tool call. This module only speaks the protocol: the
OpenAI-compatible `tools` / `tool_calls` / `tool` messages, or the scripted provider's rules.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from plait.errors import ErrorKind, InvalidInput, InvalidOutput, LoopExhausted, ToolError
from plait.stdlib import llm
from plait.stdlib.registry import ToolContext, ToolSpec

T = TypeVar("T")
# Arguments a model never sees: who answers, and the conversation's own settings.
HIDDEN_ARGS = frozenset({"provider", "base_url", "api_key", "tools", "max_turns"})
SCHEMA_MISMATCH = "Your answer does not match the schema:"
DEFAULT_MAX_TURNS = 10


def wire_name(name: str) -> str:
    """The name a model sees: OpenAI tool names may not contain `.` (`tools.calc` ->
    `tools_calc`)."""
    return name.replace(".", "_")


# --- tools as a model sees them ---------------------------------------------------------------


@dataclass(frozen=True)
class AgentTool:
    """One entry of `tools`: a preset or a tool, with what the model may pass to it."""

    name: str  # the plait name: a preset's name or a tool's dotted name
    spec: ToolSpec
    fixed: frozenset[str] = frozenset()  # arguments the preset sets
    function: Callable[..., Any] | None = None  # a `py.call` preset's target function

    @property
    def wire(self) -> str:
        return wire_name(self.name)

    def visible(self) -> list[str]:
        hidden = self.fixed | (HIDDEN_ARGS if self.spec.name == "llm.chat" else frozenset())
        return [p.name for p in self.spec.params if p.name not in hidden]

    def declaration(self) -> dict[str, Any]:
        """The OpenAI `tools` entry: name, description and the arguments' JSON Schema."""
        source = self.function if self.function is not None else self.spec.func
        summary, described = docstring_parts(source)
        return {
            "type": "function",
            "function": {
                "name": self.wire,
                "description": summary or self.name,
                "parameters": self.parameters(described),
            },
        }

    def parameters(self, described: dict[str, str]) -> dict[str, Any]:
        if self.function is not None:
            from plait.stdlib.registry import spec_from_function

            target = spec_from_function(self.function, self.name)
            schema = target.args_model.model_json_schema()
            names = [p.name for p in target.params]
        else:
            schema = self.spec.args_model.model_json_schema()
            names = self.visible()
        props = schema.get("properties", {})
        kept = {n: _untitled(props.get(n, {})) for n in names}
        for name, text in described.items():
            if name in kept:
                kept[name]["description"] = text
        required = [n for n in schema.get("required", []) if n in kept]
        return {
            "type": "object",
            "properties": kept,
            "required": required,
            "additionalProperties": False,
        }

    def check_arguments(self, args: dict[str, Any]) -> str | None:
        """Why the model's arguments cannot be passed, or None (checked before any call)."""
        if self.function is not None:
            return None  # `py.call` checks its function's arguments itself
        fixed = sorted(self.fixed & args.keys())
        if fixed:
            return f"argument `{fixed[0]}` is set by the preset `{self.name}` and may not be passed"
        visible = self.visible()
        for arg, value in args.items():
            if arg not in visible:
                return f"`{self.name}` has no argument `{arg}`"
            problem = self.spec.literal_error(arg, value)
            if problem is not None:
                return problem
        missing = [
            p.name
            for p in self.spec.params
            if p.required and p.name not in args and p.name not in self.fixed
        ]
        if missing:
            return f"missing required argument `{missing[0]}`"
        return None


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def docstring_parts(func: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """A docstring's text before `Args:`, and each argument's description from `Args:`."""
    doc = inspect.getdoc(func) or ""
    head, _, rest = doc.partition("\nArgs:")
    described: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        entry = re.match(r"\s{0,8}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
        if entry and not line.startswith(" " * 9):
            current = entry.group(1)
            described[current] = entry.group(2).strip()
        elif current and line.strip() and line.startswith(" "):
            described[current] = f"{described[current]} {line.strip()}".strip()
        elif line.strip() and not line.startswith(" "):
            break  # the next section (Returns:, Raises:, ...)
    return " ".join(head.split()), described


# --- the runtime's side --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One `tool_calls` entry of a reply."""

    id: str
    turn: int
    position: int  # 1-based, in the reply
    name: str  # as the model wrote it
    arguments: str  # JSON text, as the model wrote it

    def as_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ToolResult:
    ok: bool
    value: Any = None
    kind: str | None = None
    message: str | None = None
    attempts: int = 0

    def content(self) -> str:
        """The `tool` message's content: a string as is, anything else as compact JSON."""
        if self.ok:
            return self.value if isinstance(self.value, str) else llm_json(self.value)
        return llm_json({"error": self.kind, "message": self.message})

    @classmethod
    def refused(cls, message: str) -> ToolResult:
        return cls(False, kind=ErrorKind.INVALID_INPUT.value, message=message)


def llm_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class AgentHost(Protocol):
    """What the runtime offers a conversation (`ToolContext.agent`)."""

    def tools(self, names: list[str]) -> list[AgentTool]:
        """The entries of `tools` (raises InvalidInput for an unknown name)."""

    async def request(self, send: Callable[[], Awaitable[T]]) -> T:
        """Run one model request admitted like an attempt (breakers, slots, rates)."""

    async def run_tool(
        self,
        tool: AgentTool | None,
        call: ToolCall,
        args: dict[str, Any] | None,
        refused: str | None,
    ) -> ToolResult:
        """Run (or, when `refused` says why, only report) one tool call under its tool's
        policies, with its events; `tool` is None for a name not in `tools`."""

    def recorded(self) -> list[dict[str, Any]]:
        """What the journal holds of this conversation (a resume), oldest first."""

    async def record(self, entry: dict[str, Any] | None) -> None:
        """Journal one reply or tool result as it arrives (returns once it is on disk);
        None: this attempt's conversation starts afresh."""


# --- providers -----------------------------------------------------------------------------


@dataclass
class Reply:
    content: Any  # text, or (scripted) an object
    calls: list[ToolCall]

    def to_record(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.calls],
        }

    @classmethod
    def from_record(cls, turn: int, data: dict[str, Any]) -> Reply:
        calls = [
            ToolCall(c["id"], turn, i, c["name"], c["arguments"])
            for i, c in enumerate(data.get("calls", []), 1)
        ]
        return cls(data.get("content"), calls)

    def assistant_message(self) -> dict[str, Any]:
        content = (
            self.content
            if isinstance(self.content, (str, type(None)))
            else (llm.to_text(self.content))
        )
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.calls:
            message["tool_calls"] = [c.as_message() for c in self.calls]
        return message


class Provider(Protocol):
    async def complete(self, ctx: ToolContext, talk: Conversation, turn: int) -> Reply: ...


@dataclass
class HttpProvider:
    endpoint: llm.Endpoint
    temperature: float | None
    max_tokens: int | None

    async def complete(self, ctx: ToolContext, talk: Conversation, turn: int) -> Reply:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": talk.messages,
            "tools": [t.declaration() for t in talk.tools],
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        data = await self.endpoint.complete(ctx, body)
        message = data["choices"][0]["message"]
        return Reply(message.get("content"), _read_calls(message, turn, self.endpoint.url))


def _read_calls(message: dict[str, Any], turn: int, url: str) -> list[ToolCall]:
    calls = []
    for position, raw in enumerate(message.get("tool_calls") or [], 1):
        try:
            function = raw["function"]
            arguments = function.get("arguments")
            calls.append(
                ToolCall(
                    str(raw.get("id") or f"call_{turn}_{position}"),
                    turn,
                    position,
                    str(function["name"]),
                    arguments if isinstance(arguments, str) else llm_json(arguments or {}),
                )
            )
        except (KeyError, TypeError, AttributeError):
            raise InvalidOutput(
                f"{url}: a tool call without a function name: {llm_json(raw)[:200]}"
            ) from None
    return calls


@dataclass
class ScriptedProvider:
    path: str
    model: str | None

    async def complete(self, ctx: ToolContext, talk: Conversation, turn: int) -> Reply:
        reply = await llm.scripted_reply(ctx, self.path, talk.match_text, self.model)
        if isinstance(reply, dict) and "tool_calls" in reply:
            calls = [
                ToolCall(
                    f"call_{turn}_{i}",
                    turn,
                    i,
                    str(c.get("name", "")),
                    llm_json(c.get("arguments", {})),
                )
                for i, c in enumerate(reply["tool_calls"] or [], 1)
            ]
            return Reply(None, calls)
        return Reply(reply, [])


# --- the conversation ----------------------------------------------------------------------


@dataclass
class Conversation:
    """The messages so far, and the text a scripted rule is matched against next."""

    tools: list[AgentTool]
    messages: list[dict[str, Any]]
    match_text: str
    answer_model: type[BaseModel] | None
    by_name: dict[str, AgentTool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tool in self.tools:
            self.by_name[tool.wire] = self.by_name[tool.name] = tool


async def converse(
    ctx: ToolContext,
    req: llm.ChatRequest,
    provider: Provider,
    tool_names: list[str],
    max_turns: int,
) -> Any:
    """Talk until the first reply without tool calls that fits `schema`, at most
    `max_turns` requests; returns the answer (SPEC section 11)."""
    host: AgentHost | None = ctx.agent
    if host is None:
        raise InvalidInput("llm.chat: `tools` needs the plait runtime (run it in a plan)")
    talk = Conversation(host.tools(tool_names), _opening(req), req.prompt, req.answer_model)
    replayed = _by_turn(host.recorded())
    if not replayed:
        await host.record(None)
    for turn in range(1, max_turns + 1):
        reply = await _reply(ctx, host, provider, talk, turn, replayed)
        if reply.calls:
            if turn == max_turns:
                raise LoopExhausted(
                    f"the model still asked for tools after {max_turns} "
                    f"turns (max_turns = {max_turns})"
                )
            talk.messages.append(reply.assistant_message())
            results = await asyncio.gather(
                *(
                    _tool_result(ctx, host, talk, call, replayed.get(turn, {}).get(call.id))
                    for call in reply.calls
                )
            )
            contents = [r.content() for r in results]
            talk.messages.extend(
                {"role": "tool", "tool_call_id": call.id, "content": text}
                for call, text in zip(reply.calls, contents, strict=True)
            )
            talk.match_text = "\n".join(contents)
            continue
        try:
            return _answer(reply.content, talk.answer_model)
        except InvalidOutput as exc:
            if turn == max_turns:
                raise
            retry = f"{SCHEMA_MISMATCH} {exc.message}"
            talk.messages.append(reply.assistant_message())
            talk.messages.append({"role": "user", "content": retry})
            talk.match_text = retry
    raise AssertionError("unreachable: every turn returns, continues or raises")


def _opening(req: llm.ChatRequest) -> list[dict[str, Any]]:
    system = req.system
    if req.answer_model is not None:
        system = "\n\n".join(s for s in (system, llm.json_instruction(req.answer_model)) if s)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": req.prompt})
    return messages


def _by_turn(entries: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Journal entries by turn: {"reply": {...}} and each call id's recorded result."""
    turns: dict[int, dict[str, Any]] = {}
    for entry in entries:
        slot = turns.setdefault(int(entry["turn"]), {})
        if "reply" in entry:
            slot["reply"] = entry["reply"]
        else:
            slot[str(entry["call_id"])] = entry["result"]
    return turns


async def _reply(
    ctx: ToolContext,
    host: AgentHost,
    provider: Provider,
    talk: Conversation,
    turn: int,
    replayed: dict[int, dict[str, Any]],
) -> Reply:
    recorded = replayed.get(turn, {}).get("reply")
    fields: dict[str, Any] = {"turn": turn, "replayed": recorded is not None}
    parent = getattr(host, "parent_call", None)
    if parent is not None:  # a sub-agent's request: not a turn of the step's conversation
        fields["parent_call"] = parent
    ctx.emit("llm_request", fields)
    if recorded is not None:
        return Reply.from_record(turn, recorded)
    reply = await host.request(lambda: provider.complete(ctx, talk, turn))
    await host.record({"turn": turn, "reply": reply.to_record()})
    return reply


async def _tool_result(
    ctx: ToolContext,
    host: AgentHost,
    talk: Conversation,
    call: ToolCall,
    recorded: dict[str, Any] | None,
) -> ToolResult:
    tool = talk.by_name.get(call.name)
    if recorded is not None:  # ran in an earlier session: not again (SPEC section 11)
        result = ToolResult(**recorded)
        # The report's `tool_calls` counts the calls of every attempt, this one's earlier
        # calls included; this event lets it count one that is not run again.
        ctx.emit(
            "tool_call_replayed",
            {
                "turn": call.turn,
                "call_id": call.id,
                "tool": tool.name if tool is not None else call.name,
                "status": "succeeded" if result.ok else "failed",
            },
        )
        return result
    args, refused = _arguments(tool, call)
    result = await host.run_tool(tool, call, args, refused)
    await host.record(
        {
            "turn": call.turn,
            "call_id": call.id,
            "result": {
                "ok": result.ok,
                "value": result.value,
                "kind": result.kind,
                "message": result.message,
                "attempts": result.attempts,
            },
        }
    )
    return result


def _arguments(tool: AgentTool | None, call: ToolCall) -> tuple[dict[str, Any] | None, str | None]:
    """The call's arguments, or why it is refused uncalled (as `invalid_input`)."""
    if tool is None:
        return None, f"no tool `{call.name}` in `tools`"
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return None, f"the arguments are not JSON ({exc})"
    if not isinstance(args, dict):
        return None, "the arguments must be a JSON object"
    return args, tool.check_arguments(args)


def _answer(content: Any, answer_model: type[BaseModel] | None) -> Any:
    if answer_model is None:
        if content is None:
            raise InvalidOutput("the model's answer has no content")
        return content
    if isinstance(content, str):
        return llm.parse_answer(content, answer_model)
    return llm.check_answer(content, answer_model, llm.to_text(content))


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception a tool call raised."""
    if isinstance(exc, ToolError):
        return exc.kind.value, exc.message or type(exc).__name__
    return ErrorKind.TOOL_ERROR.value, f"{type(exc).__name__}: {exc}"
