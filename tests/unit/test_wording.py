"""``portal.wording.counted``: a number with its noun, singular only for exactly one."""

import pytest

from portal.wording import counted


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
