"""Errors: the failure kinds of SPEC section 4 and the exceptions tools raise to report them."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Every failure carries exactly one kind (SPEC section 4, "Error kinds")."""

    TIMEOUT = "timeout"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    INVALID_OUTPUT = "invalid_output"
    INVALID_INPUT = "invalid_input"
    PERMANENT = "permanent"
    TOOL_ERROR = "tool_error"
    BREAKER_OPEN = "breaker_open"
    CANCELLED = "cancelled"
    STALE = "stale"  # the world changed under a step (SPEC section 10)
    LOOP_EXHAUSTED = "loop_exhausted"


class PlaitError(Exception):
    """Base of every error plait raises on purpose."""


class UserError(PlaitError):
    """Bad input from the user (missing file, bad --input, unknown run): exit 2, one line."""


class ToolError(PlaitError):
    """A tool failure with a kind; any other exception a tool raises counts as `tool_error`.

    `retry_after` (seconds) is a hint: the next retry waits at least that long (SPEC section 9).
    """

    kind: ErrorKind = ErrorKind.TOOL_ERROR

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Timeout(ToolError):
    kind = ErrorKind.TIMEOUT


class Transient(ToolError):
    kind = ErrorKind.TRANSIENT


class RateLimited(ToolError):
    kind = ErrorKind.RATE_LIMITED


class InvalidOutput(ToolError):
    kind = ErrorKind.INVALID_OUTPUT


class InvalidInput(ToolError):
    kind = ErrorKind.INVALID_INPUT


class Permanent(ToolError):
    kind = ErrorKind.PERMANENT


class BreakerOpen(ToolError):
    kind = ErrorKind.BREAKER_OPEN


class Cancelled(ToolError):
    kind = ErrorKind.CANCELLED


class Stale(ToolError):
    """The data a write was conditioned on changed (SPEC section 10). `source` names the
    step whose data went stale, when the tool knows it; re-deciding re-runs that step."""

    kind = ErrorKind.STALE

    def __init__(
        self, message: str = "", *, source: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.source = source


class LoopExhausted(ToolError):
    """A loop or a model conversation ran out of iterations or turns (SPEC section 11)."""

    kind = ErrorKind.LOOP_EXHAUSTED


_BY_KIND: dict[ErrorKind, type[ToolError]] = {
    cls.kind: cls
    for cls in (
        ToolError,
        Timeout,
        Transient,
        RateLimited,
        InvalidOutput,
        InvalidInput,
        Permanent,
        BreakerOpen,
        Cancelled,
        Stale,
        InvalidInput,
        Permanent,
        BreakerOpen,
        Cancelled,
        LoopExhausted,
    )
}


def error_for_kind(
    kind: ErrorKind | str, message: str = "", *, retry_after: float | None = None
) -> ToolError:
    """The exception to raise for a failure of `kind` (used by std.fail, --inject, ...)."""
    return _BY_KIND[ErrorKind(kind)](message, retry_after=retry_after)


def kind_of(exc: BaseException) -> ErrorKind:
    """The error kind an exception stands for: its own for ToolError, else `tool_error`."""
    return exc.kind if isinstance(exc, ToolError) else ErrorKind.TOOL_ERROR
