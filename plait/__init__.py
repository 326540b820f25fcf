"""plait: a declarative orchestration language for AI agents.

The public API, re-exported explicitly: compile plans, run them, write tools.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
from plait.stdlib.registry import ToolContext, tool  # noqa: E402

__all__ = [
    "BreakerOpen", "Cancelled", "ErrorKind", "InvalidInput", "InvalidOutput", "Permanent",
    "PlaitError", "RateLimited", "Timeout", "ToolContext", "ToolError", "Transient",
    "__version__", "tool",
]
