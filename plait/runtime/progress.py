"""Progress on stderr, as an event sink: a rich live view on a terminal (one line per running
step with its attempt number and elapsed time), plain timestamped lines otherwise, and a
final summary with the outcome's reasons. The outputs are not part of it: `plait run` prints
them on stdout. Event values are already masked by the bus.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from plait.runtime import events as ev
from plait.runtime.report import RunReport

if TYPE_CHECKING:
    from rich.table import Table

_STATUS_STYLE = {
    "succeeded": "green",
    "recovered": "yellow",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "magenta",
    "degraded": "yellow",
}


class PlainProgress:
    """One timestamped line per meaningful event (for logs and CI)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: ev.Event) -> None:
        line = describe(event)
        if line is not None:
            stamp = event.ts[11:23]
            print(f"{stamp} {line}", file=self.stream, flush=True)

    def close(self, report: RunReport) -> None:
        print(summary_text(report), file=self.stream, flush=True)

    def stop(self) -> None:
        """Nothing to tear down for plain lines (the run ended without a report)."""


def describe(event: ev.Event) -> str | None:
    """A one-line description of an event, or None for events not worth a line."""
    e: Any = event
    elem = f"[{e.element}]" if getattr(e, "element", None) is not None else ""
    if isinstance(event, ev.RunStarted):
        return f"run {e.run_id} of plan {e.plan} started"
    if isinstance(event, ev.StepStarted):
        return f"{e.step}: started" + (f" (fallback for {e.standby_for})" if e.standby_for else "")
    if isinstance(event, ev.AttemptFailed):
        tag = " (injected)" if e.injected else ""
        return f"{e.step}{elem}: attempt {e.attempt} failed: {e.kind}: {e.message}{tag}"
    if isinstance(event, ev.RetryScheduled):
        return f"{e.step}{elem}: retry (attempt {e.attempt}) in {e.delay_s:.3g}s"
    if isinstance(event, ev.FallbackStarted):
        return f"{e.step}: trying fallback {e.fallback}"
    if isinstance(event, (ev.BreakerOpened, ev.BreakerHalfOpen, ev.BreakerClosed)):
        return f"breaker of {e.resource}: {e.event.removeprefix('breaker_')}"
    if isinstance(event, ev.StepFinished):
        extra = f" ({e.reason})" if e.reason else ""
        if e.kind and e.status in ("failed", "cancelled"):
            extra += f": {e.message}" if e.kind == "cancelled" else f": {e.kind}: {e.message}"
        return f"{e.step}: {e.status}{extra}"
    if isinstance(event, ev.RunFinished):
        return f"run finished: {e.outcome}" + (
            f" (cancelled by {e.cancelled_by})" if e.cancelled_by else ""
        )
    if isinstance(event, ev.LoopBlocked):
        return (
            f"warning: {e.step}{elem}: tool `{e.tool}` blocked the event loop for "
            f"{e.duration_s:.1f}s"
        )
    if isinstance(event, ev.AttemptAbandoned):
        return (
            f"{e.step}{elem}: attempt {e.attempt} abandoned; its thread runs on and "
            "keeps its concurrency slots"
        )
    return None


# A plan of at most this many steps lists every step in the summary; a bigger one lists
# only its steps that did not succeed (at most `SUMMARY_LISTED` of them) and a count line.
SUMMARY_ALL_STEPS = 20
SUMMARY_LISTED = 50


def summary_steps(report: RunReport) -> tuple[list[tuple[str, Any]], list[str]]:
    """The steps a summary lists, and the lines that say what it left out.

    A small plan (at most `SUMMARY_ALL_STEPS` steps) lists every step and leaves nothing
    out. A bigger one lists the steps that did not succeed, in plan order, at most
    `SUMMARY_LISTED` of them, then `… and N more not listed` when it cut some, and one
    count line per status: `10000 steps: 9998 succeeded, 2 failed`."""
    steps = report.steps
    if len(steps) <= SUMMARY_ALL_STEPS:
        return list(steps.items()), []
    counts: dict[str, int] = {}
    unusual: list[tuple[str, Any]] = []
    for name, s in steps.items():
        counts[s.status] = counts.get(s.status, 0) + 1
        if s.status != "succeeded":
            unusual.append((name, s))
    notes = []
    if len(unusual) > SUMMARY_LISTED:
        notes.append(f"… and {len(unusual) - SUMMARY_LISTED} more that did not succeed")
    by_count = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=_most))
    notes.append(f"{len(steps)} steps: {by_count}")
    return unusual[:SUMMARY_LISTED], notes


def reason_lines(report: RunReport) -> list[str]:
    """One line per reason for the outcome, at most `SUMMARY_LISTED` (the report has all)."""
    lines = []
    for r in report.reasons[:SUMMARY_LISTED]:
        who = f"step {r.step}" if r.step else f"output {r.output}"
        lines.append(f"reason: {who}: {r.why}" + (f" ({r.kind})" if r.kind else ""))
    if len(report.reasons) > SUMMARY_LISTED:
        lines.append(f"… and {len(report.reasons) - SUMMARY_LISTED} more reasons in the report")
    return lines


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def summary_text(report: RunReport) -> str:
    lines = [f"{report.plan}: {report.outcome} in {report.duration_s or 0:.2f}s"]
    listed, notes = summary_steps(report)
    for name, s in listed:
        why = s.reason or (f"{s.error.kind}: {s.error.message}" if s.error else "")
        lines.append(f"  {name:<20} {s.status:<10} attempts={s.attempts} {why}".rstrip())
    lines += [f"  {note}" for note in notes]
    lines += [f"  {line}" for line in reason_lines(report)]
    lines += [f"  warning: {w.message} (step {w.step})" for w in report.warnings]
    lines += [
        f"  abandoned: {a.step} attempt {a.attempt}"
        + (f" element {a.element}" if a.element is not None else "")
        + (
            f" still running ({a.overran_s or 0:.1f}s past its end)"
            if a.still_running
            else f" overran by {a.overran_s or 0:.1f}s"
        )
        for a in report.abandoned
    ]
    return "\n".join(lines)


class LiveProgress:
    """A rich live view of running steps, then a summary table (on a terminal). rich is
    imported here, not by the module: a run whose stderr is not a terminal (CI, a pipe,
    `--quiet`) never loads it (~0.5 MB of memory, issue #13)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stderr)
        self.running: dict[str, tuple[int, float]] = {}  # step -> (attempt, started)
        self.live = Live(
            console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render
        )
        self.live.start()

    def __call__(self, event: ev.Event) -> None:
        e: Any = event
        if isinstance(event, ev.AttemptStarted):
            first = self.running.get(e.step, (0, time.monotonic()))[1]
            self.running[e.step] = (e.attempt, first)
        elif isinstance(event, ev.StepFinished):
            self.running.pop(e.step, None)
            if e.status in ("failed", "cancelled", "recovered"):
                self._note(describe(event), _STATUS_STYLE.get(e.status, ""))
        elif isinstance(
            event,
            (
                ev.AttemptFailed,
                ev.FallbackStarted,
                ev.BreakerOpened,
                ev.LoopBlocked,
                ev.AttemptAbandoned,
            ),
        ):
            self._note(describe(event), "dim")

    def _note(self, text: str | None, style: str) -> None:
        from rich.text import Text

        self.live.console.print(Text(text or "", style=style))

    def _render(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for step, (attempt, started) in list(self.running.items()):
            table.add_row(Text(step, style="bold"), f"attempt {attempt}", f"{now - started:5.1f}s")
        return table

    def stop(self) -> None:
        """Stop the live view (restores the cursor), also when the run ended in an error."""
        self.live.stop()

    def close(self, report: RunReport) -> None:
        from rich.table import Table
        from rich.text import Text

        self.live.stop()
        table = Table(title=f"{report.plan}: {report.outcome}")
        for col in ("step", "status", "attempts", "why"):
            table.add_column(col)
        listed, notes = summary_steps(report)
        for name, s in listed:
            why = s.reason or (f"{s.error.kind}: {s.error.message}" if s.error else "")
            if s.fallback_used:
                why = f"fallback {s.fallback_used}; {why}"
            table.add_row(
                name, Text(s.status, style=_STATUS_STYLE.get(s.status, "")), str(s.attempts), why
            )
        self.console.print(table)
        for note in notes:
            self.console.print(note)
        for line in reason_lines(report):
            self.console.print(line)


def make_progress(
    quiet: bool, stream: IO[str] | None = None
) -> PlainProgress | LiveProgress | None:
    """The progress sink for this terminal: None with `--quiet`."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        return LiveProgress(stream)
    return PlainProgress(stream)
