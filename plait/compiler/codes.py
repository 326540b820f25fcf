"""The one registry of diagnostic codes: a stable id plus a slug, referred to by tests and docs.

Ranges: E1xx syntax (parser), E2xx structure (lowering), E3xx semantics (checks), W4xx warnings.
Add new codes at the end of their range; never renumber or reuse one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    id: str
    slug: str

    def __str__(self) -> str:
        return self.id


# --- E1xx: syntax (plait/compiler/parse.py, transformer.py) ---------------------------------
SYNTAX_ERROR = Code("E100", "syntax-error")
UNCLOSED_BLOCK = Code("E101", "unclosed-block")
BRACE_ON_NEXT_LINE = Code("E102", "brace-on-next-line")
UNKNOWN_DURATION_UNIT = Code("E103", "unknown-duration-unit")
BAD_ESCAPE = Code("E104", "bad-escape")
CHAINED_COMPARISON = Code("E105", "chained-comparison")
WHEN_TAKES_RULE = Code("E106", "when-takes-rule")
UNTERMINATED_STRING = Code("E107", "unterminated-string")
BAD_LITERAL = Code("E108", "bad-literal")
RESERVED_WORD = Code("E109", "reserved-word")
BAD_ENCODING = Code("E110", "bad-encoding")
NO_PLAN = Code("E111", "no-plan")
MULTIPLE_PLANS = Code("E112", "multiple-plans")
BAD_INTERPOLATION = Code("E113", "bad-interpolation")
UNKNOWN_POLICY = Code("E114", "unknown-policy")
UNKNOWN_ERROR_KIND = Code("E115", "unknown-error-kind")
UNREADABLE_FILE = Code("E116", "unreadable-file")  # missing or unreadable (check --format json)

# --- E2xx: structure (plait/compiler/lower.py) ----------------------------------------------
DUPLICATE_NAME = Code("E201", "duplicate-name")
DUPLICATE_POLICY = Code("E202", "duplicate-policy")
DUPLICATE_KEY = Code("E203", "duplicate-key")
DUPLICATE_ARGUMENT = Code("E204", "duplicate-argument")
POLICY_NOT_IN_DEFAULTS = Code("E205", "policy-not-in-defaults")
DUPLICATE_PLAN_SETTING = Code("E206", "duplicate-plan-setting")

# --- E3xx: semantics (plait/compiler/checks/) -----------------------------------------------
UNKNOWN_REFERENCE = Code("E301", "unknown-reference")
UNKNOWN_STEP_FIELD = Code("E302", "unknown-step-field")
BARE_STEP_REFERENCE = Code("E303", "bare-step-reference")
UNKNOWN_TOOL = Code("E304", "unknown-tool")
UNKNOWN_ARGUMENT = Code("E305", "unknown-argument")
MISSING_ARGUMENT = Code("E306", "missing-argument")
ARGUMENT_TYPE = Code("E307", "argument-type")
UNKNOWN_RESOURCE = Code("E308", "unknown-resource")
DEPENDENCY_CYCLE = Code("E309", "dependency-cycle")
STANDBY_REFERENCED = Code("E310", "standby-referenced")
FALLBACK_CYCLE = Code("E311", "fallback-cycle")
SELF_FALLBACK = Code("E312", "self-fallback")
STANDBY_SHARED = Code("E313", "standby-shared")
STANDBY_DEPENDENCIES = Code("E314", "standby-dependencies")
STANDBY_POLICY = Code("E315", "standby-policy")
MAP_ONLY_POLICY = Code("E316", "map-only-policy")
OUT_OF_RANGE = Code("E317", "out-of-range")
INPUT_DEFAULT_TYPE = Code("E318", "input-default-type")
MAP_OVER_NON_LIST = Code("E319", "map-over-non-list")
LOOP_VAR_SHADOWS = Code("E320", "loop-var-shadows")
USE_NOT_LOADABLE = Code("E321", "use-not-loadable")
UNKNOWN_FUNCTION = Code("E322", "unknown-function")
UNKNOWN_STEP = Code("E323", "unknown-step")
UNKNOWN_TYPE = Code("E324", "unknown-type")
AGENT_ARGUMENT = Code("E325", "agent-argument")
GUARD_TARGET = Code("E326", "guard-target")
COMPENSATION = Code("E327", "compensation")
FRESH_PLACEMENT = Code("E328", "fresh-placement")
LOOP_PLACEMENT = Code("E329", "loop-placement")  # what a loop may hold, name and be (SPEC 11)
TOOLS_CYCLE = Code("E330", "tools-cycle")  # presets whose `tools` lead back to themselves

# --- W4xx: warnings -------------------------------------------------------------------------
UNUSED_STANDBY = Code("W401", "unused-standby")
RULE_WITHOUT_DEPENDENCIES = Code("W402", "rule-without-dependencies")
NULLABLE_ACCESS = Code("W403", "nullable-access")
RISKY_AGENT_TOOL = Code("W404", "risky-agent-tool")
FRESH_BELOW_TIMEOUT = Code("W405", "fresh-below-timeout")
COMPENSATION_WITHOUT_TIMEOUT = Code("W406", "compensation-without-timeout")
WEAK_CONDITION = Code("W407", "weak-condition")
SHARED_CONDITION = Code("W408", "shared-condition")
USE_NOT_IMPORTED = Code("W409", "use-not-imported")
SHELL_TEXT_FROM_DATA = Code("W410", "shell-text-from-data")
# issue #11: the routing trap
SKIPPED_WITH_CONDITION = Code("W411", "skipped-with-condition")
