"""``RowFilter.asked``: the one reading of the filter fields the Datasets and Edit pages share."""

from __future__ import annotations

import pytest

from portal.browse import RowFilter


@pytest.mark.parametrize(
    ("fields", "asked"),
    [
        ((None, "contains", "ann", ""), None),  # no column chosen
        (("name", "contains", "", ""), None),  # nothing to contain
        (("name", "equals", "", ""), None),  # nothing to equal: "empty" finds empty cells
        (("qty", "equals", "", "5"), None),  # "To" is for a range only: it read as "is empty"
        (("qty", "equals", "3", "5"), RowFilter("qty", "equals", "3", "")),
        (("qty", "range", "", "5"), RowFilter("qty", "range", "", "5")),  # an open lower end
        (("qty", "range", "2", ""), RowFilter("qty", "range", "2", "")),
        (("qty", "empty", "typed", "5"), RowFilter("qty", "empty", "", "")),
        (("name", "contains", "ann", ""), RowFilter("name", "contains", "ann", "")),
    ],
)
def test_the_fields_ask_for_a_filter_or_for_none(
    fields: tuple[str | None, str, str, str], asked: RowFilter | None
) -> None:
    column, op, value, upper = fields
    assert RowFilter.asked(column, op, value, upper) == asked  # type: ignore[arg-type]
