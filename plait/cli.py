"""The `plait` command line: argv -> library calls -> exit code. Thin glue, no logic of its own.

Each command lives in its own section below; exit codes are the named constants here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from plait import __version__
from plait.errors import UserError

# Exit codes (SPEC section 7).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_DEGRADED = 3
EXIT_INTERNAL = 70
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

F = TypeVar("F", bound=Callable[..., Any])


def fail_usage(message: str) -> None:
    """Print a one-line error for bad user input and exit 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


def guarded(func: F) -> F:
    """Turn UserError into exit 2 and any other exception into exit 70 with one line.

    The traceback is shown only with PLAIT_DEBUG=1: no input may end in a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail_usage(str(exc))
        except BrokenPipeError:
            _quiet_broken_pipe()
        except (SystemExit, KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("PLAIT_DEBUG") == "1":
                traceback.print_exc()
            click.echo(
                f"internal error (a bug in plait): {type(exc).__name__}: {exc}"
                " (set PLAIT_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def _quiet_broken_pipe() -> None:
    """The reader of our stdout went away (`plait tools | head -1`): stop quietly.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again;
    the exit status is the shell's convention for a process ended by SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plait")
def cli() -> None:
    """plait: declarative, fault-tolerant orchestration for AI agents.

    \b
    Write a plan in a .agent file, then:
      plait check plan.agent          validate it (errors with file:line:col and hints)
      plait graph plan.agent -o p.svg draw its DAG
      plait run plan.agent --input k=v run it; exit 0 ok, 3 degraded, 1 failed, 2 invalid
    """


# --- compiler commands: check, compile, graph, tools ----------------------------------------


def _stderr_colour() -> bool:
    """Colour diagnostics only on a terminal, and never when NO_COLOR is set."""
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ


def _show_diagnostics(result: Any) -> None:
    """Diagnostics of one compile to stderr, followed by a one-line count."""
    from plait.compiler.render import summary

    if result.diagnostics:
        click.echo(result.render(color=_stderr_colour()), err=True)
        click.echo(f"{result.source.path}: {summary(result.diagnostics)}\n", err=True)


def no_import_option(func: F) -> F:
    """`--no-import`: `use "pkg.module"` is not imported either (a `use "./file.py"` never
    is, outside `run`, `resume` and `batch`)."""
    return click.option(
        "--no-import",
        "no_import",
        is_flag=True,
        help="Import nothing, not even modules `use`d by dotted name "
        "(installed code): their tools are then not checked (warning "
        'W409). `use "./file.py"` is never imported here, only read.',
    )(func)


def _without_cyclic_gc() -> None:
    """For the commands that compile and exit (check, compile, graph): the compiler builds
    millions of objects that all live until the process ends and makes no garbage cycles
    worth finding, and the collector would walk all of them once compiling ends (~12% of a
    10,000-step check). Done here, at the edge, never inside the compiler's API."""
    import gc

    gc.disable()


def _release_parser() -> None:
    """After `plait run` (or `resume`) compiled its plan: this process parses nothing more,
    so lark's parser (its tables, ~0.9 MB) goes before the run, which reuses that memory
    (issue #13: a 10,000-step run's peak RSS ~0.8 MB lower). Built again from lark's cache
    if asked."""
    from plait.compiler.parse import grammar

    grammar.cache_clear()


def _use_policy(no_import: bool) -> Any:
    from plait.stdlib.registry import NO_IMPORT, READ_FILES

    return NO_IMPORT if no_import else READ_FILES


def _load_for_command(plan_path: str, no_import: bool = False) -> Any:
    """A CompiledPlan from a .agent or compiled .json file; diagnostics -> stderr, exit 2."""
    from plait.compiler.api import PlanInvalid, load_plan

    try:
        return load_plan(plan_path, use_policy=_use_policy(no_import))
    except PlanInvalid as exc:
        _show_diagnostics(exc.result)
        sys.exit(EXIT_INVALID)


@cli.command("check")
@click.argument("plan_paths", nargs=-1, required=True, metavar="PLAN...")
@click.option("--strict", is_flag=True, help="Warnings make the check fail too (exit 2).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: the diagnostics as a JSON list on stdout.",
)
@no_import_option
@guarded
def check_command(plan_paths: tuple[str, ...], strict: bool, fmt: str, no_import: bool) -> None:
    """Parse and validate plans without running them.

    Prints `ok: PATH (N steps)` for each valid plan; diagnostics go to stderr as
    `PATH:LINE:COL: error[CODE]: message` with the source line and hints. Exit 0 when every
    plan is valid, 2 otherwise (with --strict, warnings count too).

    \b
    Examples:
      plait check triage.agent
      plait check plans/*.agent --strict
      plait check triage.agent --format json | jq '.[].message'
    """
    _without_cyclic_gc()
    from plait.compiler import codes
    from plait.compiler.api import compile_file
    from plait.compiler.diagnostics import error
    from plait.compiler.render import to_json

    all_valid = True
    collected: list[dict[str, Any]] = []
    for path in plan_paths:
        try:
            result = compile_file(path, use_policy=_use_policy(no_import))
        except UserError as exc:
            all_valid = False
            if fmt == "json":  # the reader of the JSON learns of it too
                collected.extend(to_json([error(codes.UNREADABLE_FILE, str(exc), None, path=path)]))
            else:
                click.echo(f"error: {exc}", err=True)
            continue
        valid = result.plan is not None and not (strict and result.warnings)
        all_valid = all_valid and valid
        if fmt == "json":
            collected.extend(to_json(result.diagnostics))
            continue
        _show_diagnostics(result)
        if valid and result.plan is not None:
            count = sum(1 for step in result.plan.steps.values() if step.loop is None)
            click.echo(f"ok: {path} ({count} steps)")  # loops and presets are not steps
    if fmt == "json":
        click.echo(json.dumps(collected, indent=2, ensure_ascii=False))
    sys.exit(EXIT_OK if all_valid else EXIT_INVALID)


@cli.command("compile")
@click.argument("plan_path", metavar="PLAN")
@click.option(
    "-o", "--output", "out_path", metavar="FILE", help="Write the JSON here instead of stdout."
)
@no_import_option
@guarded
def compile_command(plan_path: str, out_path: str | None, no_import: bool) -> None:
    """Compile a plan to its JSON form (the IR that `plait run` also accepts).

    \b
    Examples:
      plait compile triage.agent -o triage.json
      plait run triage.json --input ticket="..."
    """
    _without_cyclic_gc()
    from plait.compiler.api import compile_file, compiled_json

    result = compile_file(plan_path, use_policy=_use_policy(no_import))
    _show_diagnostics(result)
    if result.plan is None:
        sys.exit(EXIT_INVALID)
    _write_output(compiled_json(result.plan).encode(), out_path)


def _write_output(data: bytes, out_path: str | None) -> None:
    if out_path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        with open(out_path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None


@cli.command("graph")
@click.argument("plan_path", metavar="PLAN")
@click.option(
    "-o",
    "--output",
    "out_path",
    metavar="FILE",
    help="Write the drawing here; the suffix (.dot .svg .png .pdf .mmd) picks the format.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "svg", "png", "pdf", "mermaid"]),
    default=None,
    help="The format, whatever the suffix. Default: DOT.",
)
@click.option(
    "--run",
    "run_id",
    metavar="RUN_ID",
    default=None,  # JOURNAL: colour a run
    help="Colour each step by its status in this recorded run.",
)
@click.option(
    "--journal",
    "journal_path",
    metavar="PATH",
    default=None,
    help="The run journal to read --run from (default .plait/journal.db).",
)
@no_import_option
@guarded
def graph_command(
    plan_path: str,
    out_path: str | None,
    fmt: str | None,
    run_id: str | None,
    journal_path: str | None,
    no_import: bool,
) -> None:
    """Draw a plan's DAG: steps with their tool and policies, inputs on top, outputs below.

    Without -o, prints DOT (or --format mermaid) on stdout. SVG, PNG and PDF need the
    Graphviz `dot` program.

    \b
    Examples:
      plait graph triage.agent -o triage.svg
      plait graph triage.agent --format mermaid > triage.mmd
      plait graph triage.agent | dot -Tpng > triage.png
    """
    _without_cyclic_gc()
    from plait.compiler.graph import format_for, render

    chosen = format_for(out_path, fmt)
    if out_path is None and chosen in ("svg", "png", "pdf") and sys.stdout.isatty():
        raise UserError(f"{chosen.upper()} is binary; write it to a file with -o FILE")
    plan = _load_for_command(plan_path, no_import)
    status = graph_run_status(run_id, journal_path, plan) if run_id else None  # JOURNAL
    _write_output(render(plan, chosen, status), out_path)


@cli.command("tools")
@click.argument("name", required=False)
@click.option(
    "--plan",
    "plan_path",
    metavar="PLAN",
    help="Also list the tools this plan loads with `use` (read, not imported).",
)
@no_import_option
@guarded
def tools_command(name: str | None, plan_path: str | None, no_import: bool) -> None:
    """List the tools plans can call, with their arguments, types and defaults.

    \b
    Examples:
      plait tools
      plait tools llm.chat
      plait tools --plan triage.agent
    """
    from plait.stdlib.registry import builtin_registry

    registry = builtin_registry()
    own: list[str] = []
    if plan_path is not None:
        registry, own = _plan_tools(plan_path, no_import)
    if name is not None:
        spec = registry.get(name)
        if spec is None:
            import difflib

            close = difflib.get_close_matches(name, registry.names(), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else "; `plait tools` lists them"
            raise UserError(f"unknown tool `{name}`{hint}")
        _print_tools([spec], set(own), detailed=True)
        return
    _print_tools(list(registry), set(own), detailed=False)


def _plan_tools(plan_path: str, no_import: bool) -> tuple[Any, list[str]]:
    """The registry with a plan's `use` tools read (files) or imported (modules, unless
    `no_import`); exit 2 when a `use` fails."""
    from plait.compiler.api import compile_file

    result = compile_file(plan_path, use_policy=_use_policy(no_import))
    failed = [
        d
        for d in result.diagnostics
        if d.code.id == "E321" or (d.is_error and d.code.id.startswith("E1"))
    ]
    if failed:
        from plait.compiler.render import render_all

        click.echo(
            render_all(failed, {result.source.path: result.source.text}, color=_stderr_colour()),
            err=True,
        )
        sys.exit(EXIT_INVALID)
    return result.registry, result.registry.own_names()


def _signature(spec: Any) -> list[str]:
    params = []
    for p in spec.params:
        text = f"{p.name}: {p.annotation}"
        if not p.required:
            text += " = " + _json_or_repr(p.default)
        params.append(text)
    if spec.accepts_extra:
        params.append("...")
    return params


def _json_or_repr(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _print_tools(specs: list[Any], own: set[str], *, detailed: bool) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=detailed)
        for column in ("tool", "arguments", "description"):
            table.add_column(column)
        for spec in specs:
            label = spec.name + (" (use)" if spec.name in own else "")
            table.add_row(label, "\n".join(_signature(spec)), spec.description)
        Console().print(table)
        return
    for spec in specs:
        mark = "  [use]" if spec.name in own else ""
        click.echo(f"{spec.name}({', '.join(_signature(spec))}){mark}")
        if spec.description:
            click.echo(f"    {spec.description}")
        if detailed:
            for p in spec.params:
                need = "required" if p.required else f"default {_json_or_repr(p.default)}"
                click.echo(f"    {p.name}: {p.annotation} ({need})")


# --- runtime commands: run ------------------------------------------------------------------


def _open_events_file(path: str | None) -> tuple[Any, Any]:
    """A sink writing one JSON object per event line, flushed line by line, and the file."""
    if path is None:
        return None, None
    import json

    try:
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise UserError(f"cannot write events file {path}: {exc.strerror or exc}") from None

    def sink(event: Any) -> None:
        handle.write(json.dumps(event.to_json_dict(), ensure_ascii=False) + "\n")
        handle.flush()

    return sink, handle


def execute_run(
    runner: Any,
    *,
    json_out: bool,
    report_path: str | None,
    events_path: str | None,
    quiet: bool,
    allow_degraded: bool,
    output_name: str | None = None,
    journal_path: str | None = None,
    recorded: bool = True,
) -> int:
    """Run a prepared `plait.runtime.api.Runner` with the output options of `run` (shared
    with `resume`); returns the exit code. Subscribe more sinks (a journal, a tracer) by
    appending to `runner.sinks` first.

    stdout carries what the run produced (its outputs, one `--output`, or the `--json`
    report), so `plait run x.agent > out.txt` keeps the answer; stderr carries progress
    (which `--quiet` silences), the summary and, after a signal, how to resume."""
    import asyncio
    import signal

    from plait.runtime.gcscope import frozen_heap
    from plait.runtime.progress import make_progress, summary_text

    progress = make_progress(quiet)
    events_sink, events_file = _open_events_file(events_path)
    for sink in (progress, events_sink):
        if sink is not None:
            runner.sinks.append(sink)
    try:
        # the collector tuned for the run here, at the edge: this process is ours
        # (`run_plan` never changes an embedding program's collector)
        with frozen_heap(), tools_stdout_to_stderr():
            report = asyncio.run(runner.run(handle_signals=True))
    except BaseException:
        if progress is not None:
            progress.stop()
        raise
    finally:
        if events_file is not None:
            events_file.close()
    if progress is not None:
        progress.close(report)
    else:
        click.echo(summary_text(report), err=True)
    if report_path is not None and not _write_report(report_path, report):
        return EXIT_INVALID
    _print_results(report, json_out, output_name)
    if runner.signal is not None:
        click.echo(
            f"interrupted; to continue: {_resume_command(runner.run_id, journal_path)}"
            if recorded
            else "interrupted (not recorded: --no-journal)",
            err=True,
        )
        return EXIT_SIGTERM if runner.signal == signal.SIGTERM else EXIT_SIGINT
    if report.outcome == "failed":
        return EXIT_FAILED
    if report.outcome == "degraded" and not allow_degraded:
        return EXIT_DEGRADED
    return EXIT_OK


@contextlib.contextmanager
def tools_stdout_to_stderr() -> Iterator[None]:
    """While a run goes on, what tools print to stdout (Python's `print`, C code writing
    to file descriptor 1) goes to stderr: stdout is plait's, for `--json` and the like."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd != 1:  # stdout is not the process's (an embedding, a test runner): Python only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _write_report(report_path: str, report: Any) -> bool:
    from plait.runtime.report_json import write_report_json

    try:
        with open(report_path, "w", encoding="utf-8") as f:
            write_report_json(report, f)
            f.write("\n")
    except OSError as exc:
        click.echo(f"error: cannot write report {report_path}: {exc.strerror or exc}", err=True)
        return False
    return True


def _print_results(report: Any, json_out: bool, output_name: str | None) -> None:
    """stdout: the `--json` report, else one `--output`'s raw value, else every output."""
    from plait.runtime.expressions import to_json_text

    if json_out:
        _echo_report(report)
    elif output_name is not None:
        value = report.outputs.get(output_name)
        click.echo(value if isinstance(value, str) else to_json_text(value))
    else:
        for name, value in report.outputs.items():
            click.echo(f"{name} = {value if isinstance(value, str) else to_json_text(value)}")


def _echo_report(report: Any) -> None:
    """The report's JSON on stdout, written step by step (never one big string: for a big
    run that string and the dict it came from would be the process's peak memory)."""
    from plait.runtime.report_json import write_report_json

    out = sys.stdout
    write_report_json(report, out)
    out.write("\n")
    out.flush()


def _resume_command(run_id: str, journal_path: str | None) -> str:
    """The command that continues this run (naming the journal when it is not the default)."""
    import shlex

    journal = f" --journal {shlex.quote(journal_path)}" if journal_path else ""
    return f"plait resume {run_id}{journal}"


def check_output_options(json_out: bool, output_name: str | None) -> None:
    if json_out and output_name is not None:
        raise UserError(
            "--json and --output both choose what stdout carries; give one "
            "(--report FILE writes the report beside --output)"
        )


def check_output_name(plan: Any, output_name: str | None) -> None:
    """`--output NAME` must name one of the plan's outputs (checked before running)."""
    if output_name is None or output_name in plan.outputs:
        return
    import difflib

    names = list(plan.outputs)
    close = difflib.get_close_matches(output_name, names, n=1)
    hint = (
        f"; did you mean `{close[0]}`?"
        if close
        else f"; its outputs are {', '.join(names)}"
        if names
        else "; it declares no output"
    )
    raise UserError(f"plan {plan.plan} has no output `{output_name}`{hint}")


def run_output_options(func: F) -> F:
    """The output options `run` and `resume` share."""
    for option in reversed(
        [
            click.option("--json", "json_out", is_flag=True, help="Print the run report as JSON."),
            click.option(
                "--report",
                "report_path",
                metavar="FILE",
                help="Write the run report (JSON) to FILE.",
            ),
            click.option(
                "--events",
                "events_path",
                metavar="FILE",
                help="Write every event as a JSON line to FILE.",
            ),
            click.option("--allow-degraded", is_flag=True, help="Exit 0 when degraded."),
            click.option(
                "--quiet",
                "-q",
                is_flag=True,
                help="No progress on stderr (the summary is still printed).",
            ),
            click.option(
                "--output",
                "output_name",
                metavar="NAME",
                help="Print only this output's value on stdout: a string as it is, any "
                "other value as JSON.",
            ),
        ]
    ):
        func = option(func)
    return func


@cli.command("run")
@click.argument("plan_path", metavar="PLAN")
@click.option(
    "--input",
    "input_pairs",
    multiple=True,
    metavar="K=V",
    help="An input value, parsed by its declared type (repeatable).",
)
@click.option(
    "--inputs",
    "inputs_file",
    metavar="FILE.json",
    help="Input values from a JSON object (--input wins).",
)
@run_output_options
@click.option("--seed", type=int, default=None, help="Seed the retry jitter.")
@click.option(
    "--inject",
    "injections",
    multiple=True,
    metavar="STEP=KIND[:N]",
    help="Make STEP's first N attempts (all without N) fail with KIND.",
)
@click.option(
    "--journal",
    "journal_path",
    metavar="PATH",
    default=None,  # JOURNAL
    help="The run journal (default .plait/journal.db, or under $PLAIT_HOME).",
)
@click.option(
    "--files",
    "files",
    multiple=True,
    metavar="DIR",
    help="Let file.read / file.write use DIR too (repeatable; also PLAIT_FILES); "
    "by default they stay in the plan's folder.",
)
@click.option(
    "--no-journal",
    is_flag=True,
    help="Record nothing: a throwaway run that `plait resume` cannot continue.",
)
@click.option(
    "--trace",
    type=click.Choice(["console", "otlp", "none"]),
    default=None,
    help="Export OpenTelemetry traces (also switched on by OTEL_* variables); "
    "needs `pip install plait[otel]`.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: each tool call runs as a Ray task (needs `pip install plait[ray]`).",
)
@click.option(
    "--address",
    metavar="ADDR",
    default=None,
    help="With --executor ray: the Ray cluster to use (default: start a local one).",
)
@guarded
def run_command(
    plan_path: str,
    input_pairs: tuple[str, ...],
    inputs_file: str | None,
    json_out: bool,
    report_path: str | None,
    events_path: str | None,
    allow_degraded: bool,
    quiet: bool,
    output_name: str | None,
    seed: int | None,
    injections: tuple[str, ...],
    journal_path: str | None,
    no_journal: bool,
    trace: str | None,
    executor: str,
    address: str | None,
    files: tuple[str, ...],
) -> None:
    """Run a plan: exit 0 succeeded, 3 degraded, 1 failed, 2 invalid, 130/143 on a signal.

    PLAN is a .agent file or the JSON of `plait compile`. The outputs go to stdout (one
    `NAME = VALUE` line each; --output NAME prints one value alone, --json the whole
    report); the plan's warnings, progress and a summary go to stderr. The report (--json,
    --report) says what succeeded, what degraded and why. After Ctrl-C the last line says
    how to continue with `plait resume`.

    \b
    Examples:
      plait run triage.agent --input ticket="I was charged twice"
      plait run triage.agent --input ticket="..." --output reply > reply.txt
      plait run triage.agent --inputs inputs.json --json > report.json
      plait run triage.agent --inject history=timeout     rehearse an outage
      plait run triage.agent --inject classify=transient:2 --seed 7 --events events.jsonl
      plait run triage.agent --allow-degraded             exit 0 when degraded (for CI)
      plait run triage.agent --no-journal                 a throwaway run, nothing recorded
      plait run triage.agent --executor ray --address HOST:6379   tool calls on a cluster
    """
    from plait.runtime.api import Runner, load_plan, parse_cli_inputs, parse_injections
    from plait.runtime.gcscope import paused_collector
    from plait.runtime.journal import journal_path as resolve
    from plait.runtime.session import RunSession

    if no_journal and journal_path is not None:
        raise UserError("--no-journal and --journal PATH contradict each other; pass one")
    if address is not None and executor != "ray":
        raise UserError("--address goes with --executor ray")
    check_output_options(json_out, output_name)
    with paused_collector():  # at the edge: the compiler's API leaves the collector alone
        plan = load_plan(plan_path, on_warnings=_show_diagnostics)  # check's warnings first
    _release_parser()
    check_output_name(plan, output_name)
    inputs = parse_cli_inputs(plan, input_pairs, inputs_file)
    with _executor(executor, plan, address) as tool_executor:
        runner = Runner(
            plan,
            inputs,
            seed=seed,
            inject=parse_injections(injections, plan),
            executor=tool_executor,
            files=files,
        )
        session = RunSession(
            runner,
            journal=None if no_journal else resolve(journal_path),
            plan_path=plan_path,
            trace=trace,
        )
        with session:
            code = execute_run(
                runner,
                json_out=json_out,
                report_path=report_path,
                events_path=events_path,
                quiet=quiet,
                allow_degraded=allow_degraded,
                output_name=output_name,
                journal_path=journal_path,
                recorded=not no_journal,
            )
    sys.exit(code)


@contextlib.contextmanager
def _executor(name: str, plan: Any, address: str | None) -> Iterator[Any]:
    """The tool executor `--executor` names (None: in this process), released after."""
    if name != "ray":
        yield None
        return
    from plait.runtime.executors.ray import ray_executor_for

    executor, release = ray_executor_for(plan, address)
    try:
        yield executor
    finally:
        release()


# --- journal commands: resume, runs, show, report -------------------------------------------


def journal_option(func: F) -> F:
    """`--journal PATH` (default `.plait/journal.db`, or `$PLAIT_HOME/journal.db`)."""
    return click.option(
        "--journal",
        "journal_path",
        metavar="PATH",
        default=None,
        help="The run journal (default .plait/journal.db, or under $PLAIT_HOME).",
    )(func)


def trace_option(func: F) -> F:
    """`--trace console|otlp`: OpenTelemetry spans of the run (needs plait[otel])."""
    return click.option(
        "--trace",
        type=click.Choice(["console", "otlp", "none"]),
        default=None,
        help="Export OpenTelemetry traces (also switched on by OTEL_* "
        "variables); needs `pip install plait[otel]`.",
    )(func)


def open_journal(journal_path: str | None, *, create: bool) -> Any:
    """The journal at `--journal`, `$PLAIT_HOME` or `.plait/` (JournalError -> exit 2)."""
    from plait.runtime.session import open_journal as open_at

    return open_at(journal_path, create=create)


@cli.command("resume")
@click.argument("run_id")
@click.option(
    "--force", is_flag=True, help="Resume even though the plan file changed since the run."
)
@run_output_options
@journal_option
@trace_option
@click.option(
    "--files",
    "files",
    multiple=True,
    metavar="DIR",
    help="Let file.read / file.write use DIR too (repeatable; also PLAIT_FILES).",
)
@guarded
def resume_command(
    run_id: str,
    force: bool,
    json_out: bool,
    report_path: str | None,
    events_path: str | None,
    allow_degraded: bool,
    quiet: bool,
    output_name: str | None,
    journal_path: str | None,
    trace: str | None,
    files: tuple[str, ...],
) -> None:
    """Continue a recorded run that crashed, was killed or was cancelled.

    Steps that finished keep their recorded outputs and are not run again; the others run.
    RUN_ID may be a prefix of the id (`plait runs` lists them). A run that already finished
    is left as it is (exit 0). Exit codes as `run`; 2 for an unknown run or a plan file
    changed since (without --force).

    \b
    Examples:
      plait resume 3f9c2a1b                  continue after Ctrl-C or a crash
      plait resume 3f9c2a1b --json > report.json
      plait resume 3f9c2a1b --force          the plan file changed; use it as it is now
      plait resume 3f9c2a1b --journal ci/journal.db
    """
    from plait.runtime.gcscope import paused_collector
    from plait.runtime.session import RunSession

    check_output_options(json_out, output_name)
    if _already_finished(run_id, journal_path, json_out):
        return
    with paused_collector():  # it compiles the recorded plan (see `run`)
        session = RunSession.resume(
            run_id, journal=journal_path, force=force, trace=trace, files=files
        )
    _release_parser()
    check_output_name(session.runner.plan, output_name)
    if session.note and not quiet:
        click.echo(session.note, err=True)
    with session:
        code = execute_run(
            session.runner,
            json_out=json_out,
            report_path=report_path,
            events_path=events_path,
            quiet=quiet,
            allow_degraded=allow_degraded,
            output_name=output_name,
            journal_path=journal_path,
        )
    sys.exit(code)


def _already_finished(run_id: str, journal_path: str | None, json_out: bool) -> bool:
    """`plait resume` of a run that ended on its own: say so (the recorded report with
    --json), change nothing; return whether that was the case."""
    from plait.runtime.journal import run_report

    with open_journal(journal_path, create=False) as journal:
        record = journal.run(run_id)
        if not record.finished:
            return False
        report = run_report(journal, record.run_id).to_json_dict() if json_out else None
    click.echo(
        f"run {record.run_id} already finished ({record.outcome}); nothing to resume "
        f"(`plait show {record.run_id}` shows it)",
        err=True,
    )
    if report is not None:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    return True


def _fmt_secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}m{seconds:04.1f}s"


def _fmt_time(ts: str | None) -> str:
    return ts.replace("T", " ")[:19] if ts else "-"


def _print_table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal, aligned plain columns otherwise (pipes, tests)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title, title_justify="left")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    if title:
        click.echo(title)
    for row in [columns, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@cli.command("runs")
@journal_option
@click.option(
    "--limit",
    "-n",
    type=int,
    default=20,
    show_default=True,
    help="How many runs to list (0 for all).",
)
@click.option("--json", "json_out", is_flag=True, help="Print the runs as a JSON list.")
@click.option(
    "--prune",
    is_flag=True,
    help="Delete recorded runs instead of listing them: those older than "
    "--older-than and/or beyond the --keep most recent.",
)
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    default=None,
    help="With --prune: delete runs started more than AGE ago (30m, 12h, 7d, 2w).",
)
@click.option(
    "--keep",
    type=int,
    default=None,
    metavar="N",
    help="With --prune: keep the N most recent runs and delete the rest (with "
    "--older-than: delete only older runs that are not among these N).",
)
@guarded
def runs_command(
    journal_path: str | None,
    limit: int,
    json_out: bool,
    prune: bool,
    older_than: str | None,
    keep: int | None,
) -> None:
    """List recorded runs, most recent first: id, plan, status, start, duration.

    The status is the run's outcome (succeeded, degraded, failed), `interrupted` for a run
    stopped by Ctrl-C or SIGTERM, `running` while its process is alive, and `unfinished`
    for a run whose process was killed; the last two can be continued with `plait resume`.
    The journal is .plait/journal.db in the current folder, $PLAIT_HOME/journal.db when
    PLAIT_HOME is set, or --journal PATH.

    \b
    Examples:
      plait runs
      plait runs -n 0 --json | jq '.[] | select(.status == "interrupted") | .run_id'
      plait runs --prune --older-than 7d     delete runs started more than a week ago
      plait runs --prune --keep 50           keep only the 50 most recent runs
      plait runs --journal ci/journal.db
    """
    import dataclasses

    from plait.runtime.journal import RunLock
    from plait.runtime.journal import journal_path as resolve

    if not prune and (older_than is not None or keep is not None):
        raise UserError("--older-than and --keep choose what --prune deletes; add --prune")
    path = resolve(journal_path)
    if not path.exists():
        if json_out:
            click.echo("[]")
        else:
            click.echo(f"no runs recorded yet (no journal at {path})", err=True)
        return
    if prune:
        _prune_runs(journal_path, older_than, keep)
        return
    with open_journal(journal_path, create=False) as journal:
        runs = journal.list_runs(limit or None)
    statuses = [
        r.status(r.outcome is None and RunLock(path, r.run_id).held_elsewhere()) for r in runs
    ]
    if json_out:
        click.echo(
            json.dumps(
                [
                    {**dataclasses.asdict(r), "status": status}
                    for r, status in zip(runs, statuses, strict=True)
                ],
                indent=2,
            )
        )
        return
    if not runs:
        click.echo(f"no runs recorded in {path}", err=True)
        return
    rows = [
        [
            r.run_id,
            r.plan,
            status,
            _fmt_time(r.started_at),
            _fmt_secs(r.duration_s),
            str(r.sessions),
        ]
        for r, status in zip(runs, statuses, strict=True)
    ]
    _print_table(None, ["id", "plan", "status", "started", "duration", "sessions"], rows)


def _prune_runs(journal_path: str | None, older_than: str | None, keep: int | None) -> None:
    """`plait runs --prune`: delete what the options select (runs in progress are kept)."""
    from datetime import UTC, datetime, timedelta

    if older_than is None and keep is None:
        raise UserError(
            "--prune needs --older-than AGE, --keep N or both "
            "(e.g. `plait runs --prune --older-than 7d`)"
        )
    if keep is not None and keep < 0:
        raise UserError(f"--keep takes a count of runs (0 or more), not {keep}")
    cutoff = (
        datetime.now(UTC) - timedelta(seconds=parse_age(older_than))
        if older_than is not None
        else None
    )
    with open_journal(journal_path, create=False) as journal:
        deleted = journal.prune(older_than=cutoff, keep=keep)
    click.echo(
        f"pruned {len(deleted)} run{'s' if len(deleted) != 1 else ''} from {journal.path}", err=True
    )


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """`--older-than`: a number and a unit, `30m`, `12h`, `7d`, `2w`."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise UserError(f"--older-than takes an age like 30m, 12h, 7d or 2w, not {text!r}")
    return float(match.group(1)) * AGE_UNITS[match.group(2)]


def _recorded(journal: Any, run_id: str) -> tuple[str, Any, list[dict[str, Any]], Any]:
    """(full run id, the run's report with metrics, its merged events, its plan or None)."""
    from pydantic import ValidationError

    from plait.compiler.ir import CompiledPlan
    from plait.runtime.journal import merge_sessions, run_report

    rid = journal.resolve_run_id(run_id)
    report = run_report(journal, rid)
    events = merge_sessions(journal.events(rid))
    try:
        plan = CompiledPlan.model_validate(journal.compiled_plan(rid))
    except ValidationError:  # recorded by another plait version: draw no graph
        plan = None
    return rid, report, events, plan


def _timeline_bar(step: Any, start: str, total: float, width: int = 24) -> str:
    from plait.runtime.events import parse_ts

    if not step.started_at or not step.finished_at or total <= 0:
        return ""
    offset = (parse_ts(step.started_at) - parse_ts(start)).total_seconds()
    begin = min(width - 1, int(offset / total * width))
    length = max(1, round((step.duration_s or 0.0) / total * width))
    return " " * begin + "█" * min(length, width - begin)


@cli.command("show")
@click.argument("run_id")
@journal_option
@click.option(
    "--json", "json_out", is_flag=True, help="Print the run's report (with metrics) as JSON."
)
@guarded
def show_command(run_id: str, journal_path: str | None, json_out: bool) -> None:
    """Show a recorded run: outcome, reasons, a per-step timeline, metrics and outputs.

    RUN_ID may be a prefix of the id. A run whose process was killed shows as `unfinished`
    and its steps that were running as `unfinished` too (`plait resume` continues it).

    \b
    Examples:
      plait show 3f9c2a1b
      plait show 3f9c2a1b --json | jq '.steps.classify.error'
      plait show "$(plait runs -n 1 --json | jq -r '.[0].run_id')"
    """
    from plait.runtime.journal import RunLock

    with open_journal(journal_path, create=False) as journal:
        rid, report, _events, _plan = _recorded(journal, run_id)
        record = journal.run(rid)
        live = record.outcome is None and RunLock(journal.path, rid).held_elsewhere()
    if json_out:
        _echo_report(report)
        return
    status = record.status(live)
    outcome = (
        f"{status} (so far: {report.outcome})"
        if record.outcome is None
        else f"{status} ({record.outcome})"
        if status != record.outcome
        else status
    )
    click.echo(f"run {rid}  plan {report.plan}  outcome {outcome}")
    click.echo(
        f"started {_fmt_time(report.started_at)}  duration "
        f"{_fmt_secs(report.duration_s)}  sessions {record.sessions}"
        + (f"  cancelled by {report.cancelled_by}" if report.cancelled_by else "")
    )
    for reason in report.reasons:
        who = f"step {reason.step}" if reason.step else f"output {reason.output}"
        click.echo(f"  why: {who}: {reason.why}" + (f" ({reason.kind})" if reason.kind else ""))
    _show_steps(report)
    m = report.metrics
    if m is not None:
        click.echo(
            f"retries {m.retries}  fallbacks used {m.fallbacks_used}  breaker trips "
            f"{m.breaker_trips}  makespan {_fmt_secs(m.makespan_s)}  critical path "
            f"{_fmt_secs(m.critical_path_s)} ({' -> '.join(m.critical_path) or '-'})"
        )
    for line in usage_lines(report):
        click.echo(line)
    click.echo("outputs: " + json.dumps(report.outputs, ensure_ascii=False, default=str))


def usage_lines(report: Any) -> list[str]:
    """`plait show`: model usage per step that called one, then the run's total."""

    def text(u: Any) -> str:
        tokens = (
            "tokens unknown"
            if u.total_tokens is None
            else f"tokens {u.prompt_tokens if u.prompt_tokens is not None else '?'} prompt + "
            f"{u.completion_tokens if u.completion_tokens is not None else '?'} "
            f"completion = {u.total_tokens}"
        )
        return f"model {u.model or '-'}, {u.requests} request(s), {tokens}"

    if report.usage is None:
        return []
    lines = [f"llm {name}: {text(s.usage)}" for name, s in report.steps.items() if s.usage]
    return [*lines, f"llm total: {text(report.usage)}"]


def _show_steps(report: Any) -> None:
    total = max([s.duration_s or 0.0 for s in report.steps.values()] + [report.duration_s or 0.0])
    metrics = report.metrics.steps if report.metrics is not None else {}
    rows = []
    for name, s in report.steps.items():
        m = metrics.get(name)
        error = f"{s.error.kind}: {s.error.message}" if s.error else ""
        status = s.status + (f" ({s.reason})" if s.reason else "")
        rows.append(
            [
                name,
                status,
                str(s.attempts),
                _fmt_secs(s.duration_s),
                _fmt_secs(m.backoff_s) if m and m.backoff_s else "-",
                _fmt_secs(m.queued_s) if m and (m.queued_s or 0) >= 0.005 else "-",
                s.fallback_used or "-",
                _timeline_bar(s, report.started_at, total),
                error[:60],
            ]
        )
    _print_table(
        "steps",
        [
            "step",
            "status",
            "attempts",
            "duration",
            "backoff",
            "queued",
            "fallback",
            "timeline",
            "error",
        ],
        rows,
    )


@cli.command("report")
@click.argument("run_id")
@click.option(
    "-o", "--output", "out_path", required=True, metavar="FILE.html", help="The HTML file to write."
)
@journal_option
@guarded
def report_command(run_id: str, out_path: str, journal_path: str | None) -> None:
    """Write one self-contained HTML page about a recorded run: outcome, coloured graph,
    a timeline of every attempt, backoff and queueing, and each failed attempt's error.

    The coloured graph needs Graphviz's `dot`; without it the page says so and keeps the
    rest.

    \b
    Examples:
      plait report 3f9c2a1b -o run.html
      plait report "$(plait runs -n 1 --json | jq -r '.[0].run_id')" -o last.html
    """
    from plait.runtime.html_report import render_html

    with open_journal(journal_path, create=False) as journal:
        _rid, report, events, plan = _recorded(journal, run_id)
    assert report.metrics is not None
    page = render_html(report.to_json_dict(), events, plan, report.metrics)
    try:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None


def graph_run_status(
    run_id: str, journal_path: str | None, plan: Any = None
) -> dict[str, dict[str, Any]]:
    """`plait graph PLAN --run RUN_ID`: per step {status, attempts, duration_s} of a run.

    A run of another plan (another name, or no step in common) is refused: colouring
    nothing would look like a run that never started."""
    from plait.runtime.html_report import step_status

    with open_journal(journal_path, create=False) as journal:
        rid, report, _events, _plan = _recorded(journal, run_id)
    if plan is not None:
        if report.plan != plan.plan:
            raise UserError(
                f"run {rid} is a run of plan `{report.plan}`, not of `{plan.plan}`;"
                " give that plan's file, or another run (`plait runs` lists them)"
            )
        if report.steps and not set(report.steps) & set(plan.steps):
            raise UserError(
                f"run {rid} shares no step with this plan `{plan.plan}`; give "
                "the plan file the run was made from"
            )
    return step_status(report.to_json_dict())


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="plait", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except BrokenPipeError:
        _quiet_broken_pipe()


# --- batch: many runs of one plan (its own module; registered here) -------------------------

from plait.cli_batch import batch_command  # noqa: E402 - needs the helpers above

cli.add_command(batch_command)
