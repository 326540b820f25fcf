"""Masking: secrets never survive in strings, lists, dicts or dict keys (SPEC section 9)."""

from __future__ import annotations

import json
import string
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from plait.errors import ErrorKind
from plait.runtime.events import StepFinished, ToolEvent
from plait.runtime.masking import Masker
from plait.runtime.outcomes import StepOutcome, StepStatus


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


@given(
    st.lists(st.text(no_stars, min_size=4, max_size=8), min_size=1, max_size=3),
    st.text(no_stars, max_size=20),
    st.text(no_stars, max_size=20),
)
def test_no_secret_survives(secrets: list[str], before: str, after: str) -> None:
    masked = Masker(secrets).mask_text(before + "".join(secrets) + after)
    assert not any(secret in masked for secret in secrets)


# --- encoded forms (docs/security.md) -------------------------------------------------------

printable = st.text(st.sampled_from(string.printable), min_size=4, max_size=12)


def _encodings(secret: str) -> list[str]:
    return [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(json.dumps(secret))[1:-1],
        json.dumps(repr(secret))[1:-1],
        json.dumps({"k": secret}),
    ]


@settings(max_examples=300)
@given(printable, st.text(st.sampled_from(string.ascii_letters), max_size=5))
def test_every_encoding_of_a_secret_is_masked(secret: str, around: str) -> None:
    masker = Masker([secret])
    for form in _encodings(secret):
        masked = masker.mask_text(around + form + around)
        assert masked.count("***") >= 1, (form, masked)
        for other in _encodings(secret):
            assert other not in masked or other in around, (form, other, masked)


def test_encoded_forms_named_in_the_issue() -> None:
    secret = 'a/b+c=d&e"f\\g'
    masker = Masker([secret])
    assert (
        masker.mask_text(f"GET https://h/x?k={quote_plus(secret)}&n=1")
        == "GET https://h/x?k=***&n=1"
    )
    assert masker.mask_text(json.dumps({"k": secret})) == '{"k": "***"}'
    assert masker.mask_text(f"ValueError({secret!r})") == "ValueError('***')"


def test_every_field_of_every_event_is_masked_as_a_copy() -> None:
    masker = Masker(["hunter22"])
    outcome = StepOutcome(
        status=StepStatus.FAILED,
        kind=ErrorKind.TOOL_ERROR,
        message="bad 'hunter22'",
        output={"hunter22": ["x hunter22"]},
        elements={"errors": [{"index": 1, "message": "hunter22 1"}]},
    )
    finished = StepFinished(step="s", outcome=outcome)
    masker.mask_event(finished)
    assert finished.outcome is not outcome  # the scheduler's own outcome keeps real values
    assert outcome.message == "bad 'hunter22'"
    assert (finished.message, finished.output, finished.elements) == (
        "bad '***'",
        {"***": ["x ***"]},
        {"errors": [{"index": 1, "message": "*** 1"}]},
    )
    assert finished.status is StepStatus.FAILED and finished.kind is ErrorKind.TOOL_ERROR
    emitted = ToolEvent(
        step="s", attempt=1, tool_event="usage", token="hunter22", nested=[{"k": "a hunter22"}]
    )
    masker.mask_event(emitted)
    assert emitted.fields == {"token": "***", "nested": [{"k": "a ***"}]}
    untouched = StepFinished(
        step="s", outcome=StepOutcome(status=StepStatus.SUCCEEDED, output={"n": "plain"})
    )
    kept = untouched.outcome
    masker.mask_event(untouched)
    assert untouched.outcome is kept  # nothing to mask: no copy
