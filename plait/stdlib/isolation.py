"""Process isolation: a tool call in a worker process that can really be stopped.

A sync tool in a thread cannot be interrupted: after a timeout its thread runs on (and
keeps its concurrency slot). A tool registered with `@plait.tool(isolation="process")`, or
called as `py.call(..., isolation = "process")`, runs instead in a fresh Python process
(`python -m plait.stdlib.isolation`) that is killed with its process group on timeout,
deadline or Ctrl-C, like `shell.run`, and dies with plait (`workers.child_options`).

The price: the worker starts a Python interpreter and imports the tool's module (tens of
milliseconds or more per call), arguments and the result cross as JSON (the result is
coerced to JSON in the worker), `ToolContext.run_state` is not shared, and the function
must be importable by name (a module, or a file `use`d by the plan), not a closure.

Protocol: the job is one JSON object on the worker's stdin; the worker writes JSON lines
on its original stdout (`{"emit": NAME, "fields": {...}}` for `ctx.emit`, then
`{"ok": true, "value": ...}` or `{"ok": false, "kind": ..., "message": ...}`), and points
its own stdout at stderr so a tool's `print` never mixes into the protocol.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait.errors import ToolError, error_for_kind, kind_of
from plait.stdlib.registry import ToolContext
from plait.stdlib.workers import as_failure, child_options


async def run_isolated(
    func: Callable[..., Any],
    kwargs: dict[str, Any],
    ctx: ToolContext | None,
    *,
    limit: int | None,
    name: str,
) -> Any:
    """Call a registered tool function in a worker process; its JSON result, or raises."""
    context_param = next((k for k, v in kwargs.items() if isinstance(v, ToolContext)), None)
    args = {k: v for k, v in kwargs.items() if k != context_param}
    job = {"target": _locate(func, name), "args": args, "context_param": context_param}
    return await _run_job(job, ctx, limit)


async def call_isolated(
    function: str, args: dict[str, Any], ctx: ToolContext, limit: int | None
) -> Any:
    """`py.call(function = "pkg.module:name", isolation = "process", ...)`."""
    job = {"function": function, "args": args}
    return await _run_job(job, ctx, limit)


def _locate(func: Callable[..., Any], name: str) -> dict[str, Any]:
    qualname = getattr(func, "__qualname__", "")
    module_name = getattr(func, "__module__", "")
    if "<locals>" in qualname or not module_name:
        raise ToolError(
            f'{name}: isolation="process" needs a function defined at the top '
            "level of a module (the worker imports it by name)"
        )
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None) if module is not None else None
    by_file = module_name.startswith("plait_use_") or module_name == "__main__"
    return {
        "module": module_name,
        "file": file if by_file else None,
        "qualname": qualname,
        "stem": getattr(module, "__plait_stem__", None),
    }


async def _run_job(job: dict[str, Any], ctx: ToolContext | None, limit: int | None) -> Any:
    job = {
        **job,
        "limit": limit,
        "sys_path": [p for p in sys.path if p],
        "context": None
        if ctx is None
        else {
            "run_id": ctx.run_id,
            "step": ctx.step,
            "attempt": ctx.attempt,
            "element": ctx.element,
            "plan_dir": str(ctx.plan_dir),
        },
    }
    payload = json.dumps(job, default=str).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plait.stdlib.isolation",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
        **child_options(),
    )
    try:
        out, _ = await proc.communicate(payload)
    except BaseException:  # timeout, deadline or Ctrl-C: end the worker and all it started
        from plait.stdlib.shell import terminate_group

        await terminate_group(proc)
        raise
    return _result(out, proc.returncode, ctx)


def _result(out: bytes, code: int | None, ctx: ToolContext | None) -> Any:
    final: dict[str, Any] | None = None
    for line in out.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict):
            continue
        if "emit" in message and ctx is not None:
            ctx.emit(str(message["emit"]), dict(message.get("fields") or {}))
        elif "ok" in message:
            final = message
    if final is None:
        raise ToolError(f"the worker process {_ended(code)} without a result")
    if final["ok"]:
        return final.get("value")
    raise error_for_kind(
        str(final.get("kind") or "tool_error"),
        str(final.get("message")),
        retry_after=final.get("retry_after"),
    )


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# --- the worker ----------------------------------------------------------------------------


def _worker() -> None:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the tool's own prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    job = json.loads(sys.stdin.buffer.read())
    sys.path[:0] = [p for p in job.get("sys_path", []) if p not in sys.path]

    def send(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message, ensure_ascii=False) + "\n")
        proto.flush()

    try:
        value = _call(job, send)
        from plait.runtime.values import to_json_value

        send({"ok": True, "value": to_json_value(value, job.get("limit"))})
    except BaseException as raised:  # everything goes back to the step
        exc = as_failure(raised)
        text = exc.message if isinstance(exc, ToolError) else str(exc)
        if not isinstance(exc, ToolError):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        send(
            {
                "ok": False,
                "kind": kind_of(exc).value,
                "message": text or type(exc).__name__,
                "retry_after": getattr(exc, "retry_after", None),
            }
        )
    proto.close()


def _call(job: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> Any:
    raw = job.get("context")
    ctx = None
    if raw is not None:
        ctx = ToolContext(
            run_id=raw["run_id"],
            step=raw["step"],
            attempt=raw["attempt"],
            element=raw["element"],
            plan_dir=Path(raw["plan_dir"]),
            emit=lambda name, fields: send({"emit": name, "fields": fields}),
        )
    args = dict(job["args"])
    if "function" in job:  # py.call
        from plait.stdlib.py import prepared_call

        assert ctx is not None
        func, args = prepared_call(ctx, job["function"], args)
    else:
        func = _import(job["target"])
        if job.get("context_param"):
            args[job["context_param"]] = ctx
    result = func(**args)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        result = asyncio.run(wait())
    return result


def _import(target: dict[str, Any]) -> Callable[..., Any]:
    if target.get("file"):
        # (a tool defined in a script run as __main__ must not replace this worker's main)
        name = target["module"] if target["module"] != "__main__" else "plait_isolated_main"
        spec = importlib.util.spec_from_file_location(name, target["file"])
        if spec is None or spec.loader is None:
            raise ToolError(f"cannot load {target['file']}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        if target.get("stem"):
            module.__dict__["__plait_stem__"] = target["stem"]
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target["module"])
    value: Any = module
    for part in str(target["qualname"]).split("."):
        value = getattr(value, part)
    return value  # type: ignore[no-any-return]


if __name__ == "__main__":
    _worker()
