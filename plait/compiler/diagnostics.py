"""Diagnostics as data: what went wrong, where, and how to fix it. Rendered in render.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from plait.compiler.codes import Code
from plait.compiler.source import Span


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Label:
    """A secondary position worth showing ("block opened here")."""

    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    code: Code
    message: str
    span: Span | None
    path: str = ""
    hints: tuple[str, ...] = ()
    labels: tuple[Label, ...] = ()
    severity: Severity = field(default=Severity.ERROR)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(
    code: Code,
    message: str,
    span: Span | None,
    *hints: str,
    path: str = "",
    labels: tuple[Label, ...] = (),
) -> Diagnostic:
    return Diagnostic(code, message, span, path, tuple(hints), labels, Severity.ERROR)


def warning(
    code: Code,
    message: str,
    span: Span | None,
    *hints: str,
    path: str = "",
    labels: tuple[Label, ...] = (),
) -> Diagnostic:
    return Diagnostic(code, message, span, path, tuple(hints), labels, Severity.WARNING)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def sort_key(d: Diagnostic) -> tuple[int, int, str]:
    """Diagnostics are shown in source order."""
    return (d.span.line, d.span.column, d.code.id) if d.span else (0, 0, d.code.id)
