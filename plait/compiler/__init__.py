"""The compiler: .agent source -> syntax tree -> checked IR -> DAG, with diagnostics as data."""

from __future__ import annotations

from plait.compiler.api import (
    CompileResult,
    PlanInvalid,
    compile_file,
    compile_source,
    compiled_json,
    load_plan,
    plan_tools,
)
from plait.compiler.diagnostics import Diagnostic, Severity
from plait.compiler.ir import CompiledPlan, Plan

__all__ = [
    "CompileResult",
    "CompiledPlan",
    "Diagnostic",
    "Plan",
    "PlanInvalid",
    "Severity",
    "compile_file",
    "compile_source",
    "compiled_json",
    "load_plan",
    "plan_tools",
]
