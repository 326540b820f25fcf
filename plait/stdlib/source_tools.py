"""The tools of a `use "./tools.py"` file, read from its source with `ast`: never imported.

`plait check`, `compile`, `graph` and `tools --plan` must not run a plan's code (a plan may
come from a stranger; docs/security.md), yet they check every step's tool and literal
arguments. So they read the file: every module-level function decorated with `@plait.tool`
or `@tool` (bare or called, under any alias the file imports) becomes a ToolSpec whose name
is the one the runtime computes (`name=` when written as a literal, else
`<file stem>.<function name>`), whose description is its docstring's first line, and whose
argument schema is built from the annotations as written:

    str int float bool  list[T]  dict[str, T]  T | None  Optional[T]  Union[..]
    Literal[...]  Any  plait.ToolContext (the context parameter)

and aliases the file assigns at module level (`Headers = dict[str, str]`). Anything else (a
class, an import from elsewhere) checks as `any`. What reading cannot see: tools a file
imports from another module, a `name=` that is not a literal string (reported), and
`checks=` functions (they run only when `plait run` imports the file).
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional, Union

from plait.stdlib.registry import (
    HintedParam,
    ToolContext,
    ToolLoadError,
    ToolSpec,
    build_spec,
)

_PLAIN_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "Any": Any,
    "None": None,
    "list": list,
    "List": typing.List,  # noqa: UP006
    "dict": dict,
    "Dict": typing.Dict,  # noqa: UP006
    "ToolContext": ToolContext,
}
_UNREADABLE = object()  # an annotation this reader does not know: checked as `any`


class SourceDefault:
    """A parameter default that is not a literal: shown as written (`_show` uses repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def read_tools(path: Path) -> list[ToolSpec]:
    """The tools `path` defines, as importing it would find them: the functions bound to
    module-level names when it ends (a redefinition replaces the earlier function), in the
    order those names were first bound. Raises ToolLoadError for a missing or unparsable
    file."""
    if not path.is_file():
        raise ToolLoadError(f"no such file: {path}")
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as exc:
        raise ToolLoadError(f"{type(exc).__name__}: {exc}") from None
    reader = _Reader(tree, path.stem)
    bound: dict[str, ToolSpec | None] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            bound[node.name] = reader.tool(node)
    return [spec for spec in bound.values() if spec is not None]


class _Reader:
    """What one file's top level says: the names it binds to plait, `tool` and aliases."""

    def __init__(self, tree: ast.Module, stem: str) -> None:
        self.stem = stem
        self.modules = {"plait"}  # names bound to the plait package
        self.decorators = {"tool"}  # names bound to plait's `tool`
        self.aliases: dict[str, ast.expr] = {}  # `Headers = dict[str, str]`
        for node in tree.body:
            self._note(node)

    def _note(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "plait" and alias.asname:
                    self.modules.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plait"):
            for alias in node.names:
                if alias.name == "tool":
                    self.decorators.add(alias.asname or "tool")
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            self.aliases[node.targets[0].id] = node.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.value is not None
        ):
            self.aliases[node.target.id] = node.value  # `Headers: TypeAlias = ...`

    def tool(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ToolSpec | None:
        for decorator in node.decorator_list:
            options = self._tool_options(decorator, node)
            if options is not None:
                return self._spec(node, options)
        return None

    def _tool_options(self, decorator: ast.expr, node: ast.AST) -> dict[str, Any] | None:
        """The literal keywords of a `@tool(...)` decorator ({} when bare); None when the
        decorator is not plait's `tool`."""
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call is not None else decorator
        if not self._is_tool(target):
            return None
        options: dict[str, Any] = {}
        for keyword in call.keywords if call is not None else []:
            if keyword.arg in ("name", "idempotent", "read"):
                try:
                    options[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    if keyword.arg == "name":
                        raise ToolLoadError(
                            f"line {keyword.value.lineno}: the name of a tool must be a "
                            "literal string for `plait check`, which reads the file "
                            "without running it"
                        ) from None
        return options

    def _is_tool(self, target: ast.expr) -> bool:
        if isinstance(target, ast.Name):
            return target.id in self.decorators
        return (
            isinstance(target, ast.Attribute)
            and target.attr == "tool"
            and isinstance(target.value, ast.Name)
            and target.value.id in self.modules
        )

    def _spec(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, options: dict[str, Any]
    ) -> ToolSpec:
        name = options.get("name")
        if not isinstance(name, str):
            name = f"{self.stem}.{node.name}"
        params, context_param = self._params(node.args)
        doc = ast.get_docstring(node) or ""
        return build_spec(
            name,
            _not_imported(name),
            isinstance(node, ast.AsyncFunctionDef),
            params,
            context_param=context_param,
            accepts_extra=node.args.kwarg is not None,
            description=doc.splitlines()[0] if doc else "",
            idempotent=options.get("idempotent") is not False,
            read=options.get("read") is True,
        )

    def _params(self, args: ast.arguments) -> tuple[list[HintedParam], str | None]:
        positional = [*args.posonlyargs, *args.args]
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
        defaults += args.defaults
        pairs = [
            *zip(positional, defaults, strict=True),
            *zip(args.kwonlyargs, args.kw_defaults, strict=True),
        ]
        params: list[HintedParam] = []
        context_param = None
        for arg, default in pairs:
            hint = self.hint(arg.annotation)
            if hint is ToolContext:
                context_param = arg.arg
                continue
            params.append(
                HintedParam(
                    arg.arg, hint, default is None, None if default is None else _default(default)
                )
            )
        return params, context_param

    def hint(self, node: ast.expr | None, depth: int = 0) -> Any:
        """The type an annotation names, built as Python would evaluate it; `Any` for what
        this reader does not know."""
        found = self._hint(node, depth)
        return Any if found is _UNREADABLE else found

    def _hint(self, node: ast.expr | None, depth: int) -> Any:
        if node is None or depth > 20:
            return Any if node is None else _UNREADABLE
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:  # a quoted annotation
                return self._hint(ast.parse(node.value, mode="eval").body, depth + 1)
            except SyntaxError:
                return _UNREADABLE
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, ast.Name | ast.Attribute):
            return self._named(node, depth)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self._hint(node.left, depth + 1), self._hint(node.right, depth + 1)
            if _UNREADABLE in (left, right):
                return _UNREADABLE
            return _union(left, right)
        if isinstance(node, ast.Subscript):
            return self._subscript(node, depth)
        return _UNREADABLE

    def _named(self, node: ast.Name | ast.Attribute, depth: int) -> Any:
        name = node.id if isinstance(node, ast.Name) else node.attr
        if isinstance(node, ast.Name) and name in self.aliases and name not in _PLAIN_TYPES:
            return self._hint(self.aliases[name], depth + 1)
        return _PLAIN_TYPES.get(name, _UNREADABLE)

    def _subscript(self, node: ast.Subscript, depth: int) -> Any:
        base = node.value
        name = (
            base.id
            if isinstance(base, ast.Name)
            else (base.attr if isinstance(base, ast.Attribute) else "")
        )
        items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if name == "Literal":
            try:
                values = tuple(ast.literal_eval(item) for item in items)
            except ValueError:
                return _UNREADABLE
            return Literal[values]
        args = [self._hint(item, depth + 1) for item in items]
        if _UNREADABLE in args:  # e.g. list[MyClass]: the container is still known
            args = [Any if a is _UNREADABLE else a for a in args]
        build = _GENERICS.get(name)
        return _UNREADABLE if build is None else build(args)


def _union(left: Any, right: Any) -> Any:
    try:
        return left | right  # what `int | None` evaluates to
    except TypeError:
        return Union[left, right]  # noqa: UP007 - e.g. `"int" | None` written quoted


def _one(args: list[Any], build: Callable[[Any], Any]) -> Any:
    return build(args[0]) if len(args) == 1 else _UNREADABLE


def _two(args: list[Any], build: Callable[[Any, Any], Any]) -> Any:
    return build(args[0], args[1]) if len(args) == 2 else _UNREADABLE


_GENERICS: dict[str, Callable[[list[Any]], Any]] = {
    "list": lambda a: _one(a, lambda t: list[t]),  # type: ignore[valid-type]
    "List": lambda a: _one(a, lambda t: typing.List[t]),  # type: ignore[valid-type]  # noqa: UP006
    "dict": lambda a: _two(a, lambda k, v: dict[k, v]),  # type: ignore[valid-type]
    "Dict": lambda a: _two(a, lambda k, v: typing.Dict[k, v]),  # type: ignore[valid-type]  # noqa: UP006
    "Optional": lambda a: _one(a, lambda t: Optional[t]),  # noqa: UP045
    "Union": lambda a: Union[tuple(a)] if a else _UNREADABLE,  # noqa: UP007
}


def _default(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return SourceDefault(ast.unparse(node))


def _not_imported(name: str) -> Callable[..., Any]:
    def not_imported(*_args: Any, **_kwargs: Any) -> Any:
        raise ToolLoadError(
            f"tool `{name}` was read for checking, not imported: `plait run` "
            "imports the plan's tools"
        )

    return not_imported
