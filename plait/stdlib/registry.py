"""The tool registry: the `@tool` decorator, argument schemas from type hints, and the context
object tools receive. The compiler reads schemas from here; the runtime calls tools through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from plait.errors import InvalidInput, PlaitError

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_MODULES = (
    "plait.stdlib.std",
    "plait.stdlib.http",
    "plait.stdlib.llm",
    "plait.stdlib.shell",
    "plait.stdlib.py",
    "plait.stdlib.file",
)
ENTRY_POINT_GROUP = "plait.tools"


@dataclass
class ToolContext:
    """What a running tool may know about its call. Grows fields; never exposes the scheduler.

    A tool receives it by declaring a parameter annotated `ToolContext`; that parameter is
    not part of the tool's argument schema.
    """

    run_id: str
    step: str
    attempt: int = 1
    element: int | None = None
    plan_dir: Path = field(default_factory=Path.cwd)
    # Folders `file.*` may touch besides `plan_dir` (`--files DIR`, `PLAIT_FILES`)
    file_roots: tuple[Path, ...] = ()
    # Per-run storage shared by every tool call of the run (a pooled HTTP client, the
    # counters of std.flaky and scripted LLM rules). Keys are namespaced by the tool module.
    run_state: dict[str, Any] = field(default_factory=dict)
    # Tool-level observations (LLM token usage, model, latency) that go into the events.
    emit: Callable[[str, dict[str, Any]], None] = lambda _name, _fields: None
    # Cleanups to run when the run ends (closing the shared HTTP client); async or sync.
    on_run_end: list[Callable[[], Any]] = field(default_factory=list)
    # SPEC section 10: the attempt's idempotency key (`RUN_ID:STEP[@I][:INDEX][#N]`), equal
    # across retries of one decision and across `plait resume`; the HTTP write tools send
    # it as `Idempotency-Key`.
    idempotency_key: str | None = None
    iteration: int | None = None  # the loop iteration of a body step, else None
    # For a tool that admits its own requests (`llm.chat` with `tools`): the runtime's
    # `plait.stdlib.agent.AgentHost`, which admits model requests and runs tool calls under
    # the plan's policies. None elsewhere.
    agent: Any = None


class ToolLoadError(PlaitError):
    """A `use` target or entry point could not be loaded."""


@dataclass(frozen=True)
class ToolParam:
    name: str
    annotation: str  # for display: "str", "float", "Any", ...
    required: bool
    default: Any = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    func: Callable[..., Any]
    is_async: bool
    params: tuple[ToolParam, ...]
    args_model: type[BaseModel]
    context_param: str | None = None  # the parameter that receives the ToolContext
    accepts_extra: bool = False  # the function takes **kwargs (py.call)
    description: str = ""
    idempotent: bool = True
    # The tool reads the world and can be called again to see whether what it read changed:
    # a step calling it may be guarded (`guard`, SPEC section 10). `@tool(read=True)`.
    read: bool = False
    # Further checks of an argument's value beyond its type (`@tool(checks=...)`): each
    # raises a ToolError saying what is wrong. Run on literal arguments at compile time.
    arg_checks: tuple[tuple[str, Callable[[Any], object]], ...] = ()
    # An argument that, when given a non-empty value, makes the tool admit each of its own
    # requests through `ToolContext.agent` instead of the scheduler admitting the whole
    # call (`llm.chat`'s `tools`, SPEC section 11).
    self_admitting: str | None = None
    # Where a call runs: "inline" (an async tool on the loop, a sync one in a thread) or
    # "process" (a worker process, killed on timeout or cancellation: `@tool(isolation=...)`)
    isolation: str = "inline"

    def admits_itself(self, args: Mapping[str, Any]) -> bool:
        return self.self_admitting is not None and bool(args.get(self.self_admitting))

    def param(self, name: str) -> ToolParam | None:
        return next((p for p in self.params if p.name == name), None)

    def validate_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check evaluated arguments against the schema; raises InvalidInput saying why."""
        try:
            model = self.args_model.__pydantic_validator__.validate_python(args)
        except ValidationError as exc:
            raise InvalidInput(f"{self.name}: {_explain(exc)}") from None
        # the model's fields are the parameters, in order (extra ones are kept apart)
        values: dict[str, Any] = model.__dict__.copy()
        if self.accepts_extra:
            values.update(model.model_extra or {})
        return values

    def literal_error(self, arg: str, value: Any) -> str | None:
        """Why a literal value cannot be this argument, or None if it fits (compile time)."""
        if self.param(arg) is None:
            return None
        try:
            self.args_model.__pydantic_validator__.validate_assignment(
                self.args_model.model_construct(), arg, value, strict=True
            )
        except ValidationError as exc:
            return _explain(exc)
        return None

    def value_error(self, arg: str, value: Any) -> str | None:
        """Why a value of the right type is still wrong for this argument (the tool's own
        `checks`), or None (compile time, literal values)."""
        for name, check in self.arg_checks:
            if name == arg:
                try:
                    check(value)
                except PlaitError as exc:
                    return str(exc).removeprefix(f"{self.name}: ")
        return None


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"`{where}`: {err['msg'].lower()}" if where else err["msg"].lower())
    return "; ".join(parts)


class HintedParam(NamedTuple):
    """A parameter as a schema needs it: its type hint, and its default unless required."""

    name: str
    hint: Any
    required: bool
    default: Any = None


def spec_from_function(
    func: Callable[..., Any],
    name: str,
    *,
    idempotent: bool = True,
    checks: Mapping[str, Callable[[Any], object]] | None = None,
    read: bool = False,
    self_admitting: str | None = None,
    isolation: str = "inline",
) -> ToolSpec:
    """Build a ToolSpec from a function's signature and type hints (through pydantic)."""
    sig = inspect.signature(func)
    hints = get_type_hints(func)
    params: list[HintedParam] = []
    context_param = None
    accepts_extra = False
    for p in sig.parameters.values():
        hint = hints.get(p.name, Any)
        if hint is ToolContext:
            context_param = p.name
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_extra = True
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        required = p.default is inspect.Parameter.empty
        params.append(HintedParam(p.name, hint, required, None if required else p.default))
    doc = inspect.getdoc(func) or ""
    return build_spec(
        name,
        func,
        inspect.iscoroutinefunction(func),
        params,
        context_param=context_param,
        accepts_extra=accepts_extra,
        description=_first_paragraph(doc),
        idempotent=idempotent,
        checks=checks,
        read=read,
        self_admitting=self_admitting,
        isolation=isolation,
    )


def build_spec(
    name: str,
    func: Callable[..., Any],
    is_async: bool,
    params: Iterable[HintedParam],
    *,
    context_param: str | None = None,
    accepts_extra: bool = False,
    description: str = "",
    idempotent: bool = True,
    checks: Mapping[str, Callable[[Any], object]] | None = None,
    read: bool = False,
    self_admitting: str | None = None,
    isolation: str = "inline",
) -> ToolSpec:
    """A ToolSpec whose argument model pydantic builds from the parameters' hints (shared by
    imported functions and the tools `source_tools` reads without importing)."""
    params = list(params)
    fields: dict[str, Any] = {p.name: (p.hint, ... if p.required else p.default) for p in params}
    config = ConfigDict(
        extra="allow" if accepts_extra else "forbid",
        arbitrary_types_allowed=True,
        defer_build=True,  # built on first use: `plait check` uses few of the tools it loads
    )
    with warnings.catch_warnings():
        # Argument names such as `json` or `schema` shadow BaseModel methods; pydantic warns
        # but handles them (fields win), and the model is only used through its fields.
        warnings.filterwarnings("ignore", message="Field name .* shadows an attribute")
        model = create_model(f"{name.replace('.', '_')}_args", __config__=config, **fields)
    shown = tuple(ToolParam(p.name, _type_name(p.hint), p.required, p.default) for p in params)
    return ToolSpec(
        name,
        func,
        is_async,
        shown,
        model,
        context_param,
        accepts_extra,
        description,
        idempotent,
        read,
        tuple((checks or {}).items()),
        self_admitting,
        isolation,
    )


def _type_name(hint: Any) -> str:
    if hint is Any:
        return "any"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


class ToolRegistry:
    """Tools by name. One global registry holds the built-ins; each plan gets a child that
    adds the tools its `use` items load, so two plans in one process never collide."""

    def __init__(self, parent: ToolRegistry | None = None) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._parent = parent

    def register(self, spec: ToolSpec) -> None:
        self._tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        spec = self._tools.get(name)
        if spec is None and self._parent is not None:
            return self._parent.get(name)
        return spec

    def names(self) -> list[str]:
        own = set(self._tools)
        if self._parent is not None:
            own |= set(self._parent.names())
        return sorted(own)

    def __iter__(self) -> Iterator[ToolSpec]:
        for name in self.names():
            spec = self.get(name)
            assert spec is not None
            yield spec

    def child(self) -> ToolRegistry:
        return ToolRegistry(self)

    def own_names(self) -> list[str]:
        return sorted(self._tools)

    def load_use(self, target: str, plan_dir: Path, policy: UsePolicy | None = None) -> list[str]:
        """Load `use "pkg.module"` or `use "./tools.py"` as `policy` allows (default: import
        both); returns the tool names it added. Raises ToolLoadError (UseNotImported for a
        module the policy does not import)."""
        policy = policy or IMPORT_ALL
        if "\x00" in target:  # no path or module name holds one; the OS would refuse it
            raise ToolLoadError("the name contains a NUL character (`\\u{0}`)")
        if is_file_target(target):
            if not policy.import_files:
                from plait.stdlib.source_tools import read_tools  # (it imports this module)

                read = read_tools((plan_dir / target).resolve())
                for one in read:
                    self.register(one)
                return [one.name for one in read]
        elif not policy.import_modules:
            raise UseNotImported(f'`use "{target}"` is not imported (--no-import)')
        module = _import_target(target, plan_dir)
        added = []
        for value in vars(module).values():
            spec = getattr(value, "__plait_tool__", None)
            if isinstance(spec, ToolSpec):
                self.register(spec)
                added.append(spec.name)
        return added


@dataclass(frozen=True)
class UsePolicy:
    """What loading a plan's `use` items may execute (docs/security.md).

    `import_files`: a `use "./tools.py"` is imported (its code runs: `plait run`, `resume`,
    `batch`) or only read with `ast` (`check`, `compile`, `graph`, `tools --plan`).
    `import_modules`: a `use "pkg.module"` (installed code the user already trusts) is
    imported, or refused (`--no-import`).
    """

    import_files: bool = False
    import_modules: bool = True


READ_FILES = UsePolicy()  # check, compile, graph, tools --plan
IMPORT_ALL = UsePolicy(import_files=True, import_modules=True)  # run, resume, batch
NO_IMPORT = UsePolicy(import_files=False, import_modules=False)  # --no-import


class UseNotImported(ToolLoadError):
    """A module `use`d by dotted name that the policy does not let be imported."""


def is_file_target(target: str) -> bool:
    """`use "./tools.py"` (a file, relative to the plan) rather than `use "pkg.module"`."""
    return target.endswith(".py") or "/" in target or target.startswith(".")


def _import_target(target: str, plan_dir: Path) -> Any:
    try:
        if is_file_target(target):
            path = (plan_dir / target).resolve()
            if not path.is_file():
                raise ToolLoadError(f"no such file: {path}")
            mod_name = f"plait_use_{abs(hash(str(path)))}_{path.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise ToolLoadError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
            module.__dict__.setdefault("__plait_stem__", path.stem)
            return module
        return importlib.import_module(target)
    except ToolLoadError:
        raise
    except Exception as exc:  # any error in user code becomes a diagnostic, not a traceback
        raise ToolLoadError(f"{type(exc).__name__}: {exc}") from exc


REGISTRY = ToolRegistry()


def _default_name(func: Callable[..., Any]) -> str:
    module = sys.modules.get(func.__module__)
    stem = getattr(module, "__plait_stem__", None) if module else None
    if stem is None:
        mod = func.__module__
        # a `use`d file is imported as plait_use_<hash>_<stem>
        stem = mod.split("_", 3)[-1] if mod.startswith("plait_use_") else mod.rsplit(".", 1)[-1]
    return f"{stem}.{func.__name__}"


ISOLATIONS = ("inline", "thread", "process")


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    idempotent: bool = True,
    checks: Mapping[str, Callable[[Any], object]] | None = None,
    read: bool = False,
    self_admitting: str | None = None,
    isolation: str = "inline",
) -> Callable[[F], F]: ...


def tool(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    idempotent: bool = True,
    checks: Mapping[str, Callable[[Any], object]] | None = None,
    read: bool = False,
    self_admitting: str | None = None,
    isolation: str = "inline",
) -> F | Callable[[F], F]:
    """Register a function (sync or async) as a plait tool; its type hints are its schema.

    `@tool` names it `<file stem or last module component>.<function name>`;
    `@tool(name="x.y")` names it explicitly. Registered globally and found by `use`.
    `checks` maps an argument to a function that raises a `plait.errors` error (e.g.
    `InvalidInput`) when a value of the right type is still wrong; `plait check` runs it on
    literal arguments, so such mistakes are reported before the run.
    `read=True` says the tool only reads (calling it again shows whether the data
    changed), so steps calling it may be guarded (`guard`, SPEC section 10).
    `isolation="process"` runs each call in a worker process that is killed on timeout,
    deadline or Ctrl-C (a thread cannot be stopped); its arguments and result cross as
    JSON, and the function must be importable by the worker (README, "Isolation").
    """
    if isolation not in ISOLATIONS:
        raise ValueError(
            f"@plait.tool: isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}"
        )

    def decorate(f: F) -> F:
        spec = spec_from_function(
            f,
            name or _default_name(f),
            idempotent=idempotent,
            checks=checks,
            read=read,
            self_admitting=self_admitting,
            isolation="process" if isolation == "process" else "inline",
        )
        f.__plait_tool__ = spec  # type: ignore[attr-defined]
        if not f.__module__.startswith("plait_use_"):
            REGISTRY.register(spec)
        return f

    return decorate(func) if func is not None else decorate


_loaded = False


def builtin_registry() -> ToolRegistry:
    """The global registry with the standard library and entry-point tools loaded."""
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
        _load_entry_points()
    return REGISTRY


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break plait itself
            print(f"warning: tool plugin {ep.name!r} failed to load: {exc}", file=sys.stderr)


def plan_registry(uses: list[str], plan_dir: Path, policy: UsePolicy | None = None) -> ToolRegistry:
    """A child registry with the plan's `use` targets loaded (raises ToolLoadError); by
    default they are imported (what a run needs)."""
    registry = builtin_registry().child()
    for target in uses:
        registry.load_use(target, plan_dir, policy)
    return registry


def _first_paragraph(doc: str) -> str:
    """A tool's description: its docstring's first paragraph, on one line (a first line
    alone would cut a sentence that goes on)."""
    return " ".join(doc.split("\n\n", 1)[0].split())
