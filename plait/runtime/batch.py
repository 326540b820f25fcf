"""`plait batch`: one run of a plan per line of a JSONL file, many at once, results streamed.

Each non-blank line of the inputs file is a JSON object of inputs; its run's result is one
line `{"line", "run_id", "outcome", "outputs", "reasons"}` appended to the output file as
soon as the run ends (completion order). A line that is not JSON, not an object, or whose
inputs do not fit the plan is a `failed` line with the reason (`run_id` null): it never
stops the batch.

Resumable: lines already in the output file are skipped, so rerunning the same command
continues. Only this process writes the output file, one whole line per `write`, from the
event loop (signals arrive as callbacks there, never in the middle of a write), so Ctrl-C
leaves nothing half-written: the runs in flight are cancelled and their lines are not
written, and the next invocation runs them again. A torn last line (the process was
killed) is dropped on resume and its line run again.

Where the runs go is a `LineBackend`: `LocalLines` runs them in this process's event loop
with one set of resource guards shared by every run (`rate 10/s` is 10/s for the batch);
`plait.runtime.executors.ray.RayLines` spreads them over Ray workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from plait import jsontext
from plait.compiler.ir import Plan
from plait.errors import UserError
from plait.runtime import events as ev
from plait.runtime.api import Runner, validate_inputs
from plait.runtime.clock import RealClock
from plait.runtime.guards import ResourceGuards
from plait.runtime.scheduler import Executor
from plait.stdlib.registry import ToolRegistry

OUTCOMES = ("succeeded", "degraded", "failed")
DEFAULT_CONCURRENCY = 32  # runs in flight: plenty for I/O-bound plans, cheap in one loop


@dataclass(slots=True)
class InputLine:
    """A line of the inputs file whose inputs fit the plan: it gets a run."""

    line: int
    inputs: dict[str, Any]


@dataclass(slots=True)
class LineResult:
    """What became of one input line."""

    line: int
    outcome: str
    run_id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cancelled: bool = False  # stopped by Ctrl-C / SIGTERM: not written, run again later

    def record(self) -> dict[str, Any]:
        """The output file's line for it."""
        return {
            "line": self.line,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "outputs": self.outputs,
            "reasons": self.reasons,
        }


def bad_line(number: int, why: str) -> LineResult:
    return LineResult(number, "failed", reasons=[{"why": why, "kind": "invalid_input"}])


def parse_line(plan: Plan, number: int, text: str) -> InputLine | LineResult:
    """The run's inputs, or the failed line saying why they cannot be used."""
    try:
        value = jsontext.loads(text)  # (deep nesting, NaN: a bad line, never a crash)
    except ValueError as exc:
        why = str(exc).removeprefix("not valid JSON: ")
        return bad_line(number, f"line {number} is not valid JSON: {why}")
    if not isinstance(value, dict):
        return bad_line(
            number, f"line {number} must be a JSON object of inputs, not {type(value).__name__}"
        )
    try:
        return InputLine(number, validate_inputs(plan, value))
    except UserError as exc:
        return bad_line(number, str(exc))


def read_input_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line, read lazily."""
    try:
        handle = path.open(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read inputs file {path}: {exc.strerror or exc}") from None
    with handle:
        for number, text in enumerate(handle, 1):
            if text.strip():
                yield number, text


def count_input_lines(path: Path) -> int:
    return sum(1 for _ in read_input_lines(path))


def load_done(out_path: Path) -> dict[int, str]:
    """Lines already in the output file (line -> outcome). A torn last line (no newline:
    the writer was killed mid-line) is cut off so that its line runs again."""
    if not out_path.exists():
        return {}
    try:
        data = out_path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {out_path}: {exc.strerror or exc}") from None
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with out_path.open("r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    done: dict[int, str] = {}
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            done[int(record["line"])] = str(record["outcome"])
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{out_path}:{number}: not a line written by plait batch; use another output file"
            ) from None
    return done


class LineBackend(Protocol):
    """Where the runs of a batch happen."""

    async def run(self, item: InputLine) -> LineResult:
        """Run one line to its result (`cancelled` when stopped by `stop`)."""

    def stop(self) -> None:
        """Cancel every run in flight (Ctrl-C): they end with `cancelled` results."""


class TokenCount:
    """An event sink summing the LLM token usage tools report (`llm_usage` tool events)."""

    __slots__ = ("completion", "prompt")

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.ToolEvent) and event.tool_event == "llm_usage":
            data = event.to_json_dict()
            self.prompt += int(data.get("prompt_tokens") or 0)
            self.completion += int(data.get("completion_tokens") or 0)


class LocalLines:
    """Runs lines in this event loop. Every run shares the plan, its tools and one set of
    resource guards (`guards`; by default made here on the real clock)."""

    def __init__(
        self,
        plan: Plan,
        registry: ToolRegistry,
        *,
        guards: ResourceGuards | None = None,
        executor: Executor | None = None,
        environ: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.plan, self.registry, self.executor = plan, registry, executor
        self.guards = guards or ResourceGuards.for_plan(plan, RealClock())
        self.environ = dict(os.environ if environ is None else environ)
        self.active: set[Runner] = set()
        self.stopped = False
        self._warned: set[str] = set()
        self._warn = warn

    async def run(self, item: InputLine) -> LineResult:
        tokens = TokenCount()
        runner = Runner(
            self.plan,
            item.inputs,
            events=[tokens],
            environ=self.environ,
            registry=self.registry,
            warn=self._warn_once,
            executor=self.executor,
            guards=self.guards,
        )
        if self.stopped:
            return LineResult(item.line, "failed", cancelled=True)
        self.active.add(runner)
        try:
            report = await runner.run()
        finally:
            self.active.discard(runner)
        data = report.to_json_dict()
        return LineResult(
            item.line,
            report.outcome,
            run_id=report.run_id,
            outputs=data["outputs"],
            reasons=data["reasons"],
            duration_s=report.duration_s,
            prompt_tokens=tokens.prompt,
            completion_tokens=tokens.completion,
            cancelled=report.cancelled_by == "signal",
        )

    def stop(self) -> None:
        self.stopped = True
        for runner in list(self.active):
            if runner.run_obj is not None:
                runner.run_obj.stop("signal")

    def _warn_once(self, text: str) -> None:
        if self._warn is not None and text not in self._warned:
            self._warned.add(text)
            self._warn(text)


@dataclass
class BatchSummary:
    """What a batch invocation did, and where the whole output file stands."""

    total_lines: int  # non-blank lines of the inputs file
    skipped: int  # already in the output file before this invocation
    ran: Counter[str] = field(default_factory=Counter)  # outcome -> lines, this invocation
    overall: Counter[str] = field(default_factory=Counter)  # outcome -> lines, whole file
    durations: list[float] = field(default_factory=list)  # this invocation's runs
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    signal: int | None = None  # the signal that stopped the batch, if one did

    @property
    def done(self) -> int:
        return sum(self.overall.values())

    @property
    def finished(self) -> bool:
        return self.signal is None and self.done >= self.total_lines

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of this invocation's run durations."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "lines": self.total_lines,
            "skipped": self.skipped,
            "done": self.done,
            "finished": self.finished,
            "ran": {k: self.ran.get(k, 0) for k in OUTCOMES},
            "overall": {k: self.overall.get(k, 0) for k in OUTCOMES},
            "duration_p50_s": self.percentile(50),
            "duration_p95_s": self.percentile(95),
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
            },
            "wall_s": round(self.wall_s, 3),
            "interrupted_by": (signal.Signals(self.signal).name if self.signal else None),
        }


Observer = Callable[[LineResult, BatchSummary], None]


class Batch:
    """One invocation over an inputs file: `await batch.run()` returns its summary."""

    def __init__(
        self,
        plan: Plan,
        inputs_path: Path,
        out_path: Path,
        backend: LineBackend,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_result: Observer | None = None,
    ) -> None:
        if concurrency < 1:
            raise UserError(f"--concurrency must be at least 1, not {concurrency}")
        self.plan, self.backend, self.concurrency = plan, backend, concurrency
        self.inputs_path, self.out_path = inputs_path, out_path
        self.on_result = on_result
        done = load_done(out_path)
        self.done = set(done)
        self.summary = BatchSummary(
            total_lines=count_input_lines(inputs_path),
            skipped=len(done),
            overall=Counter(done.values()),
        )
        self._stopping = False

    @property
    def to_run(self) -> int:
        return max(0, self.summary.total_lines - self.summary.skipped)

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Stop taking lines and cancel those in flight (their lines are not written)."""
        if self.summary.signal is None:
            self.summary.signal = signum
        self._stopping = True
        self.backend.stop()

    async def run(self, *, handle_signals: bool = True) -> BatchSummary:
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop, signum)
                installed.append(signum)
        started = time.monotonic()
        try:
            with self._open_output() as out:
                pending = self._pending()
                async with asyncio.TaskGroup() as tg:
                    for _ in range(self.concurrency):
                        tg.create_task(self._worker(pending, out))
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.summary.wall_s = time.monotonic() - started
        return self.summary

    @contextlib.contextmanager
    def _open_output(self) -> Iterator[IO[str]]:
        try:
            handle = self.out_path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {self.out_path}: {exc.strerror or exc}") from None
        with handle:
            yield handle

    def _pending(self) -> Iterator[InputLine | LineResult]:
        for number, text in read_input_lines(self.inputs_path):
            if number not in self.done:
                yield parse_line(self.plan, number, text)

    async def _worker(self, pending: Iterator[InputLine | LineResult], out: IO[str]) -> None:
        # the iterator is shared: each worker takes the next line when it is free
        while not self._stopping:
            item = next(pending, None)
            if item is None:
                return
            result = item if isinstance(item, LineResult) else await self.backend.run(item)
            if result.cancelled:
                continue  # stopped before it ended: its line runs again next time
            self._write(out, result)

    def _write(self, out: IO[str], result: LineResult) -> None:
        out.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
        out.flush()
        s = self.summary
        s.ran[result.outcome] += 1
        s.overall[result.outcome] += 1
        if result.duration_s is not None:
            s.durations.append(result.duration_s)
        s.prompt_tokens += result.prompt_tokens
        s.completion_tokens += result.completion_tokens
        if self.on_result is not None:
            self.on_result(result, s)
