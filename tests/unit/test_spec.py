"""The schema spec: checking, JSON, physical names, inference, the two validators (and their
agreement), the DDL and the editor description."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from portal.errors import ValidationError
from portal.spec import (
    UNIQUE_HINT_FROM,
    CellError,
    ColumnSpec,
    DatasetSpec,
    browser_rounds,
    ddl_table,
    editor_columns,
    infer_spec,
    physical_names,
    validate,
    validate_value,
)


def col(label: str = "Value", type_: str = "text", **rules: Any) -> ColumnSpec:
    return ColumnSpec(label, re.sub(r"\W", "_", label.lower()), type_, **rules)  # type: ignore[arg-type]


def check(column: ColumnSpec, *values: str | None, **kwargs: Any) -> Any:
    """validate() over one column of values."""
    frame = pd.DataFrame({column.label: pd.Series(list(values), dtype=object)})
    return validate(DatasetSpec((column,)), frame, **kwargs)


def only_error(column: ColumnSpec, value: str, **kwargs: Any) -> CellError:
    result = check(column, value, **kwargs)
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


# --- the spec itself ------------------------------------------------------------------------


def test_bounds_and_defaults_are_normalised_to_typed_values() -> None:
    assert col(type_="integer", min="5", max=10, default="7").min == 5
    decimal = col(type_="decimal", min="0.5", max=2, default="1,5".replace(",", "."))
    assert (decimal.min, decimal.max, decimal.default) == (
        Decimal("0.5"),
        Decimal(2),
        Decimal("1.5"),
    )
    day = col(type_="date", min="2024-01-01")
    assert day.min == date(2024, 1, 1)
    moment = col(type_="datetime", max="2024-01-01T12:00:00+02:00")
    assert moment.max == datetime(2024, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ({"type_": "integer", "min": 5, "max": 1}, "above the maximum"),
        ({"type_": "text", "min": 1}, "cannot have a minimum"),
        ({"type_": "integer", "max_length": 3}, "cannot have a maximum length"),
        ({"type_": "integer", "regex": "x"}, "only a text column"),
        ({"type_": "text", "regex": "("}, "not a valid regular expression"),
        ({"type_": "text", "regex": "(?P<x>a)"}, "named groups"),
        ({"type_": "text", "regex": r"\bfoo"}, "a backspace to the other"),
        ({"type_": "text", "regex": r"^\p{Lu}"}, "not understood by PostgreSQL"),
        ({"type_": "text", "regex": r"\Qa.b\E"}, "not understood by PostgreSQL"),
        ({"type_": "text", "regex": r"\x{41}"}, "not understood by PostgreSQL"),
        ({"type_": "text", "regex": "a{256}"}, "repeat count over 255"),
        ({"type_": "text", "regex": "a(?i)b"}, "differ between engines"),
        ({"type_": "text", "regex": "(?s)a.b"}, "differ between engines"),
        ({"type_": "category"}, "needs its list of options"),
        ({"type_": "category", "options": ("a", "a")}, "differ"),
        ({"type_": "text", "options": ("a",)}, "only a category"),
        ({"type_": "decimal", "scale": 39}, "between 0 and 38"),
        ({"type_": "date", "format": "YYYY/DD/MM"}, "unknown date format"),
        ({"type_": "integer", "default": "x"}, "default"),
        ({"type_": "integer", "min": "9223372036854775808"}, "too large"),
        ({"type_": "boolean", "required": "yes"}, "true or false"),
    ],
)
def test_a_rule_that_does_not_fit_is_refused(rules: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        col(**rules)


@pytest.mark.parametrize("pattern", [r"\\bfoo", "(?i)abc", "a{255}", r"^\d{2}-[a-z]+$", r"\(?:x\)"])
def test_patterns_both_regex_engines_read_alike_are_kept(pattern: str) -> None:
    assert col(type_="text", regex=pattern).regex == pattern


@pytest.mark.parametrize("name", ["_row_id", "_version", "xmin", "ctid", "pg_x", "Name", "1a", ""])
def test_unsafe_or_reserved_physical_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="physical name"):
        ColumnSpec("Label", name, "text")


def test_a_dataset_refuses_duplicate_names_and_labels() -> None:
    with pytest.raises(ValidationError, match="same physical name"):
        DatasetSpec((ColumnSpec("A", "a", "text"), ColumnSpec("B", "a", "text")))
    with pytest.raises(ValidationError, match="same label"):
        DatasetSpec((ColumnSpec("Name", "a", "text"), ColumnSpec(" name", "b", "text")))
    with pytest.raises(ValidationError, match="at least one column"):
        DatasetSpec(())


FULL_SPEC = DatasetSpec(
    (
        ColumnSpec(
            "Code", "code", "text", required=True, unique=True, max_length=8, regex="^[A-Z]+$"
        ),
        ColumnSpec("Qty", "qty", "integer", min=0, max=1000, default=1),
        ColumnSpec("Price", "price", "decimal", scale=2, min=Decimal("0.01"), default="9.99"),
        ColumnSpec("Active", "active", "boolean", default=True),
        ColumnSpec("Day", "day", "date", format="DD.MM.YYYY", min=date(2020, 1, 1)),
        ColumnSpec("Seen", "seen", "datetime", max=datetime(2030, 1, 1, tzinfo=UTC)),
        ColumnSpec("Colour", "colour", "category", options=("red", "green"), default="red"),
    ),
    version=3,
)


def test_json_round_trip_keeps_every_rule() -> None:
    data = FULL_SPEC.to_json()
    assert data["version"] == 3
    assert data["columns"][2]["min"] == "0.01"  # decimals stay exact as text
    import json

    assert DatasetSpec.from_json(json.loads(json.dumps(data))) == FULL_SPEC


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: [], "expected an object"),
        (lambda d: {**d, "extra": 1}, "unknown keys"),
        (lambda d: {**d, "columns": "x"}, "must be a list"),
        (lambda d: {**d, "columns": [1]}, "column 1 is not an object"),
        (lambda d: {**d, "columns": [{"label": "a", "name": "a"}]}, "lacks ['type']"),
        (lambda d: {**d, "columns": [{**d["columns"][0], "colour": 1}]}, "unknown keys"),
        (lambda d: {**d, "columns": [{**d["columns"][1], "min": 0.5}]}, "stored as text"),
        (lambda d: {**d, "columns": [{**d["columns"][0], "max_length": True}]}, "whole number"),
        (lambda d: {**d, "columns": [{**d["columns"][0], "type": "money"}]}, "unknown type"),
        (lambda d: {**d, "columns": [d["columns"][0], d["columns"][0]]}, "same physical name"),
        (lambda d: {**d, "version": 0}, "version"),
    ],
)
def test_a_malformed_stored_spec_is_refused_clearly(mutate: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=r"malformed.*" + re.escape(fragment)):
        DatasetSpec.from_json(mutate(FULL_SPEC.to_json()))


# --- physical names -------------------------------------------------------------------------


def test_physical_names_are_safe_unique_and_transliterated() -> None:
    labels = ["Name", "name ", "Größe", "", "2024", "_row_id", "_version", "xmin", "pg_x", "日本語"]
    assert physical_names(labels) == [
        "name",
        "name_2",
        "grosse",
        "col_4",
        "col_2024",
        "row_id",
        "version",
        "col_xmin",
        "col_pg_x",
        "col_10",
    ]
    assert physical_names(["Æsir Øre", "Ça va?", "a-b.c", "col_2", "x"]) == [
        "aesir_ore",
        "ca_va",
        "a_b_c",
        "col_2",
        "x",
    ]


def test_long_multibyte_labels_fit_63_bytes_and_stay_unique() -> None:
    labels = ["ü" * 80, "ü" * 80 + "x", "Ü" * 90, "日本" * 50, "€" * 70]
    names = physical_names(labels)
    assert len(set(names)) == len(names)
    assert all(len(n.encode()) <= 63 for n in names)
    assert names[1].endswith("_2")
    assert names[2].endswith("_3")


def test_a_label_pg_twice_never_makes_a_pg_prefixed_name() -> None:
    """Found by the property below: ["PG", "PG"] gave "pg", "pg_2"."""
    assert physical_names(["PG", "PG", "pg 3"]) == ["col_pg", "col_pg_2", "col_pg_3"]


@given(st.lists(st.text(max_size=80), max_size=30))
def test_physical_names_property(labels: list[str]) -> None:
    names = physical_names(labels)
    assert len(names) == len(labels)
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert len(name.encode()) <= 63
        assert name not in ("_row_id", "_version", "xmin", "ctid")
        assert not name.startswith("pg_")
        ColumnSpec("x", name, "text")  # the spec accepts every generated name


# --- inference ------------------------------------------------------------------------------


def infer(**columns: list[str]) -> tuple[DatasetSpec, list[str]]:
    return infer_spec(list(columns), columns)


def test_leading_zero_codes_stay_text() -> None:
    spec, notes = infer(zip=["01234", "12345", "00501", "90210"])
    assert spec.columns[0].type == "text"
    assert any("leading zeros" in n and "“01234”" in n for n in notes)


def test_a_number_beyond_int64_makes_a_decimal_and_is_not_rounded() -> None:
    big = str(2**63)
    spec, notes = infer(n=["1", big, "-5"])
    column = spec.columns[0]
    assert (column.type, column.scale) == ("decimal", 0)
    assert any("64-bit" in n for n in notes)
    typed = validate(spec, pd.DataFrame({"n": ["1", big, "-5"]})).typed["n"]
    assert typed.iloc[1] == Decimal(2**63)
    assert str(typed.iloc[1]) == big
    assert infer(n=["1", str(2**63 - 1)])[0].columns[0].type == "integer"


def test_ambiguous_dates_stay_text_with_a_note() -> None:
    spec, notes = infer(day=["03/04/2024", "05/06/2024", "03/04/2024"])
    assert spec.columns[0].type == "text"
    assert any("day/month or month/day" in n for n in notes)


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["2024-01-31", "2023-12-01"], None),
        (["13/01/2024", "01/02/2024"], "DD/MM/YYYY"),
        (["01/13/2024", "02/01/2024"], "MM/DD/YYYY"),
        (["24.12.2024", "1.2.2024"], "DD.MM.YYYY"),
    ],
)
def test_unambiguous_dates_become_dates_in_one_format(values: list[str], fmt: str | None) -> None:
    spec, _ = infer(day=values)
    assert (spec.columns[0].type, spec.columns[0].format) == ("date", fmt)
    assert validate(spec, pd.DataFrame({"day": values})).ok


def test_mixed_or_impossible_dates_are_not_dates() -> None:
    assert infer(d=["13/01/2024", "2024-01-02"])[0].columns[0].type == "text"
    assert infer(d=["13/01/2024", "31/02/2024"])[0].columns[0].type == "text"
    assert infer(d=["13/01/2024", "01/13/2024"])[0].columns[0].type == "text"


def _noted_cells(spec: DatasetSpec, values: list[str], **rules: Any) -> list[str]:
    """The values the check lists once the column's type is chosen as a note says."""
    chosen = DatasetSpec(columns=(replace(spec.columns[0], **rules),))
    return [e.value for e in validate(chosen, pd.DataFrame({spec.columns[0].label: values})).errors]


def test_a_column_mostly_of_one_type_is_said_to_be_so_with_the_cells_that_are_not() -> None:
    """A few "n/a" among numbers made the column text without a word why, and one impossible
    date among dates was said to be "not written the same way"."""
    amounts = [str(i) for i in range(100)] + ["n/a", "-", "n/a"]
    spec, notes = infer(amount=amounts)
    assert spec.columns[0].type == "text"
    assert notes == [
        "“amount”: all but 3 of the 103 filled cells are whole numbers (not: “n/a”, “-”), so"
        " the column is kept as text. To store numbers, choose the type integer: the check then"
        " lists each cell that is not one, to correct in the file or leave empty."
    ]
    assert _noted_cells(spec, amounts, type="integer") == ["n/a", "-", "n/a"]

    days = ["2024-01-31", "2024-02-29", "2023-12-01", "2024-03-01", "2024-02-30"]
    spec, notes = infer(day=days)
    assert spec.columns[0].type == "text"
    assert (
        "all but 1 of the 5 filled cells are dates written YYYY-MM-DD (not: “2024-02-30”)"
        in (notes[0])
    )
    assert _noted_cells(spec, days, type="date") == ["2024-02-30"]

    slashed = ["13/01/2024", "31/12/2023", "01/02/2024", "05/05/2024", "unknown"]
    spec, notes = infer(day=slashed)
    assert "choose the type date and the date format DD/MM/YYYY:" in notes[0]
    assert _noted_cells(spec, slashed, type="date", format="DD/MM/YYYY") == ["unknown"]
    # day/month or month/day, nothing settles which: the note does not guess
    _, notes = infer(day=["01/02/2024", "03/04/2024", "05/06/2024", "07/08/2024", "?"])
    assert "are dates (not: “?”)" in notes[0]
    assert "choose the type date and its date format:" in notes[0]


def test_a_column_of_other_values_gets_no_note_of_a_type() -> None:
    # codes with leading zeros would lose them as numbers; under four in five cells, no type
    for column in (["00123", "04567", "12345", "99999", "N/A"], ["1", "2", "3", "n/a", "-"]):
        assert infer(c=column)[1] == []
    # a few different ways of writing dates keep their own note
    assert "not all written the same way" in infer(d=["13/01/2024", "2024-01-02"])[1][0]
    # a long text column with a few numbers at its end
    assert infer(note=[f"text {i}" for i in range(3000)] + ["1"] * 10)[1] == []


def test_iso_datetimes_are_inferred_and_a_missing_offset_is_noted() -> None:
    spec, notes = infer(t=["2024-01-02T03:04:05Z", "2024-01-02 03:04:05.123+01:00"])
    assert spec.columns[0].type == "datetime"
    assert not notes
    spec, notes = infer(t=["2024-01-02T03:04", "2024-01-03"])
    assert spec.columns[0].type == "datetime"
    assert any("read as UTC" in n for n in notes)


def test_booleans_but_zero_one_columns_stay_integer() -> None:
    spec, _ = infer(a=["yes", "No", "YES"], b=["true", "false", "1"], c=["0", "1", "1", "0"])
    assert [c.type for c in spec.columns] == ["boolean", "boolean", "integer"]


def test_single_letters_are_a_boolean_only_with_both_truths() -> None:
    """A lone "y" or "t" (an initial, a code) was inferred boolean and stored as true."""
    spec, _ = infer(a=["y"], b=["t", "T"], c=["y", "n"], d=["T", "f", "t"], e=["yes"])
    assert [c.type for c in spec.columns] == ["text", "text", "boolean", "boolean", "boolean"]


def test_a_comma_separated_file_s_grouped_numbers_are_said_to_have_thousands_separators() -> None:
    """Quoted "1,200" in a comma-separated file was said to look like a decimal comma, and the
    option it pointed to stored 1.200: such files group thousands with commas."""
    values = {"amount": ["1,200", "2,500", "12,345.50"]}
    spec, notes = infer_spec(["amount"], values, comma_separated=True)
    assert spec.columns[0].type == "text"
    assert notes == [
        "“amount”: values such as “1,200” look like numbers with a thousands separator, which"
        " is not read as part of a number, so the column is kept as text; to store them as"
        " numbers, save the file without the separators (1200)."
    ]
    spec, notes = infer_spec(["p"], {"p": ["1,5", "2,25"]}, comma_separated=True)
    assert spec.columns[0].type == "text"
    assert "a comma-separated file cannot use one: save it separated by semicolons" in notes[0]
    _, notes = infer_spec(["p"], {"p": ["1,200", "2,500"]})  # semicolon-separated, say
    assert "choose the decimal-comma option to read them as numbers." in notes[0]


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["$1,200.50", "$3.00", "($5.00)"], "“$1,200.50” look like amounts with a currency sign"),
        (["1 200,50 €", "3,00 €"], "“1 200,50 €” look like amounts with a currency sign"),
        (["12%", "5.5%"], "“12%” look like percentages"),
    ],
)
def test_amounts_and_percentages_kept_as_text_say_how_to_store_numbers(
    values: list[str], said: str
) -> None:
    """They were kept as text without a word, as plain numbers with leading zeros were not."""
    spec, notes = infer(a=values)
    assert spec.columns[0].type == "text"
    assert said in notes[0]
    assert "save the file with plain numbers" in notes[0]
    assert infer(a=["Room 5%", "Hall"])[1] == []  # words with a percent sign are no percentage


def test_numbers_decimals_and_their_scale() -> None:
    spec, _ = infer(a=["1", "-2", "+3"], b=["1.5", "2.250", "3"], c=["1e5", "2"])
    assert [(c.type, c.scale) for c in spec.columns] == [
        ("integer", None),
        ("decimal", 3),
        ("text", None),
    ]


def test_decimal_comma_is_suggested_and_read_when_chosen() -> None:
    spec, notes = infer(p=["1,5", "2,25"])
    assert spec.columns[0].type == "text"
    assert any("decimal comma" in n for n in notes)
    spec, _ = infer_spec(["p"], {"p": ["1.234,5", "2,25"]}, decimal_comma=True)
    assert (spec.columns[0].type, spec.columns[0].scale) == ("decimal", 2)


def test_category_needs_few_repeated_values() -> None:
    spec, _ = infer(
        colour=["red", "blue", "red", "blue", "green", "red"], name=["a", "b", "c", "a", "b", "d"]
    )
    assert spec.columns[0].type == "category"
    assert spec.columns[0].options == ("blue", "green", "red")
    assert spec.columns[1].type == "text"  # four distinct values in six cells: not repeated enough


def test_required_unique_and_empty_columns() -> None:
    spec, notes = infer(
        **{
            "Order ID": ["1", "2", "3"],
            "name": ["a", "b", "c"],
            "note": ["", "x", "y"],
            "e": ["", "", ""],
        }
    )
    order_id, name, note, empty = spec.columns
    assert order_id.required
    assert order_id.unique
    assert name.required
    assert not name.unique
    assert not any("“name”: every value differs" in n for n in notes)  # 3 rows: by chance
    assert not note.required
    assert not note.unique
    assert (empty.type, empty.required) == ("text", False)
    assert any("every cell is empty" in n for n in notes)
    assert infer(customerId=["x1", "x2"])[0].columns[0].unique
    assert not infer(paid=["1", "2"])[0].columns[0].unique


def test_a_column_of_different_values_is_suggested_unique_only_past_a_few_rows() -> None:
    def noted(rows: int) -> bool:
        _, notes = infer(name=[f"n{i}" for i in range(rows)], qty=[str(i) for i in range(rows)])
        return sum("every value differs; mark it unique" in n for n in notes) == 2

    assert noted(UNIQUE_HINT_FROM)
    assert not noted(UNIQUE_HINT_FROM - 1)


def test_inferred_spec_validates_its_own_data() -> None:
    columns = {
        "id": ["1", "2", "3", "4"],
        "price": ["1.50", "2", "", "3.125"],
        "when": ["2024-01-01T00:00:00Z"] * 4,
        "ok": ["y", "n", "y", "n"],
    }
    spec, _ = infer_spec(list(columns), columns)
    assert validate(spec, pd.DataFrame(columns)).ok


# --- validation: every rule, row numbers, messages ------------------------------------------


def test_every_rule_reports_row_column_value_and_a_clear_message() -> None:
    spec = DatasetSpec(
        (
            ColumnSpec(
                "Code", "code", "text", required=True, unique=True, max_length=4, regex="^[A-Z]"
            ),
            ColumnSpec("Qty", "qty", "integer", min=0, max=10),
            ColumnSpec("Price", "price", "decimal", scale=2),
            ColumnSpec("Colour", "colour", "category", options=("red", "green")),
        )
    )
    frame = pd.DataFrame(
        {
            "Code": ["AB", "", "AB", "abc", "ABCDE", "CD", "EF"],
            "Qty": ["1", "x", "-1", "11", "2", "", "3"],
            "Price": ["1.5", "1.234", "2", "", "1,5", "0.10", "1"],
            "Colour": ["red", "blue", "", "green", "red", "Red", "red"],
        }
    )
    result = validate(spec, frame)
    found = {(e.row, e.column, e.rule) for e in result.errors}
    assert found == {
        (3, "Code", "required"),
        (3, "Qty", "type"),
        (3, "Price", "scale"),
        (3, "Colour", "options"),
        (4, "Code", "unique"),
        (4, "Qty", "min"),
        (5, "Code", "regex"),
        (5, "Qty", "max"),
        (6, "Code", "max_length"),
        (6, "Price", "type"),
        (7, "Colour", "options"),
    }
    order = ["Code", "Qty", "Price", "Colour"]
    keys = [(e.row, order.index(e.column)) for e in result.errors]
    assert keys == sorted(keys)  # row by row, columns in table order
    messages = {(e.row, e.rule): e for e in result.errors}
    assert messages[(4, "unique")].message.startswith("“AB” also appears in line 2")  # as reported
    assert "below the minimum 0" in messages[(4, "min")].message
    assert "is not a whole number" in messages[(3, "type")].message
    assert messages[(3, "type")].value == "x"
    assert "more than 2 digits after the decimal point" in messages[(3, "scale")].message
    assert "at most 4 are allowed" in messages[(6, "max_length")].message
    assert "pattern ^[A-Z]" in messages[(5, "regex")].message
    assert (
        "“blue” is not one of the allowed values (“red”, “green”)"
        in messages[(3, "options")].message
    )
    assert messages[(3, "required")].message == "A value is required here: fill it in."
    assert result.error_count == 11
    assert not result.ok
    assert result.typed["qty"].isna().tolist() == [False, True, True, True, False, True, False]


def test_row_numbers_follow_the_file_lines() -> None:
    column = col(type_="integer")
    result = check(column, "1", "x", "2", "y", line_numbers=[2, 3, 6, 7])
    assert [e.row for e in result.errors] == [3, 7]


def test_max_errors_caps_the_list_not_the_count() -> None:
    result = check(col(type_="integer"), *["x"] * 50, max_errors=5)
    assert len(result.errors) == 5
    assert result.error_count == 50
    assert [e.row for e in result.errors] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("column", "good", "bad"),
    [
        (
            col(type_="integer"),
            {"42": 42, " -7 ": -7, "+3": 3, "0009": 9},
            ["4.0", "1,000", "1e3", "٣", "9223372036854775808"],
        ),
        (
            col(type_="decimal"),
            {"1.50": Decimal("1.5"), "-.5": Decimal("-0.5"), "7.": Decimal(7)},
            ["1,5", "1.2.3", "NaN", "Infinity", "1e5", "1_000"],
        ),
        (
            col(type_="boolean"),
            {"Yes": True, "n": False, "TRUE": True, "0": False},
            ["maybe", "2", "truee"],
        ),
        (
            col(type_="date"),
            {"2024-02-29": date(2024, 2, 29), " 0001-01-01": date(1, 1, 1)},
            ["2023-02-29", "2024-13-01", "24.12.2024", "0000-01-01", "2024-1-1"],
        ),
        (
            col(type_="date", format="DD.MM.YYYY"),
            {
                "24.12.2024": date(2024, 12, 24),
                "1.2.2024": date(2024, 2, 1),
                "2024-12-24": date(2024, 12, 24),
            },
            ["31.04.2024", "12/24/2024"],
        ),
        (
            col(type_="datetime"),
            {
                "2024-01-02T03:04:05Z": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                "2024-01-02 03:04:05.5+01:30": datetime(2024, 1, 2, 1, 34, 5, 500000, tzinfo=UTC),
                "2024-01-02": datetime(2024, 1, 2, tzinfo=UTC),
                "0001-01-01T00:30-00:30": datetime(1, 1, 1, 1, 0, tzinfo=UTC),
            },
            [
                "2024-01-02T24:00",
                "2024-01-02T10:00:60",
                "2024-01-02T10:00+24:00",
                "0001-01-01T00:00+01:00",
                "9999-12-31T23:30-01:00",
                "2024-01-02T10:00:00.1234567",
            ],
        ),
    ],
    ids=["integer", "decimal", "boolean", "date", "date-dmy", "datetime"],
)
def test_type_parsing(column: ColumnSpec, good: dict[str, Any], bad: list[str]) -> None:
    result = check(column, *good, *bad)
    assert result.typed.iloc[: len(good), 0].tolist() == list(good.values())
    assert [(e.value, e.rule) for e in result.errors] == [(b, "type") for b in bad]
    for raw, value in good.items():
        assert validate_value(column, raw) == value


def test_decimal_comma_option() -> None:
    column = col(type_="decimal", scale=2)
    result = check(column, "1.234,56", "-0,5", "12", "1.23", decimal_comma=True)
    assert result.typed.iloc[:3, 0].tolist() == [Decimal("1234.56"), Decimal("-0.5"), Decimal(12)]
    assert [(e.value, e.rule) for e in result.errors] == [("1.23", "type")]
    assert "decimal comma" in result.errors[0].message
    assert check(col(type_="integer"), "1.234", decimal_comma=True).typed.iloc[0, 0] == 1234


def test_bounds_on_decimals_dates_and_datetimes() -> None:
    price = col(type_="decimal", min="0.005", max="10")
    assert [e.rule for e in check(price, "0.004", "0.005", "10.00", "10.0001").errors] == [
        "min",
        "max",
    ]
    day = col(type_="date", min="2024-01-01", max="2024-12-31")
    assert [e.rule for e in check(day, "2023-12-31", "2024-06-01", "2025-01-01").errors] == [
        "min",
        "max",
    ]
    moment = col(type_="datetime", min="2024-01-01T00:00:00Z")
    assert [
        e.rule for e in check(moment, "2024-01-01T00:30:00+01:00", "2024-01-01T00:00:00Z").errors
    ] == ["min"]
    assert "enter 2024-01-01 or more" in check(day, "2023-01-01").errors[0].message


def test_wide_decimals_stay_exact() -> None:
    values = ["1" * 38 + "." + "9" * 38, "-0." + "0" * 37 + "1", "1." + "0" * 60]
    result = check(col(type_="decimal"), *values)
    assert result.ok
    assert [format(v, "f") for v in result.typed.iloc[:, 0]] == [
        values[0],
        "-0." + "0" * 37 + "1",
        "1." + "0" * 38,
    ]
    assert check(col(type_="decimal"), "1" * 39).errors[0].rule == "type"


def test_frame_columns_are_matched_by_label_or_name_and_mismatches_refused() -> None:
    spec = DatasetSpec((ColumnSpec("Order Qty", "order_qty", "integer"),))
    assert validate(spec, pd.DataFrame({" order qty ": ["1"]})).ok
    assert validate(spec, pd.DataFrame({"order_qty": ["1"], "_row_id": [5]})).ok
    with pytest.raises(ValidationError, match=r"missing: “Order Qty”; not in the dataset: “Qty”"):
        validate(spec, pd.DataFrame({"Qty": ["1"]}))


def test_a_header_cell_is_matched_whichever_way_its_accents_are_encoded() -> None:
    """“Qté” with a precomposed é (NFC) or an e and a combining accent (NFD, as some macOS
    software writes): the same name to a person, but appending the file was refused as
    missing “Qté” and having “Qté”, not in the dataset."""
    spec = DatasetSpec((ColumnSpec("Qt\u00e9", "qte", "integer"),))
    assert validate(spec, pd.DataFrame({"QTE\u0301 ": ["1"]})).ok


def test_empty_strings_na_and_nan_are_missing() -> None:
    column = col(type_="integer", required=True)
    frame = pd.DataFrame({"Value": pd.Series(["", None, np.nan, pd.NA], dtype=object)})
    result = validate(DatasetSpec((column,)), frame)
    assert [e.rule for e in result.errors] == ["required"] * 4
    for missing in ("", None, float("nan"), pd.NA):
        found = validate_value(column, missing, row=9)
        assert isinstance(found, CellError)
        assert (found.rule, found.row) == ("required", 9)
        assert validate_value(col(type_="integer"), missing) is None


def test_patterns_search_like_postgresql() -> None:
    column = col(regex="^x[0-9]+$")
    result = check(column, "x12", "x12\n", "ax12", "x")
    assert [e.value for e in result.errors] == ["x12\n", "ax12", "x"]  # $ is the very end
    assert [e.rule for e in check(col(regex="[0-9]"), "abc", "a1c").errors] == ["regex"]
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        col(regex="(a")
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        col(regex="(a)\\1")  # back-references: not in the common subset


def test_text_that_cannot_be_stored_is_refused() -> None:
    for value in ("a\x00b", "\ud800"):
        found = validate_value(col(), value)
        assert isinstance(found, CellError)
        assert (found.rule, "cannot be stored" in found.message) == ("type", True)
    assert check(col(), "a\x00b").errors[0].rule == "type"
    found = validate_value(col(), "a\ud800")
    assert isinstance(found, CellError)
    assert found.value == "a\\ud800"  # the lone surrogate as its escape: safe to show or export
    assert "“a\\ud800”" in found.message


# --- validate_value with what an editor sends -----------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (col(type_="integer"), 5, 5),
        (col(type_="integer"), 5.0, 5),
        (col(type_="integer"), np.int64(5), 5),
        (col(type_="integer"), Decimal("5"), 5),
        (col(type_="decimal"), 0.1, Decimal("0.1")),
        (col(type_="decimal"), 3, Decimal(3)),
        (col(type_="decimal"), Decimal("2.50"), Decimal("2.5")),
        (col(type_="boolean"), True, True),
        (col(type_="boolean"), np.bool_(False), False),
        (col(type_="boolean"), 1, True),
        (col(type_="date"), date(2024, 5, 6), date(2024, 5, 6)),
        (col(type_="date"), datetime(2024, 5, 6), date(2024, 5, 6)),
        (
            col(type_="datetime"),
            datetime(2024, 5, 6, 12, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 6, 10, tzinfo=UTC),
        ),
        (col(type_="datetime"), datetime(2024, 5, 6, 12), datetime(2024, 5, 6, 12, tzinfo=UTC)),
        (
            col(type_="datetime"),
            pd.Timestamp("2024-05-06T12:00Z"),
            datetime(2024, 5, 6, 12, tzinfo=UTC),
        ),
        (col(type_="datetime"), date(2024, 5, 6), datetime(2024, 5, 6, tzinfo=UTC)),
        (col(type_="category", options=("a", "b")), "b", "b"),
        (col(), "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ],
)
def test_typed_editor_values_are_accepted(
    column: ColumnSpec, value: object, expected: object
) -> None:
    assert validate_value(column, value) == expected


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        (col(type_="integer"), True, "type"),
        (col(type_="integer"), 5.5, "type"),
        (col(type_="integer"), float("inf"), "type"),
        (col(type_="integer"), 2**63, "type"),
        (col(type_="integer", max=3), 4, "max"),
        (col(type_="decimal"), Decimal("NaN"), "type"),
        (col(type_="decimal"), Decimal("1E+50"), "type"),
        (col(type_="decimal", scale=1), Decimal("1.25"), "scale"),
        (col(type_="boolean"), 2, "type"),
        (col(type_="date"), datetime(2024, 5, 6, 1), "type"),
        (col(type_="datetime"), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "type"),
        (col(), 5, "type"),
        (col(), ["list"], "type"),
        (col(type_="category", options=("a",)), "A", "options"),
        (col(max_length=3), "abcd", "max_length"),
    ],
)
def test_forged_or_breaking_editor_values_are_refused(
    column: ColumnSpec, value: object, rule: str
) -> None:
    found = validate_value(column, value, row=17)
    assert isinstance(found, CellError), found
    assert (found.rule, found.row, found.column) == (rule, 17, column.label)
    assert found.message


@pytest.mark.parametrize(
    ("value", "option"),
    [
        ("red", "Red"),
        ("RED", "Red"),
        (" Red", "Red"),
        ("Red\t", "Red"),
        ("e\u0301te\u0301", "\u00e9t\u00e9"),  # looks the same: é written as e and an accent
        ("\u00c9T\u00c9", "\u00e9t\u00e9"),
    ],
)
def test_a_value_that_is_an_option_but_for_case_spaces_or_accents_names_it(
    value: str, option: str
) -> None:
    """Refused by both validators (and the table's IN) as not an option, with a message that
    names the option it nearly is: "“été” is not one of the allowed values (“été”)" alone does
    not say what to change when the two look alike."""
    column = col(type_="category", options=("Red", "\u00e9t\u00e9", "Green"))
    edited = validate_value(column, value)
    (uploaded,) = check(column, value).errors
    assert isinstance(edited, CellError)
    assert (edited.rule, edited.message) == (uploaded.rule, uploaded.message)
    assert edited.rule == "options"
    assert f"is not one of the allowed values but nearly “{option}”" in edited.message
    assert "write it exactly as the option is written" in edited.message


def test_a_value_that_is_no_option_at_all_lists_the_options() -> None:
    column = col(type_="category", options=("Red", "Green"))
    found = validate_value(column, "Blue")
    assert isinstance(found, CellError)
    assert found.message == "“Blue” is not one of the allowed values (“Red”, “Green”)."


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": 1}])
@pytest.mark.parametrize("type_", ["text", "category"])
def test_a_text_cell_sent_as_another_kind_of_value_says_what_to_do(
    type_: str, value: object
) -> None:
    """Only a forged or broken grid state sends a number or a yes/no for a text cell (a file's
    cells are all text): it was refused with "“5” is not text." alone."""
    options = {"options": ("5", "a")} if type_ == "category" else {}
    found = validate_value(col(type_=type_, **options), value)
    assert isinstance(found, CellError)
    assert found.rule == "type"
    assert found.message.startswith(f"“{_show_value(value)}” arrived as ")
    assert "not as text; reload the page and type it again." in found.message


def _show_value(value: object) -> str:
    return "true" if value is True else str(value)


def test_a_value_too_long_by_its_combining_accents_says_so() -> None:
    """Length is counted in characters, as PostgreSQL's char_length counts them: “été” typed
    as e and an accent (as macOS files often hold it) is 5 characters, which a person sees as
    3; the message says why, in both validators."""
    column = col(max_length=4)
    value = "e\u0301te\u0301"
    edited = validate_value(column, value)
    (uploaded,) = check(column, value).errors
    assert isinstance(edited, CellError)
    assert (edited.rule, edited.message) == ("max_length", uploaded.message)
    assert "is 5 characters long" in edited.message
    assert "2 of them accents typed as characters of their own" in edited.message
    plain = validate_value(column, "abcde")
    assert isinstance(plain, CellError)
    assert "accents" not in plain.message


# --- the two validators agree ---------------------------------------------------------------

AGREEMENT_COLUMNS = [
    col(type_="text", max_length=5, regex="^[a-c]+"),
    col(type_="category", options=("a", "b", " c")),
    col(type_="integer", min=-10, max=1000),
    col(type_="integer"),
    col(type_="decimal"),
    col(type_="decimal", scale=2, min="-1.5", max="100"),
    col(type_="boolean"),
    col(type_="date"),
    col(type_="date", format="DD/MM/YYYY", min="2000-01-01"),
    col(type_="date", format="MM/DD/YYYY"),
    col(type_="datetime", max="2100-01-01T00:00Z"),
    col(type_="text", required=True),
]


@st.composite
def numberish(draw: st.DrawFn) -> str:
    """Numbers near every edge: int64 limits, the bounds above, scales, grouping, spaces."""
    value = draw(
        st.one_of(
            st.integers(-(2**64), 2**64),
            st.sampled_from([-10, -11, 1000, 1001, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
            st.decimals(allow_nan=False, allow_infinity=False, places=draw(st.integers(0, 4))),
            st.sampled_from(
                [Decimal("-1.5"), Decimal("-1.51"), Decimal("100.00"), Decimal("100.001")]
            ),
        )
    )
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    if draw(st.booleans()):
        text = text.replace(".", ",")
    if draw(st.booleans()) and text[:1].isdigit():
        text = draw(st.sampled_from(["+", "0", "00", "."])) + text
    if draw(st.booleans()):
        text = re.sub(r"(?<=\d)(?=(\d{3})+\b)", draw(st.sampled_from([".", ","])), text)
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " "]))


@st.composite
def dateish(draw: st.DrawFn) -> str:
    y, m, d = draw(st.integers(0, 10000)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    pattern = draw(
        st.sampled_from(
            [
                "{y:04d}-{m:02d}-{d:02d}",
                "{d}.{m}.{y:04d}",
                "{d:02d}/{m:02d}/{y}",
                "{m}/{d}/{y:04d}",
                "{y}-{m}-{d}",
            ]
        )
    )
    return pattern.format(y=y, m=m, d=d)


@st.composite
def datetimeish(draw: st.DrawFn) -> str:
    y, mo, d = (
        draw(st.sampled_from([1, 2, 1970, 2024, 2100, 9999, 0])),
        draw(st.integers(0, 13)),
        draw(st.integers(0, 32)),
    )
    text = f"{y:04d}-{mo:02d}-{d:02d}"
    if draw(st.booleans()):
        h, mi, sec = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
        text += draw(st.sampled_from(["T", " ", "t"])) + f"{h:02d}:{mi:02d}"
        if draw(st.booleans()):
            text += f":{sec:02d}"
            if draw(st.booleans()):
                text += draw(st.sampled_from([".", ","])) + draw(st.from_regex(r"\A[0-9]{1,7}\Z"))
        if draw(st.booleans()):
            text += draw(
                st.one_of(
                    st.sampled_from(["Z", "z"]),
                    st.builds(
                        lambda sign, hh, mm, colon: f"{sign}{hh:02d}{colon}{mm:02d}",
                        st.sampled_from(["+", "-"]),
                        st.integers(0, 25),
                        st.integers(0, 61),
                        st.sampled_from([":", ""]),
                    ),
                    st.builds(
                        lambda sign, hh: f"{sign}{hh:02d}",
                        st.sampled_from(["+", "-"]),
                        st.integers(0, 25),
                    ),
                )
            )
    return text


wordish = st.sampled_from(
    [
        "true",
        "FALSE",
        "y",
        "N",
        "yes",
        "no",
        "t",
        "1",
        "0",
        "",
        "a",
        "b",
        " c",
        "abc",
        "abcdef",
        "c",
    ]
)
cell = st.one_of(st.text(max_size=12), numberish(), dateish(), datetimeish(), wordish)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(AGREEMENT_COLUMNS), st.lists(cell, min_size=1, max_size=8), st.booleans())
def test_validate_and_validate_value_agree(
    column: ColumnSpec, values: list[str], comma: bool
) -> None:
    result = check(column, *values, decimal_comma=comma)
    errors = {e.row: e for e in result.errors}
    for position, value in enumerate(values):
        single = validate_value(column, value, row=position + 2, decimal_comma=comma)
        if isinstance(single, CellError):
            assert errors.get(position + 2) == single
        else:
            assert position + 2 not in errors, (value, errors[position + 2])
            typed = result.typed.iloc[position, 0]
            if single is None:
                assert pd.isna(typed)
            else:
                assert typed == single
                assert not pd.isna(typed)


EDGES = [
    *("-10", "-11", "1000", "1001", "-1.5", "-1.51", "100.00", "100.001", "9223372036854775807"),
    *("-9223372036854775808", "-9223372036854775809", "0.1", "1.", ".5", "+.5", "1.234,5"),
    *("2000-01-01", "1999-12-31", "01/01/2000", "31/12/1999", "12/31/1999", "2024-02-29"),
    *("2100-01-01T00:00Z", "2100-01-01T00:00:00.000001Z", "2099-12-31T23:59:59.999999Z"),
    *("2100-01-01T01:00+01:00", "2100-01-01T00:59-00:01", "9999-12-31T23:59:59.999999"),
    *("0001-01-01T00:00+00:01", "abc", "ab", "c", " c", "Y", "", "  "),
]


@pytest.mark.parametrize("comma", [False, True])
@pytest.mark.parametrize("column", AGREEMENT_COLUMNS, ids=lambda c: f"{c.type}")
def test_validators_agree_on_edge_values(column: ColumnSpec, comma: bool) -> None:
    test_validate_and_validate_value_agree.hypothesis.inner_test(column, EDGES, comma)  # type: ignore[attr-defined]


@given(st.sampled_from(AGREEMENT_COLUMNS), st.text(), st.booleans())
def test_validate_value_never_raises_on_any_string(
    column: ColumnSpec, value: str, comma: bool
) -> None:
    found = validate_value(column, value, decimal_comma=comma)
    assert found is None or isinstance(found, CellError | str | int | Decimal | bool | date)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=12), st.booleans())
def test_an_inferred_spec_accepts_the_data_it_came_from(rows: list[list[str]], comma: bool) -> None:
    columns = {f"c{i}": [r[i].replace("\x00", "") for r in rows] for i in range(3)}
    spec, _ = infer_spec(list(columns), columns, decimal_comma=comma)
    result = validate(spec, pd.DataFrame(columns), decimal_comma=comma)
    assert result.ok, result.errors


# --- DDL ------------------------------------------------------------------------------------


def compile_ddl(spec: DatasetSpec, table: str = "ds_demo") -> str:
    return str(
        CreateTable(ddl_table(spec, table, MetaData())).compile(dialect=postgresql.dialect())
    )


def test_ddl_types_and_constraints() -> None:
    sql = compile_ddl(FULL_SPEC)
    assert "CREATE TABLE data.ds_demo (" in sql
    assert "_row_id BIGINT GENERATED ALWAYS AS IDENTITY" in sql
    assert "_version INTEGER DEFAULT 1 NOT NULL" in sql
    for fragment in [
        "code TEXT NOT NULL",
        "qty BIGINT DEFAULT 1",
        "price NUMERIC DEFAULT 9.99",
        "active BOOLEAN DEFAULT true",
        "day DATE",
        "seen TIMESTAMP WITH TIME ZONE",
        "colour TEXT DEFAULT 'red'",
        "CONSTRAINT pk_ds_demo PRIMARY KEY (_row_id)",
        "CONSTRAINT uq_ds_demo_code UNIQUE (code)",
        "CONSTRAINT ck_code_len CHECK (char_length(code) <= 8)",
        "CONSTRAINT ck_code_re CHECK (code ~ '^[A-Z]+$')",
        "CONSTRAINT ck_qty_min CHECK (qty >= 0)",
        "CONSTRAINT ck_qty_max CHECK (qty <= 1000)",
        "CONSTRAINT ck_price_min CHECK (price >= 0.01)",
        "CONSTRAINT ck_price_scale CHECK (price = round(price, 2))",
        "CONSTRAINT ck_day_min CHECK (day >= '2020-01-01')",
        "CONSTRAINT ck_seen_max CHECK (seen <= '2030-01-01 00:00:00+00:00')",
        "CONSTRAINT ck_colour_in CHECK (colour IN ('red', 'green'))",
    ]:
        assert fragment in sql, fragment


def test_ddl_renders_quotes_and_backslashes_as_literals() -> None:
    nasty = "^a'b\\d+'\\); DROP TABLE portal.users; --$"
    spec = DatasetSpec(
        (
            ColumnSpec("R", "r", "text", regex=nasty),
            ColumnSpec("O", "o", "category", options=("it's", "back\\slash", '"dq"')),
        )
    )
    sql = compile_ddl(spec)
    assert "CHECK (r ~ '^a''b\\d+''\\); DROP TABLE portal.users; --$')" in sql
    assert "CHECK (o IN ('it''s', 'back\\slash', '\"dq\"'))" in sql


def test_constraint_names_are_short_and_deterministic() -> None:
    long_table = "t" * 63
    long_column = "c" * 63
    spec = DatasetSpec((ColumnSpec("x", long_column, "integer", unique=True, min=0, max=5),))
    table = ddl_table(spec, long_table, MetaData())
    names = sorted(str(c.name) for c in table.constraints)
    assert all(len(n.encode()) <= 63 for n in names)
    assert len(set(names)) == len(names) == 4
    again = sorted(str(c.name) for c in ddl_table(spec, long_table, MetaData()).constraints)
    assert names == again
    assert '"select"' in compile_ddl(DatasetSpec((ColumnSpec("Select", "select", "text"),)))


@pytest.mark.parametrize("name", ["Users", "a;drop", "pg_x", "", "x" * 64, "1abc"])
def test_ddl_refuses_an_unsafe_table_name(name: str) -> None:
    with pytest.raises(ValidationError, match="table name"):
        ddl_table(FULL_SPEC, name, MetaData())


# --- editor columns -------------------------------------------------------------------------


def test_a_column_goes_to_the_grid_as_text_when_the_grid_would_round_one_of_its_cells() -> None:
    # The grid holds numbers as 64-bit floats: past 2**53 - 1 a whole number comes back
    # changed, and a decimal column without a scale shows 4 places.
    whole, rate, price = col("N", "integer"), col("R", "decimal"), col("P", "decimal", scale=6)
    for cells in ([1, None, 2**53 - 1], pd.Series([1, None, -(2**53) + 1], dtype="Int64")):
        assert not browser_rounds(whole, cells)
    for cells in ([1, None, 2**53], pd.Series([pd.NA, -(2**53)], dtype="Int64")):
        assert browser_rounds(whole, cells)
    assert not browser_rounds(rate, [Decimal("0.1234"), None, pd.NA])
    assert browser_rounds(rate, [Decimal("0.12345")])
    assert not browser_rounds(price, [Decimal("0.123456")])
    assert browser_rounds(price, [Decimal("1234567890.123456")])  # 16 digits
    assert not browser_rounds(col("T"), ["9" * 30])  # text is shown as it is


def test_editor_columns_describe_every_rule() -> None:
    """Each rule reaches the grid: types, options and formats as settings; required, bounds,
    maximum length and pattern in the help alone (the browser would enforce those silently)."""
    by_name = {c.name: c for c in editor_columns(FULL_SPEC)}
    assert [c.name for c in editor_columns(FULL_SPEC)] == FULL_SPEC.names
    code = by_name["code"]
    assert code.kind == "text"
    assert code.help == "Text; required; unique; at most 8 characters; matching ^[A-Z]+$."
    qty = by_name["qty"]
    assert (qty.kind, qty.step, qty.format, qty.default) == ("number", 1, "%d", 1)
    assert qty.help == "Whole number; at least 0; at most 1000."
    price = by_name["price"]
    assert (price.step, price.format) == (0.01, "%.2f")
    assert "at least 0.01" in price.help
    assert by_name["active"].kind == "checkbox"
    assert (by_name["day"].kind, by_name["day"].format) == ("date", "DD.MM.YYYY")
    assert "at least 2020-01-01" in by_name["day"].help
    assert (by_name["seen"].kind, by_name["seen"].timezone) == ("datetime", "UTC")
    assert "at most 2030-01-01" in by_name["seen"].help
    assert (by_name["colour"].kind, by_name["colour"].options) == ("selectbox", ("red", "green"))


def test_a_bound_that_is_no_number_is_said_as_a_rule_not_a_file_cell() -> None:
    """The rule's message said "for a file written with a decimal comma, choose that option on
    the Upload page", a file cell's advice, to someone typing a minimum in the rules grid."""
    with pytest.raises(ValidationError) as refused:
        ColumnSpec("P", "p", "decimal", min="abc")
    assert str(refused.value) == (
        "Column “P”: the minimum 'abc' is not valid: “abc” is not a number: write it like"
        " 1234.56 (a point before the decimals, no thousands separators)."
    )
    cell = validate_value(ColumnSpec("P", "p", "decimal"), "abc")  # a file's cell keeps it
    assert isinstance(cell, CellError)
    assert "choose that option on the Upload page" in cell.message


def test_a_day_that_does_not_exist_is_not_said_to_be_in_the_wrong_form() -> None:
    refused = validate_value(ColumnSpec("D", "d", "date"), "2024-02-30")
    assert isinstance(refused, CellError)
    assert refused.message == (
        "“2024-02-30” is not a date in the form YYYY-MM-DD, or not a day that exists: write it"
        " like 2024-12-24."
    )
