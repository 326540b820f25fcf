"""The `plait` command line: argv -> library calls -> exit code. Thin glue, no logic of its own.

Each command lives in its own section below; exit codes are the named constants here.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
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
        except (SystemExit, KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("PLAIT_DEBUG") == "1":
                traceback.print_exc()
            click.echo(f"internal error (a bug in plait): {type(exc).__name__}: {exc}"
                       " (set PLAIT_DEBUG=1 for the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


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


def execute_run(runner: Any, *, json_out: bool, report_path: str | None,
                events_path: str | None, quiet: bool, allow_degraded: bool) -> int:
    """Run a prepared `plait.runtime.api.Runner` with the output options of `run` (shared
    with `resume`): progress, `--events`, `--report`, `--json`; returns the exit code.
    Subscribe more sinks (a journal, a tracer) by appending to `runner.sinks` first."""
    import asyncio
    import json
    import signal

    from plait.runtime.progress import make_progress

    progress = make_progress(quiet)
    events_sink, events_file = _open_events_file(events_path)
    for sink in (progress, events_sink):
        if sink is not None:
            runner.sinks.append(sink)
    try:
        report = asyncio.run(runner.run(handle_signals=True))
    finally:
        if events_file is not None:
            events_file.close()
    if progress is not None:
        progress.close(report)
    text = json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False)
    if report_path is not None:
        try:
            with open(report_path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as exc:
            click.echo(f"error: cannot write report {report_path}: {exc.strerror or exc}",
                       err=True)
            return EXIT_INVALID
    if json_out:
        click.echo(text)
    if runner.signal is not None:
        return EXIT_SIGTERM if runner.signal == signal.SIGTERM else EXIT_SIGINT
    if report.outcome == "failed":
        return EXIT_FAILED
    if report.outcome == "degraded" and not allow_degraded:
        return EXIT_DEGRADED
    return EXIT_OK


def run_output_options(func: F) -> F:
    """The output options `run` and `resume` share."""
    for option in reversed([
        click.option("--json", "json_out", is_flag=True, help="Print the run report as JSON."),
        click.option("--report", "report_path", metavar="FILE",
                     help="Write the run report (JSON) to FILE."),
        click.option("--events", "events_path", metavar="FILE",
                     help="Write every event as a JSON line to FILE."),
        click.option("--allow-degraded", is_flag=True, help="Exit 0 when degraded."),
        click.option("--quiet", "-q", is_flag=True, help="No progress on stderr."),
    ]):
        func = option(func)
    return func


@cli.command("run")
@click.argument("plan_path", metavar="PLAN")
@click.option("--input", "input_pairs", multiple=True, metavar="K=V",
              help="An input value, parsed by its declared type (repeatable).")
@click.option("--inputs", "inputs_file", metavar="FILE.json",
              help="Input values from a JSON object (--input wins).")
@run_output_options
@click.option("--seed", type=int, default=None, help="Seed the retry jitter.")
@click.option("--inject", "injections", multiple=True, metavar="STEP=KIND[:N]",
              help="Make STEP's first N attempts (all without N) fail with KIND.")
@guarded
def run_command(plan_path: str, input_pairs: tuple[str, ...], inputs_file: str | None,
                json_out: bool, report_path: str | None, events_path: str | None,
                allow_degraded: bool, quiet: bool, seed: int | None,
                injections: tuple[str, ...]) -> None:
    """Run a plan: exit 0 succeeded, 3 degraded, 1 failed, 2 invalid, 130/143 on a signal."""
    from plait.runtime.api import Runner, load_plan, parse_cli_inputs, parse_injections

    plan = load_plan(plan_path)
    inputs = parse_cli_inputs(plan, input_pairs, inputs_file)
    runner = Runner(plan, inputs, seed=seed, inject=parse_injections(injections, plan))
    sys.exit(execute_run(runner, json_out=json_out, report_path=report_path,
                         events_path=events_path, quiet=quiet, allow_degraded=allow_degraded))


# --- journal commands: resume, runs, show, report -------------------------------------------


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="plait", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
