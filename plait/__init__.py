"""plait: a declarative orchestration language for AI agents.

The public API, re-exported explicitly: compile plans, run them, write tools.
"""

from __future__ import annotations

__version__ = "0.1.0"

from plait.compiler.api import compile_file  # noqa: E402
from plait.errors import (  # noqa: E402
    BreakerOpen,
    Cancelled,
    ErrorKind,
    InvalidInput,
    InvalidOutput,
    Permanent,
    PlaitError,
    RateLimited,
    Timeout,
    ToolError,
    Transient,
)
from plait.runtime.api import run_plan, run_plan_async  # noqa: E402
from plait.runtime.report import RunReport  # noqa: E402
from plait.stdlib.registry import ToolContext, tool  # noqa: E402

__all__ = [
    "BreakerOpen", "Cancelled", "ErrorKind", "InvalidInput", "InvalidOutput", "Permanent",
    "PlaitError", "RateLimited", "RunReport", "Timeout", "ToolContext", "ToolError",
    "Transient", "__version__", "compile_file", "run_plan", "run_plan_async", "tool",
]
