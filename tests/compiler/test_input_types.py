"""The one input-type check (ir.fits_input_type), shared by compile-time defaults and
run-time inputs."""

from __future__ import annotations

import pytest

from plait.compiler.ir import fits_input_type, is_input_type


@pytest.mark.parametrize(
    ("type_name", "value", "fits"),
    [
        ("str", "x", True),
        ("secret", "x", True),
        ("str", 1, False),
        ("int", 3, True),
        ("int", 3.0, False),
        ("int", True, False),
        ("float", 3, True),
        ("float", 2.5, True),
        ("float", False, False),
        ("bool", False, True),
        ("bool", 0, False),
        ("list", [1, "a"], True),
        ("list", {}, False),
        ("dict", {"a": 1}, True),
        ("list[int]", [1, 2], True),
        ("list[int]", [1, "2"], False),
        ("list[ str ]", ["a"], True),
        ("any", None, True),
    ],
)
def test_fits_input_type(type_name: str, value: object, fits: bool) -> None:
    assert fits_input_type(type_name, value) is fits


def test_known_types() -> None:
    assert is_input_type("list[list[int]]") and is_input_type("secret")
    assert not is_input_type("string") and not is_input_type("list[strng]")
