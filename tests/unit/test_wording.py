"""``portal.wording``: a number with its noun, and words that agree with a number, singular
only for exactly one."""

import pytest

from portal.wording import agreeing, counted


@pytest.mark.parametrize(
    ("count", "noun", "plural", "expected"),
    [
        (0, "row", None, "0 rows"),
        (1, "row", None, "1 row"),
        (2, "row", None, "2 rows"),
        (1_234_567, "row", None, "1,234,567 rows"),
        (1, "cell or row", "cells or rows", "1 cell or row"),
        (3, "cell or row", "cells or rows", "3 cells or rows"),
        (1, "changeset", None, "1 changeset"),
        (-1, "row", None, "-1 rows"),
    ],
)
def test_counted(count: int, noun: str, plural: str | None, expected: str) -> None:
    assert counted(count, noun, plural) == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, "was"), (0, "were"), (2, "were"), (1_234_567, "were"), (-1, "were")],
)
def test_agreeing(count: int, expected: str) -> None:
    assert agreeing(count, "was", "were") == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, "1 row already holds the value"),
        (0, "0 rows already hold the values"),
        (2, "2 rows already hold the values"),
        (10_000, "10,000 rows already hold the values"),
    ],
)
def test_agreeing_words_beside_counted(count: int, expected: str) -> None:
    """Several words agree at once, and read with ``counted`` as one sentence."""
    phrase = agreeing(count, "holds the value", "hold the values")
    assert f"{counted(count, 'row')} already {phrase}" == expected
