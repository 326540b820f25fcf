"""Versions of data (SPEC section 10): `Versioned` for tools, and the canonical hash.

A tool that knows the version of what it read or wrote returns `Versioned(value, version)`;
the step's output is `value` and `STEP.version` is `version`. Any other output is versioned
by its *hash*: the first 16 hex digits of the SHA-256 of its canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# The standard tools whose write is conditional on an argument, and that argument.
CONDITION_ARGS: dict[str, str] = {
    "http.post": "if_match",
    "http.put": "if_match",
    "http.patch": "if_match",
    "http.delete": "if_match",
    "file.write": "if_version",
}


@dataclass(frozen=True, slots=True)
class Versioned:
    """A tool's result with the version of the data it stands for."""

    value: Any
    version: str | None = None


def canonical_json(value: Any) -> str:
    """UTF-8 JSON with keys sorted, separators `,` and `:`, non-ASCII not escaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def value_hash(value: Any) -> str:
    """The first 16 hex digits of the SHA-256 of `value`'s canonical JSON."""
    if value is None:  # (a step without an output: no hash to make)
        return _NULL_HASH
    kind = type(value)
    if kind is str:  # (every step's output is hashed: the common scalars skip json.dumps,
        text = _encode_string(value)  # whose canonical JSON is this exactly)
    elif kind is int:
        text = int.__repr__(value)
    elif value is None:
        text = "null"
    else:
        text = canonical_json(value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# What json.dumps(ensure_ascii=False) writes for a str (json.encoder's public name for it)
_encode_string = json.encoder.encode_basestring
_NULL_HASH = hashlib.sha256(b"null").hexdigest()[:16]


def bytes_sha256(data: bytes) -> str:
    """The lowercase hex SHA-256 (64 digits) of `data` (the version of a file's bytes)."""
    return hashlib.sha256(data).hexdigest()


def unwrap(result: Any) -> tuple[Any, str]:
    """A tool's result as (output, version): a `Versioned`'s own version, else the hash."""
    if isinstance(result, Versioned):
        version = result.version if result.version is not None else value_hash(result.value)
        return result.value, version
    return result, value_hash(result)
