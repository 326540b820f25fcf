"""What `plait batch` shows: a progress bar with counts by outcome and an ETA on a terminal,
plain lines otherwise (a count line at most every few seconds, one line per failed input
line), and the summary table at the end."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from plait.runtime.batch import OUTCOMES, BatchSummary, LineResult

PLAIN_EVERY_S = 2.0  # at most one count line this often (logs of a long batch stay short)


def counts_text(summary: BatchSummary) -> str:
    return ", ".join(f"{summary.ran.get(k, 0)} {k}" for k in OUTCOMES)


def failure_text(result: LineResult) -> str:
    """`line 7 failed: step classify: transient: ...` (the first reason)."""
    why = ""
    if result.reasons:
        r = result.reasons[0]
        who = (
            f"step {r['step']}: "
            if r.get("step")
            else f"output {r['output']}: "
            if r.get("output")
            else ""
        )
        kind = f" ({r['kind']})" if r.get("kind") and r.get("step") else ""
        why = f": {who}{r.get('why', '')}{kind}"
    run = f" [run {result.run_id}]" if result.run_id else ""
    return f"line {result.line} {result.outcome}{why}{run}"


class PlainBatchProgress:
    """Plain lines on stderr: failed lines as they come, counts every few seconds."""

    def __init__(self, to_run: int, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.to_run = to_run
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, result: LineResult, summary: BatchSummary) -> None:
        if result.outcome == "failed":
            self._print(failure_text(result))
        now = time.monotonic()
        if now - self.last >= PLAIN_EVERY_S:
            self.last = now
            self._print(self._counts(summary, now))

    def _counts(self, summary: BatchSummary, now: float) -> str:
        n = sum(summary.ran.values())
        elapsed = now - self.started
        eta = (self.to_run - n) * elapsed / n if n else None
        rest = f", ETA {_secs(eta)}" if eta is not None and n < self.to_run else ""
        return f"{n}/{self.to_run} lines ({counts_text(summary)}){rest}"

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} batch: {text}", file=self.stream, flush=True)

    def close(self, summary: BatchSummary) -> None:
        self._print(self._counts(summary, time.monotonic()))


class LiveBatchProgress:
    """A rich progress bar on a terminal; failed lines printed above it."""

    def __init__(self, to_run: int, stream: IO[str] | None = None) -> None:
        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "[green]{task.fields[succeeded]} ok[/] [yellow]{task.fields[degraded]}"
                " degraded[/] [red]{task.fields[failed]} failed[/]"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("batch", total=to_run, succeeded=0, degraded=0, failed=0)
        self.progress.start()

    def __call__(self, result: LineResult, summary: BatchSummary) -> None:
        if result.outcome == "failed":
            self.console.print(f"[red]{failure_text(result)}[/]", highlight=False)
        ran = summary.ran
        self.progress.update(
            self.task,
            completed=sum(ran.values()),
            succeeded=ran["succeeded"],
            degraded=ran["degraded"],
            failed=ran["failed"],
        )

    def close(self, summary: BatchSummary) -> None:
        self.progress.stop()


def make_batch_progress(quiet: bool, to_run: int, stream: IO[str] | None = None) -> Any:
    """The progress observer for this terminal (None with --quiet)."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        return LiveBatchProgress(to_run, stream)
    return PlainBatchProgress(to_run, stream)


def summary_rows(summary: BatchSummary) -> list[list[str]]:
    """Rows of the summary table: outcome counts (this invocation, whole file), then the
    figures."""
    rows = [[k, str(summary.ran.get(k, 0)), str(summary.overall.get(k, 0))] for k in OUTCOMES]
    rows.append(["lines", str(sum(summary.ran.values())), f"{summary.done}/{summary.total_lines}"])
    return rows


def summary_lines(summary: BatchSummary) -> list[str]:
    p50, p95 = summary.percentile(50), summary.percentile(95)
    n = sum(summary.ran.values())
    rate = n / summary.wall_s if summary.wall_s > 0 else 0.0
    tokens = summary.prompt_tokens + summary.completion_tokens
    lines = [
        f"run duration p50 {_secs(p50)}  p95 {_secs(p95)}",
        f"tokens {tokens} (prompt {summary.prompt_tokens}, completion {summary.completion_tokens})",
        f"wall {_secs(summary.wall_s)}  {rate:.1f} lines/s",
    ]
    if summary.skipped:
        lines.append(f"{summary.skipped} lines were already in the output file (skipped)")
    return lines


def render_summary(summary: BatchSummary, stream: IO[str] | None = None) -> None:
    """The summary table: a rich table on a terminal, aligned columns otherwise."""
    stream = stream or sys.stdout
    columns = ["outcome", "this run", "all lines"]
    rows = summary_rows(summary)
    if stream.isatty():
        console = Console(file=stream)
        table = Table(*columns, title="batch summary", title_justify="left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        for line in summary_lines(summary):
            console.print(line, highlight=False)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("batch summary", file=stream)
    for row in [columns, *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=stream,
        )
    for line in summary_lines(summary):
        print(line, file=stream)
    stream.flush()


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}m{seconds:02.0f}s"
