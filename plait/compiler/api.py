"""The compiler's library API: source text or a file in, a CompiledPlan and diagnostics out.

parse -> lower -> checks (skipped after syntax errors) -> graph edges -> CompiledPlan
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from plait import jsontext
from plait.compiler import codes
from plait.compiler.checks import check_plan
from plait.compiler.diagnostics import Diagnostic, Severity, error, has_errors, sort_key
from plait.compiler.graph import edges
from plait.compiler.ir import IR_VERSION, CompiledPlan, Plan
from plait.compiler.render import render_all, summary
from plait.compiler.source import SourceMap, Span, plan_text
from plait.errors import UserError
from plait.stdlib.registry import (
    READ_FILES,
    ToolRegistry,
    UsePolicy,
    builtin_registry,
    plan_registry,
)


class PlanInvalid(UserError):
    """A plan with errors, carrying its diagnostics (rendered as the message)."""

    def __init__(self, message: str, result: CompileResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class CompileResult:
    plan: CompiledPlan | None  # None when there are errors
    diagnostics: list[Diagnostic]
    source: SourceMap
    registry: ToolRegistry

    @property
    def ok(self) -> bool:
        return self.plan is not None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    def render(self, *, color: bool = False) -> str:
        """Every diagnostic as rustc-style text."""
        return render_all(self.diagnostics, {self.source.path: self.source.text}, color=color)


def compile_source(
    text: str,
    path: str = "<plan>",
    plan_dir: Path | None = None,
    *,
    use_policy: UsePolicy = READ_FILES,
) -> CompileResult:
    """Compile plan source text. `path` names it in diagnostics; `plan_dir` resolves `use`.

    The text is first made `plan_text` (line ends as `\n`, no trailing blanks): the
    result's `source.text` is that text. `use_policy` says what `use` items may execute:
    by default a `use "./tools.py"` is only read, never imported (docs/security.md).
    """
    return _compile(plan_text(text), path, plan_dir, use_policy)


def _compile(text: str, path: str, plan_dir: Path | None, use_policy: UsePolicy) -> CompileResult:
    from plait.compiler.lower import lower_indexed
    from plait.compiler.parse import parse

    source = SourceMap(path, text)
    registry = builtin_registry().child()
    tree, diagnostics = parse(text, path)
    if tree is None or _has_syntax_errors(diagnostics):
        return _result(None, diagnostics, source, registry)
    plan, lowered, index = lower_indexed(tree, source)
    diagnostics = [*diagnostics, *lowered]
    checked, ctx = check_plan(plan, source, registry, plan_dir, index, use_policy=use_policy)
    diagnostics += checked
    if has_errors(diagnostics):
        return _result(None, diagnostics, source, registry)
    plan.edges = edges(plan, ctx.step_refs)
    return _result(_compiled(plan), diagnostics, source, registry)


def _has_syntax_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.is_error and d.code.id.startswith("E1") for d in diagnostics)


def _compiled(plan: Plan) -> CompiledPlan:
    """The plan as a CompiledPlan without re-validating (it was built from valid models)."""
    fields = {name: getattr(plan, name) for name in Plan.model_fields}
    return CompiledPlan.model_construct(**fields)


def _result(
    plan: CompiledPlan | None,
    diagnostics: list[Diagnostic],
    source: SourceMap,
    registry: ToolRegistry,
) -> CompileResult:
    with_path = [d if d.path else dataclasses.replace(d, path=source.path) for d in diagnostics]
    return CompileResult(plan, sorted(with_path, key=sort_key), source, registry)


def compile_file(path: str | Path, *, use_policy: UsePolicy = READ_FILES) -> CompileResult:
    """Compile a `.agent` file. A missing or unreadable file raises UserError; bytes that are
    not UTF-8 text give diagnostic E110. `use_policy` as for `compile_source`."""
    shown = str(path)
    data = read_plan_bytes(Path(path))
    text, problem = decode_plan(data, shown)
    if problem is not None:
        source = SourceMap(shown, text)
        return CompileResult(None, [problem], source, builtin_registry().child())
    absolute = Path(path).resolve()
    result = compile_source(text, shown, plan_dir=absolute.parent, use_policy=use_policy)
    if result.plan is not None:
        result.plan.source_path = str(absolute)
        result.plan.plan_sha256 = hashlib.sha256(data).hexdigest()
    return result


MAX_PLAN_BYTES = 32_000_000  # "32 MB": a plan file larger than this is refused


def read_plan_bytes(path: Path) -> bytes:
    """The plan file's bytes: a regular file of at most `MAX_PLAN_BYTES` (a FIFO would
    block and `/dev/zero` never end)."""
    import stat

    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is not a regular file (a plan is read from a file)")
        if info.st_size > MAX_PLAN_BYTES:
            raise UserError(
                f"plan file {path} is {info.st_size // 1_000_000} MB; plans are "
                f"limited to {MAX_PLAN_BYTES // 1_000_000} MB"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_PLAN_BYTES + 1)
        if len(data) > MAX_PLAN_BYTES:
            raise UserError(
                f"plan file {path} is over the {MAX_PLAN_BYTES // 1_000_000} MB limit for plans"
            )
        return data
    except FileNotFoundError:
        raise UserError(f"no such plan file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a plan file") from None
    except OSError as exc:
        raise UserError(f"cannot read plan file {path}: {exc.strerror or exc}") from None


def decode_plan(data: bytes, path: str) -> tuple[str, Diagnostic | None]:
    """The text of a plan file, or a lossy text and an E110 diagnostic for bad bytes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lossy = data.decode("utf-8", errors="replace")
        span = _span_at(data[: exc.start].decode("utf-8", errors="replace"))
        return lossy, error(
            codes.BAD_ENCODING,
            f"the plan is not valid UTF-8 text (byte 0x{data[exc.start]:02x})",
            span,
            "save the file as UTF-8",
            path=path,
        )
    nul = text.find("\0")
    if nul >= 0:
        return text, error(
            codes.BAD_ENCODING,
            "the plan contains a NUL byte; is it a binary file?",
            _span_at(text[:nul]),
            path=path,
        )
    return text, None


def _span_at(before: str) -> Span:
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return Span(line=line, column=column, end_line=line, end_column=column + 1)


def load_plan(
    path: str | Path,
    *,
    use_policy: UsePolicy = READ_FILES,
    on_warnings: Callable[[CompileResult], None] | None = None,
) -> CompiledPlan:
    """A plan ready to run, from a `.agent` file or from JSON written by `plait compile`.

    Raises UserError for a missing file and PlanInvalid (a UserError) for an invalid plan.
    `use_policy` as for `compile_source` (`plait run` imports: IMPORT_ALL). `on_warnings`
    receives the compile result of a `.agent` file that has warnings (`plait run` prints
    them before it runs).
    """
    data = read_plan_bytes(Path(path))
    if str(path).endswith(".json") or data.lstrip()[:1] == b"{":
        return load_compiled_json(data, str(path))
    result = compile_file(path, use_policy=use_policy)
    if result.plan is None:
        counts = summary(result.errors)
        raise PlanInvalid(f"{path} is not a valid plan ({counts}):\n{result.render()}", result)
    if on_warnings is not None and result.warnings:
        on_warnings(result)
    return result.plan


def load_compiled_json(data: bytes, path: str) -> CompiledPlan:
    """A CompiledPlan from `plait compile` output."""
    try:
        raw = jsontext.loads(data)
    except ValueError as exc:
        raise UserError(f"{path} is {exc}") from None
    if isinstance(raw, dict) and raw.get("version") not in (None, IR_VERSION):
        raise UserError(
            f"{path} was compiled by another plait (IR version "
            f"{raw.get('version')}, this plait reads {IR_VERSION}); compile again"
        )
    try:
        return CompiledPlan.model_validate(raw)
    except RecursionError:
        raise UserError(f"{path} is not a compiled plan: expressions nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise UserError(f"{path} is not a compiled plan: {where}: {first['msg']}") from None


def plan_tools(plan: Plan) -> ToolRegistry:
    """The tools a plan can call: the built-ins plus its `use` items (for a loaded JSON plan).

    Raises ToolLoadError when a `use` target cannot be loaded.
    """
    source_path = getattr(plan, "source_path", None)
    plan_dir = Path(source_path).parent if source_path else Path.cwd()
    return plan_registry([u.target for u in plan.uses], plan_dir)


def compiled_json(plan: CompiledPlan) -> str:
    """The JSON `plait compile` writes."""
    return json.dumps(plan.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
