"""The grid's column settings come from the one spec: types and options as settings; required,
bounds, maximum lengths and patterns only in the help, since the browser would clamp, cut, drop
or hold back a value breaking them without a word, where the server says what is wrong."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from portal.spec import ColumnSpec, DatasetSpec, editor_columns
from portal.ui.column_config import column_config


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a column config gives the browser (those left unset are None)."""
    return {k: v for k, v in config["type_config"].items() if v is not None}


def test_every_rule_reaches_the_grid_and_none_is_enforced_there_silently() -> None:
    spec = DatasetSpec(
        columns=(
            ColumnSpec(
                label="Name", name="name", type="text", required=True, max_length=20, regex="^[A-Z]"
            ),
            ColumnSpec(label="Qty", name="qty", type="integer", min=0, max=99),
            ColumnSpec(label="Price", name="price", type="decimal", min=Decimal("0.5"), scale=2),
            ColumnSpec(label="Paid", name="paid", type="boolean"),
            ColumnSpec(label="Day", name="day", type="date"),
            ColumnSpec(label="Kind", name="kind", type="category", options=("a", "b")),
        )
    )
    config = column_config(editor_columns(spec))
    assert list(config) == ["name", "qty", "price", "paid", "day", "kind"]
    name, qty, price = config["name"], config["qty"], config["price"]
    # A new row with a required cell empty would be kept in the browser, out of the review.
    assert (name["label"], name.get("required")) == ("Name", None)
    assert name["help"].startswith("Text; required;")
    # In the browser a text past max_chars is cut, and one off the pattern dropped.
    assert settings(name) == {"type": "text"}
    assert "at most 20 characters; matching ^[A-Z]" in name["help"]
    # A number above max_value is set to the maximum, one below min_value dropped.
    assert settings(qty) == {"type": "number", "step": 1, "format": "%d"}
    assert "at least 0; at most 99" in qty["help"]
    assert settings(price) == {"type": "number", "step": 0.01, "format": "%.2f"}
    assert "at least 0.5." in price["help"]
    assert config["paid"]["type_config"]["type"] == "checkbox"
    assert config["day"]["type_config"]["type"] == "date"
    assert config["kind"]["type_config"] == {"type": "selectbox", "options": ["a", "b"]}
    assert all(c["help"] for c in config.values())


def test_number_and_date_time_columns_named_as_text_are_text_columns_that_say_why() -> None:
    spec = DatasetSpec(
        columns=(
            ColumnSpec(label="Big", name="big", type="integer", required=True),
            ColumnSpec(label="At", name="at", type="datetime"),
            ColumnSpec(label="Note", name="note", type="text", max_length=5),
            ColumnSpec(label="Qty", name="qty", type="integer"),
        )
    )
    config = column_config(editor_columns(spec), as_text={"big", "at", "note"})
    big, at = config["big"], config["at"]
    assert (big["type_config"]["type"], big.get("required")) == ("text", None)
    assert "required" in big["help"]
    assert "Typed as text and read as a file's cell is" in big["help"]
    assert big["alignment"] == "right"  # numbers line up
    assert at["type_config"]["type"] == "text"
    assert at.get("alignment") is None
    assert "to the microsecond" in at["help"]
    assert settings(config["note"]) == {"type": "text"}  # as it was
    assert "at most 5 characters" in config["note"]["help"]
    assert config["qty"]["type_config"]["type"] == "number"
