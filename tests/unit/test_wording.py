"""``portal.wording``: a number with its noun, words that agree with a number (singular only
for exactly one), and every one of a number of things as a subject ("both datasets")."""

import pytest

from portal.wording import agreeing, all_of, counted


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


@pytest.mark.parametrize(
    ("count", "capital", "expected"),
    [
        (1, False, "the dataset"),
        (2, False, "both datasets"),
        (3, False, "all 3 datasets"),
        (1_200, False, "all 1,200 datasets"),
        (0, False, "no datasets"),
        (1, True, "The dataset"),
        (2, True, "Both datasets"),
        (3, True, "All 3 datasets"),
        (0, True, "No datasets"),
    ],
)
def test_all_of(count: int, capital: bool, expected: str) -> None:
    assert all_of(count, "dataset", capital=capital) == expected


def test_all_of_takes_a_plural_and_reads_with_its_verb() -> None:
    assert all_of(2, "cell or row", "cells or rows") == "both cells or rows"
    assert all_of(1, "E-mail", capital=True) == "The E-mail"  # only the first letter changes
    sentences = [
        f"{all_of(n, 'dataset', capital=True)} {agreeing(n, 'matches its', 'match their')} log."
        for n in (1, 2, 5)
    ]
    assert sentences == [
        "The dataset matches its log.",
        "Both datasets match their log.",
        "All 5 datasets match their log.",
    ]
