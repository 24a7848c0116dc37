"""The grid's column settings come from the one spec: types, bounds, options, regex, required."""

from __future__ import annotations

from decimal import Decimal

from portal.spec import ColumnSpec, DatasetSpec, editor_columns
from portal.ui.column_config import column_config


def test_every_rule_of_the_spec_reaches_the_grid() -> None:
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
    assert (name["label"], name["required"]) == ("Name", True)
    assert name["type_config"] == {"type": "text", "max_chars": 20, "validate": "^[A-Z]"}
    assert qty["type_config"]["type"] == "number"
    assert (qty["type_config"]["min_value"], qty["type_config"]["max_value"]) == (0, 99)
    assert qty["type_config"]["step"] == 1
    assert price["type_config"]["min_value"] == 0.5
    assert price["type_config"]["step"] == 0.01
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
    assert (big["type_config"]["type"], big["required"]) == ("text", True)
    assert "to the last digit" in big["help"]
    assert at["type_config"]["type"] == "text"
    assert "to the microsecond" in at["help"]
    assert config["note"]["type_config"]["max_chars"] == 5  # as it was
    assert config["qty"]["type_config"]["type"] == "number"
