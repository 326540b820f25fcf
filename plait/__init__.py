"""plait: a declarative orchestration language for AI agents.

The public API: compile plans, run them, write tools. Names are imported on first use
(module `__getattr__`), so `import plait` is cheap: a user's `tools.py` that only needs
`@plait.tool` does not load the compiler or the runtime, and every `plait` command starts
without importing what it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the real imports, for type checkers and editors
    from plait.compiler.api import compile_file
    from plait.errors import (
        BreakerOpen,
        Cancelled,
        ErrorKind,
        InvalidInput,
        InvalidOutput,
        Permanent,
        PlaitError,
        RateLimited,
        Stale,
        Timeout,
        ToolError,
        Transient,
    )
    from plait.runtime.api import run_plan, run_plan_async
    from plait.runtime.report import RunReport
    from plait.runtime.session import RunSession
    from plait.stdlib.registry import ToolContext, tool
    from plait.versions import Versioned

# public name -> the module that defines it
_LAZY = {
    "compile_file": "plait.compiler.api",
    "run_plan": "plait.runtime.api",
    "run_plan_async": "plait.runtime.api",
    "RunReport": "plait.runtime.report",
    "RunSession": "plait.runtime.session",
    "ToolContext": "plait.stdlib.registry",
    "tool": "plait.stdlib.registry",
    "Versioned": "plait.versions",
    **{
        name: "plait.errors"
        for name in (
            "BreakerOpen",
            "Cancelled",
            "ErrorKind",
            "InvalidInput",
            "InvalidOutput",
            "Permanent",
            "PlaitError",
            "RateLimited",
            "Stale",
            "Timeout",
            "ToolError",
            "Transient",
        )
    },
}

__all__ = [
    "BreakerOpen",
    "Cancelled",
    "ErrorKind",
    "InvalidInput",
    "InvalidOutput",
    "Permanent",
    "PlaitError",
    "RateLimited",
    "RunReport",
    "RunSession",
    "Stale",
    "Timeout",
    "ToolContext",
    "ToolError",
    "Transient",
    "Versioned",
    "__version__",
    "compile_file",
    "run_plan",
    "run_plan_async",
    "tool",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plait' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
