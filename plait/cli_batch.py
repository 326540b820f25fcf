"""`plait batch`: the command-line glue over `plait.runtime.batch` (argv -> batch -> exit).

Exit code, over every line of the output file once the batch ends: 0 when all succeeded
(degraded too with --allow-degraded), 3 when some degraded and none failed, 1 when any
failed (a bad input line included), 2 for an invalid plan, inputs file or option, 130 /
143 when Ctrl-C / SIGTERM stopped it (rerun the same command to continue).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from plait.cli import (
    EXIT_DEGRADED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    guarded,
)
from plait.errors import UserError


@click.command("batch")
@click.argument("plan_path", metavar="PLAN")
@click.option(
    "--inputs",
    "inputs_path",
    required=True,
    metavar="FILE.jsonl",
    help="One JSON object of inputs per line; one run per line.",
)
@click.option(
    "-o",
    "--output",
    "out_path",
    required=True,
    metavar="OUT.jsonl",
    help="Results, one JSON line per input line, in completion order. Lines "
    "already there are skipped (rerun to resume).",
)
@click.option(
    "--concurrency",
    type=int,
    default=None,
    metavar="N",
    help="Runs in flight at once (default 32; with --executor ray, 32 per worker).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: every run in this process; ray: runs spread over Ray workers "
    "(needs `pip install plait[ray]`).",
)
@click.option(
    "--address",
    metavar="ADDR",
    default=None,
    help="With --executor ray: the Ray cluster to use (default: start a local one).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    metavar="N",
    help="With --executor ray: how many worker processes run lines (default: "
    "one per CPU of the cluster).",
)
@click.option("--allow-degraded", is_flag=True, help="Exit 0 when lines are only degraded.")
@click.option(
    "--json",
    "json_out",
    is_flag=True,
    help="Print the summary as JSON on stdout instead of a table.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@guarded
def batch_command(
    plan_path: str,
    inputs_path: str,
    out_path: str,
    concurrency: int | None,
    executor: str,
    address: str | None,
    workers: int | None,
    allow_degraded: bool,
    json_out: bool,
    quiet: bool,
) -> None:
    """Run a plan once per line of a JSONL file, many runs at once.

    Each line of FILE.jsonl is a JSON object of inputs. Results go to OUT.jsonl as lines
    {"line", "run_id", "outcome", "outputs", "reasons"} as runs end; a bad line is a failed
    line with its reason. Resources are shared by every run of the batch (`rate 10/s` is
    10/s for the batch). Ctrl-C stops cleanly; rerun the same command to continue. Exit 0
    all succeeded, 3 some degraded, 1 some failed, 2 invalid, 130/143 interrupted.

    \b
    Examples:
      plait batch triage.agent --inputs tickets.jsonl -o results.jsonl
      plait batch triage.agent --inputs tickets.jsonl -o results.jsonl --concurrency 64
      plait batch triage.agent --inputs tickets.jsonl -o results.jsonl --executor ray
    """
    from plait.runtime.api import load_plan, plan_tools
    from plait.runtime.batch import DEFAULT_CONCURRENCY, Batch, LineBackend, LocalLines
    from plait.runtime.batch_view import make_batch_progress, render_summary
    from plait.runtime.state import check_env

    if executor == "local" and (address or workers):
        raise UserError("--address and --workers go with --executor ray")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    plan = load_plan(plan_path)
    inputs, out = Path(inputs_path), Path(out_path)
    if not inputs.is_file():
        raise UserError(f"cannot read inputs file {inputs}: no such file")
    check_env(plan, _environ())  # an unset variable fails every line: say it once
    backend: LineBackend
    closing = None
    default_concurrency = DEFAULT_CONCURRENCY
    if executor == "ray":
        from plait.runtime.executors.ray import RayLines

        backend = closing = RayLines.start(plan, address=address, workers=workers)
        default_concurrency *= len(closing.workers)  # as many in flight per worker
    else:
        backend = LocalLines(plan, plan_tools(plan), warn=_warn)
    try:
        batch = Batch(plan, inputs, out, backend, concurrency=concurrency or default_concurrency)
        progress = make_batch_progress(quiet, batch.to_run)
        batch.on_result = progress
        try:
            import asyncio  # here, not at the top: `plait check` must not pay for it

            summary = asyncio.run(batch.run())
        finally:
            if progress is not None:
                progress.close(batch.summary)
    finally:
        if closing is not None:
            closing.close()
    if json_out:
        click.echo(json.dumps(summary.to_json_dict(), indent=2))
    else:
        render_summary(summary)
    if summary.signal is not None:
        click.echo(
            f"batch stopped: rerun the same command to continue "
            f"({summary.done}/{summary.total_lines} lines done)",
            err=True,
        )
        sys.exit(EXIT_SIGTERM if summary.signal == signal.SIGTERM else EXIT_SIGINT)
    sys.exit(_exit_code(summary.overall, allow_degraded))


def _exit_code(overall: dict[str, int], allow_degraded: bool) -> int:
    if overall.get("failed"):
        return EXIT_FAILED
    if overall.get("degraded") and not allow_degraded:
        return EXIT_DEGRADED
    return EXIT_OK


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _warn(text: str) -> None:
    click.echo(text, err=True)
