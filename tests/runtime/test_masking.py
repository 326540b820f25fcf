"""Masking: secrets never survive in strings, lists, dicts or dict keys (SPEC section 9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plait.runtime.masking import Masker


def test_masks_every_occurrence_recursively_keys_included() -> None:
    masker = Masker(["hunter22", "tok-abcdef"])
    value = {
        "auth": "Bearer tok-abcdef",
        "hunter22": ["x hunter22 y hunter22", 5, None, True, {"k": "tok-abcdef!"}],
        "n": 1.5,
    }
    assert masker.mask(value) == {
        "auth": "Bearer ***",
        "***": ["x *** y ***", 5, None, True, {"k": "***!"}],
        "n": 1.5,
    }
    assert value["auth"] == "Bearer tok-abcdef"  # a copy, the original is untouched


def test_short_secrets_are_not_masked_but_listed() -> None:
    masker = Masker(["abc", "abcd", "", "xy"])
    assert masker.too_short == ["abc", "xy"]
    assert masker.mask_text("abc abcd xy") == "abc *** xy"


def test_longest_secret_is_masked_whole() -> None:
    masker = Masker(["pass", "password123"])
    assert masker.mask_text("password123 and pass") == "*** and ***"


def test_overlapping_secrets_leave_no_fragment() -> None:
    masker = Masker(["abcd", "bcdefg"])
    assert masker.mask_text("xabcdefgx") == "x***x"


def test_adjacent_occurrences_are_masked_each() -> None:
    assert Masker(["abcd"]).mask_text("abcdabcd") == "******"


def test_no_secrets_is_a_fast_identity() -> None:
    masker = Masker([])
    value = {"a": ["b"]}
    assert not masker
    assert masker.mask(value) is value
    assert masker.mask_text("text") == "text"


def test_tuples_are_masked_too() -> None:
    assert Masker(["secret"]).mask(("a secret", 1)) == ("a ***", 1)


no_stars = st.characters(blacklist_characters="*")  # a mask could otherwise spell a secret


@given(st.lists(st.text(no_stars, min_size=4, max_size=8), min_size=1, max_size=3),
       st.text(no_stars, max_size=20), st.text(no_stars, max_size=20))
def test_no_secret_survives(secrets: list[str], before: str, after: str) -> None:
    masked = Masker(secrets).mask_text(before + "".join(secrets) + after)
    assert not any(secret in masked for secret in secrets)
