"""The embedding API: `run_plan(path_or_plan, inputs) -> RunReport` and its async twin.

Also the pieces the CLI shares: loading a plan, parsing and validating inputs, parsing
`--inject`, and `Runner`, which runs one plan with signal handling and event sinks.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from plait import jsontext
from plait.compiler.ir import CompiledPlan, Input, Plan, fits_input_type
from plait.errors import ErrorKind, UserError
from plait.runtime.clock import Clock, RealClock
from plait.runtime.events import Sink
from plait.runtime.guards import ResourceGuards
from plait.runtime.report import ReportBuilder, RunReport
from plait.runtime.scheduler import Executor, Injection, Run, RunOptions
from plait.runtime.state import check_env
from plait.stdlib.registry import IMPORT_ALL, ToolLoadError, ToolRegistry, plan_registry

PlanLike = str | os.PathLike[str] | Plan


def load_plan(path_or_plan: PlanLike, on_warnings: Callable[[Any], None] | None = None) -> Plan:
    """A compiled plan from a `.agent` file, the JSON of `plait compile`, or a Plan as is
    (`on_warnings`: see the compiler's `load_plan`)."""
    if isinstance(path_or_plan, Plan):
        return path_or_plan
    from plait.compiler import api as compiler_api  # the compiler stage, loaded on demand

    # a run imports the plan's `use` files: their code runs (docs/security.md)
    return compiler_api.load_plan(
        Path(path_or_plan), use_policy=IMPORT_ALL, on_warnings=on_warnings
    )


def plan_dir_of(plan: Plan) -> Path:
    source = plan.source_path if isinstance(plan, CompiledPlan) else None
    return Path(source).parent if source else Path.cwd()


# --- inputs ---------------------------------------------------------------------------------


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def parse_cli_value(decl: Input, text: str) -> Any:
    """`--input K=V`: V parsed by the input's declared type (SPEC section 7 and 9)."""
    t = decl.type
    try:
        if t in ("str", "secret"):
            return text
        if t == "int":
            return int(text.replace("_", ""))
        if t == "float":
            return float(text)
        if t == "bool":
            return _parse_bool(text)
        if t == "any":
            try:
                return jsontext.loads(text)
            except ValueError as exc:
                if "nested deeper" in str(exc):
                    raise
                return text  # a bare word for `any` is a string
        return jsontext.loads(text)  # list, dict, list[T]
    except ValueError as exc:
        shown = text if len(text) <= 60 else text[:60] + "…"
        why = str(exc).removeprefix("not valid JSON: ")
        raise UserError(
            f"input `{decl.name}`: {shown!r} is not a valid {t}"
            f"{': ' + why if t not in ('int', 'float', 'bool') else ''}"
        ) from None


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(text)


def read_inputs_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = jsontext.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read inputs file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"inputs file {path} is {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"inputs file {path} must hold a JSON object of input values")
    return data


def parse_cli_inputs(
    plan: Plan, pairs: Iterable[str], inputs_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """`--inputs FILE.json` then `--input K=V` (which wins), validated against the plan."""
    values: dict[str, Any] = dict(read_inputs_file(inputs_file)) if inputs_file else {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--input expects NAME=VALUE, got {pair!r}")
        decl = plan.inputs.get(name)
        if decl is None:
            raise UserError(_unknown_input(plan, name))
        values[name] = parse_cli_value(decl, text)
    return validate_inputs(plan, values)


def _unknown_input(plan: Plan, name: str) -> str:
    known = ", ".join(plan.inputs) or "none"
    return f"unknown input `{name}`{_did_you_mean(name, plan.inputs)}; the plan's inputs: {known}"


def validate_inputs(plan: Plan, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check names and types, fill defaults; UserError naming the input when wrong."""
    values = dict(values or {})
    for name in values:
        if name not in plan.inputs:
            raise UserError(_unknown_input(plan, name))
    result: dict[str, Any] = {}
    for name, decl in plan.inputs.items():
        if name in values:
            value = values[name]
            if not fits_input_type(decl.type, value):
                raise UserError(f"input `{name}` must be {decl.type}, got {json.dumps(value)[:60]}")
            result[name] = float(value) if decl.type == "float" else value
        elif decl.has_default:
            result[name] = decl.default
        else:
            raise UserError(
                f"missing required input `{name}` ({decl.type}); pass it with --input {name}=VALUE"
            )
    return result


# --- fault injection ------------------------------------------------------------------------


def parse_injections(specs: Iterable[str], plan: Plan) -> dict[str, Injection]:
    """`STEP=KIND[:N]`: the first N attempts (all, without N) of STEP fail with KIND."""
    out: dict[str, Injection] = {}
    for spec in specs:
        step, sep, rest = spec.partition("=")
        kind_text, _, times_text = rest.partition(":")
        if not sep or not step or not kind_text:
            raise UserError(f"--inject expects STEP=KIND[:N], got {spec!r}")
        if step not in plan.steps:
            raise UserError(f"--inject: unknown step `{step}`{_did_you_mean(step, plan.steps)}")
        try:
            kind = ErrorKind(kind_text)
        except ValueError:
            kinds = ", ".join(k.value for k in ErrorKind)
            raise UserError(
                f"--inject: unknown error kind `{kind_text}`"
                f"{_did_you_mean(kind_text, [k.value for k in ErrorKind])}; "
                f"kinds: {kinds}"
            ) from None
        times = None
        if times_text:
            if not (times_text.isascii() and times_text.isdigit()):
                raise UserError(f"--inject: N must be a whole number, got {times_text!r}")
            times = int(times_text)
        out[step] = Injection(kind, times)
    return out


# --- running --------------------------------------------------------------------------------


def _secrets(
    plan: Plan, inputs: Mapping[str, Any], env: Mapping[str, str], warn: Callable[[str], None]
) -> list[str]:
    secrets: list[str] = []
    for name, decl in plan.inputs.items():
        value = inputs.get(name)
        if decl.type == "secret" and isinstance(value, str) and value:
            secrets.append(value)
            if len(value) < 4:
                warn(f"warning: input {name} is shorter than 4 characters and is not masked")
    for name, value in env.items():
        if value:
            secrets.append(value)
            if len(value) < 4:
                warn(f"warning: env.{name} is shorter than 4 characters and is not masked")
    return secrets


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Runner:
    """One prepared run: plan, inputs, options and sinks. `await runner.run()` runs it.

    With `handle_signals`, SIGINT and SIGTERM cancel the run like the deadline; `signal`
    then names the one received (the CLI maps it to exit 130 / 143). `executor` runs the
    tool calls elsewhere (Ray); `guards` are resource guards shared with other runs (batch).
    """

    def __init__(
        self,
        plan: Plan,
        inputs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        inject: Mapping[str, Injection] | None = None,
        events: Sink | Iterable[Sink] | None = None,
        clock: Clock | None = None,
        run_id: str | None = None,
        environ: Mapping[str, str] | None = None,
        registry: ToolRegistry | None = None,
        warn: Callable[[str], None] = _stderr,
        executor: Executor | None = None,
        guards: ResourceGuards | None = None,
        files: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.plan = plan
        self.inputs = validate_inputs(plan, inputs)
        self.env = check_env(plan, os.environ if environ is None else environ)
        self.sinks: list[Sink] = _sink_list(events)
        self.builder = ReportBuilder()
        self.signal: int | None = None
        plan_dir = plan_dir_of(plan)
        self.registry = registry or _registry(plan, plan_dir)
        self.options = RunOptions(
            run_id=run_id or uuid.uuid4().hex[:16],
            inputs=self.inputs,
            env=self.env,
            clock=clock or RealClock(),
            seed=seed,
            inject=dict(inject or {}),
            secrets=_secrets(plan, self.inputs, self.env, warn),
            plan_dir=plan_dir,
            file_roots=file_roots(files, os.environ if environ is None else environ),
            executor=executor,
            guards=guards,
        )
        self.run_obj: Run | None = None

    @property
    def run_id(self) -> str:
        return self.options.run_id

    async def run(self, *, handle_signals: bool = False) -> RunReport:
        run = self.run_obj = Run(
            self.plan, self.registry, self.options, [self.builder, *self.sinks]
        )
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
        try:
            await run.execute()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.run_obj = None
            run.release()
        return self.builder.report()

    def _on_signal(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
        if self.run_obj is not None:
            self.run_obj.stop("signal")


def file_roots(
    files: Iterable[str | os.PathLike[str]], environ: Mapping[str, str]
) -> tuple[Path, ...]:
    """The folders `file.*` may touch besides the plan's: `--files DIR` (or `files=`) and
    `PLAIT_FILES` (folders separated by `os.pathsep`), made absolute (docs/security.md)."""
    from_env = [part for part in environ.get("PLAIT_FILES", "").split(os.pathsep) if part]
    return tuple(Path(folder).expanduser().absolute() for folder in [*files, *from_env])


def _sink_list(events: Sink | Iterable[Sink] | None) -> list[Sink]:
    if events is None:
        return []
    if callable(events):
        return [events]
    return list(events)


def plan_tools(plan: Plan) -> ToolRegistry:
    """The tools a plan can call: the built-ins plus its `use`d ones (UserError when a `use`
    cannot be loaded)."""
    return _registry(plan, plan_dir_of(plan))


def _registry(plan: Plan, plan_dir: Path) -> ToolRegistry:
    try:
        return plan_registry([u.target for u in plan.uses], plan_dir)
    except ToolLoadError as exc:
        raise UserError(f"cannot load tools: {exc}") from None


async def run_plan_async(
    path_or_plan: PlanLike,
    inputs: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    inject: Mapping[str, Injection] | Iterable[str] | None = None,
    events: Sink | Iterable[Sink] | None = None,
    clock: Clock | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    journal: str | os.PathLike[str] | Any = None,
) -> RunReport:
    """Run a plan (a path to a `.agent` or compiled JSON file, or a Plan) to its report.

    `inputs` are Python values checked against the declared types; `inject` takes
    `STEP=KIND[:N]` strings (as `--inject`) or Injection objects; `events` is a sink (a
    callable receiving each typed event) or a list of them. Raises UserError for a bad
    plan, bad inputs or an unset environment variable.

    Without `journal` nothing is recorded. With a journal (a path, or an open `Journal`)
    the run is recorded as `plait run` records it, and `plait resume RUN_ID` (or
    `RunSession.resume`) can continue it (`runtime/session.py`).
    """
    if journal is None:
        return await new_runner(
            path_or_plan,
            inputs,
            seed=seed,
            inject=inject,
            events=events,
            clock=clock,
            run_id=run_id,
            environ=environ,
        ).run()
    from plait.runtime.session import RunSession

    session = RunSession.start(
        path_or_plan,
        inputs,
        journal=journal,
        seed=seed,
        inject=inject,
        events=events,
        clock=clock,
        run_id=run_id,
        environ=environ,
    )
    return await session.run()


def new_runner(
    path_or_plan: PlanLike,
    inputs: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    inject: Mapping[str, Injection] | Iterable[str] | None = None,
    events: Sink | Iterable[Sink] | None = None,
    clock: Clock | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Runner:
    """A Runner for a plan given as a path or a Plan, `inject` given as `STEP=KIND[:N]`
    strings or Injection objects (shared by `run_plan_async` and `RunSession.start`)."""
    plan = load_plan(path_or_plan)
    if inject is not None and not isinstance(inject, Mapping):
        inject = parse_injections(inject, plan)
    return Runner(
        plan,
        inputs,
        seed=seed,
        inject=inject,
        events=events,
        clock=clock,
        run_id=run_id,
        environ=environ,
    )


def run_plan(
    path_or_plan: PlanLike,
    inputs: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    inject: Mapping[str, Injection] | Iterable[str] | None = None,
    events: Sink | Iterable[Sink] | None = None,
    clock: Clock | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    journal: str | os.PathLike[str] | Any = None,
) -> RunReport:
    """Blocking `run_plan_async` on a fresh event loop (see there)."""
    return asyncio.run(
        run_plan_async(
            path_or_plan,
            inputs,
            seed=seed,
            inject=inject,
            events=events,
            clock=clock,
            run_id=run_id,
            environ=environ,
            journal=journal,
        )
    )
