"""The spec's renderings agree: a value ``spec.validate_value`` refuses, PostgreSQL refuses too
when it is written straight into the table ``ddl_table`` built from the same spec (the database
backstop: a bug, psql or another tool cannot store what the portal forbids), and a value the
validator accepts, the table accepts and stores as the validator typed it.

Writes here are plain SQL with bound parameters as the app role — no portal code between the
value and the table. A string reaches PostgreSQL as an untyped literal that the column's type
parses; other values are sent typed. Every write runs in a savepoint that is rolled back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from portal import datasets
from portal.actor import Actor
from portal.embedded import ClusterInfo
from portal.spec import (
    INT64_MAX,
    INT64_MIN,
    CellError,
    ColumnSpec,
    DatasetSpec,
    validate,
    validate_value,
)
from tests.conftest import create_database, drop_database
from tests.factories import make_user

pytestmark = pytest.mark.db

LOGIN_PATTERN = r"^[a-z]+\\[a-z']+$"  # a domain login: a backslash, and quotes allowed
SEEN_MIN = datetime(2000, 1, 1, tzinfo=UTC)
SEEN_MAX = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)

SPEC = DatasetSpec(
    (
        ColumnSpec(
            "Code",
            "code",
            "text",
            required=True,
            unique=True,
            max_length=8,
            regex=r"^[A-Z]{2}-[0-9]+$",
        ),
        ColumnSpec("Name", "name", "text", required=True, max_length=10),
        ColumnSpec("Login", "login", "text", regex=LOGIN_PATTERN),
        ColumnSpec("Qty", "qty", "integer", min=-5, max=100),
        ColumnSpec("Count", "count", "integer"),
        ColumnSpec("Price", "price", "decimal", scale=2, min=Decimal("0"), max=Decimal("9999.99")),
        ColumnSpec("Ratio", "ratio", "decimal"),
        ColumnSpec("Colour", "colour", "category", options=("red", "green", "blue")),
        ColumnSpec("Active", "active", "boolean", required=True),
        ColumnSpec("Born", "born", "date", min=date(1900, 1, 1), max=date(2099, 12, 31)),
        ColumnSpec("Due", "due", "date"),
        ColumnSpec("Seen", "seen", "datetime", min=SEEN_MIN, max=SEEN_MAX),
        ColumnSpec("Stamp", "stamp", "datetime"),
    )
)
COLUMNS = {c.name: c for c in SPEC.columns}
BASE = {"code": "AA-1", "name": "Base", "active": True}
"""The required values of an otherwise empty row."""

# What PostgreSQL names when it refuses a rule (``ddl_table``'s constraint names).
CHECK_SUFFIX = {
    "min": "min",
    "max": "max",
    "scale": "scale",
    "max_length": "len",
    "regex": "re",
    "options": "in",
    "filled": "filled",
    "finite": "finite",
}
NOT_NULL, UNIQUE, CHECK = "23502", "23505", "23514"


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backstop:
    engine: Engine
    table: str
    """``data."<table_name>"``"""
    table_name: str


@pytest.fixture(scope="module")
def backstop(pg_cluster: ClusterInfo, migrated_template: str) -> Iterator[Backstop]:
    """One database for the module, with the dataset ``SPEC`` describes, created by
    ``datasets.create_dataset``; tests only write inside transactions they roll back."""
    name = f"t_{secrets.token_hex(6)}"
    create_database(pg_cluster, name, template=migrated_template)
    engine = create_engine(pg_cluster.url("app", name), poolclass=pool.NullPool)
    try:
        with Session(engine) as s, s.begin():
            username, _ = make_user(s, role="editor")
            dataset = datasets.create_dataset(
                session=s,
                actor=Actor(username, "Ed", "editor"),
                name="Backstop",
                spec=SPEC,
            )
            table_name = dataset.table_name
        yield Backstop(engine, f'data."{table_name}"', table_name)
    finally:
        engine.dispose()
        drop_database(pg_cluster, name)


@pytest.fixture
def conn(backstop: Backstop) -> Iterator[Connection]:
    """A transaction on the table holding one valid row (``_row_id`` in ``conn.info``), rolled
    back at the end; nothing any test writes survives it."""
    with backstop.engine.connect() as connection:
        connection.begin()
        connection.info["row_id"] = connection.scalar(
            text(
                f"INSERT INTO {backstop.table} (code, name, active)"
                " VALUES ('ZZ-9', 'Updated', false) RETURNING _row_id"
            )
        )
        connection.info["table"] = backstop.table
        yield connection
        connection.rollback()
    with backstop.engine.connect() as check:
        assert check.scalar(text(f"SELECT count(*) FROM {backstop.table}")) == 0
        kinds = check.scalars(text("SELECT kind FROM audit.changeset")).all()
    assert kinds == ["dataset"]  # the creation alone: every direct write was rolled back


def _write(conn: Connection, column: str, value: object, *, update: bool) -> DBAPIError | None:
    """Insert a row (otherwise valid) with ``value`` in ``column``, or update the valid row's
    ``column`` to it, in a savepoint rolled back; what PostgreSQL raised, or None."""
    table = conn.info["table"]
    if update:
        sql = f'UPDATE {table} SET "{column}" = :v WHERE _row_id = :row_id'
        params: dict[str, Any] = {"v": value, "row_id": conn.info["row_id"]}
    else:
        row = {**BASE, column: value}
        names = ", ".join(f'"{n}"' for n in row)
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(f':{n}' for n in row)})"
        params = row
    savepoint = conn.begin_nested()
    try:
        conn.execute(text(sql), params)
    except DBAPIError as exc:
        return exc
    finally:
        savepoint.rollback()
    return None


def _accepted_by_both(conn: Connection, column: str, value: object) -> tuple[bool, bool]:
    """(the validator accepts ``value``, the table accepts it on insert)."""
    verdict = validate_value(COLUMNS[column], value)
    return not isinstance(verdict, CellError), _write(conn, column, value, update=False) is None


def _diag(exc: DBAPIError) -> tuple[str, str | None, str | None]:
    orig: Any = exc.orig
    return orig.pgcode, orig.diag.constraint_name, orig.diag.column_name


# --- bad values: both refuse, for the same rule ----------------------------------------------

BAD: list[Any] = [
    # column, value, the validator's rule, the rule PostgreSQL names when it differs
    ("code", None, "required", None),
    ("code", "", "required", "filled"),  # an empty string is missing, for the table too
    ("code", "AB-123456", "max_length", None),
    ("code", "ab-1", "regex", None),
    ("code", "AB-1\n", "regex", None),  # $ is the end of the value in both, unlike Python's re
    ("code", "AB-1 ", "regex", None),
    ("code", "AB-\uff11", "regex", None),  # a full-width digit one is not [0-9]
    ("name", None, "required", None),
    ("name", "x" * 11, "max_length", None),
    ("name", "😀" * 11, "max_length", None),  # characters, not bytes
    ("name", "e\u0301" * 6, "max_length", None),  # code points, as char_length counts
    ("login", "corp/ann", "regex", None),
    ("login", "Corp\\ann", "regex", None),
    ("login", "corp\\\\ann", "regex", None),
    ("login", "corp\\o'brien\n", "regex", None),
    ("login", "corp\\x'; DROP TABLE portal.users; --", "regex", None),
    ("qty", -6, "min", None),
    ("qty", 101, "max", None),
    ("qty", "1.5", "type", None),
    ("qty", "abc", "type", None),
    ("qty", 2**63, "type", None),
    ("count", INT64_MAX + 1, "type", None),
    ("count", INT64_MIN - 1, "type", None),
    ("count", "9223372036854775808", "type", None),
    ("price", Decimal("1.234"), "scale", None),
    ("price", Decimal("0.001"), "scale", None),
    ("price", "12.345", "scale", None),
    ("price", Decimal("-0.01"), "min", None),
    ("price", Decimal("10000.00"), "max", None),
    ("price", "abc", "type", None),
    ("price", "1,50", "type", None),
    ("price", "NaN", "type", "finite"),  # not a number, for the table too
    ("price", "Infinity", "type", "finite"),
    ("price", "-Infinity", "type", "finite"),
    ("ratio", "12abc", "type", None),
    ("colour", "purple", "options", None),
    ("colour", "Red", "options", None),
    ("colour", "red ", "options", None),
    ("active", None, "required", None),
    ("active", "maybe", "type", None),
    ("active", "2", "type", None),
    ("born", date(1899, 12, 31), "min", None),
    ("born", date(2100, 1, 1), "max", None),
    ("born", "2024-02-30", "type", None),
    ("born", "2024-13-01", "type", None),
    ("born", "infinity", "type", "max"),
    ("due", "2023-02-29", "type", None),
    ("seen", "1999-12-31T23:59:59Z", "min", None),
    ("seen", "2000-01-01T00:30:00+01:00", "min", None),  # 23:30 UTC the day before
    ("seen", "2100-01-01T00:00:00Z", "max", None),
    ("seen", SEEN_MAX + timedelta(microseconds=1), "max", None),
    ("seen", "2024-01-01T25:00:00Z", "type", None),
    ("stamp", "2024-01-01T12:00:00+25:00", "type", None),
]


def _bad_id(column: str, value: object, rule: str) -> str:
    return f"{column}-{rule}-{value!r}"[:60]


@pytest.mark.parametrize("update", [False, True], ids=["insert", "update"])
@pytest.mark.parametrize(
    ("column", "value", "rule", "db_rule"),
    [pytest.param(*b, id=_bad_id(*b[:3])) for b in BAD],
)
def test_a_value_the_validator_refuses_the_table_refuses(
    conn: Connection,
    backstop: Backstop,
    column: str,
    value: object,
    rule: str,
    db_rule: str | None,
    update: bool,
) -> None:
    verdict = validate_value(COLUMNS[column], value)
    assert isinstance(verdict, CellError), verdict
    assert verdict.rule == rule

    refused = _write(conn, column, value, update=update)
    db_rule = db_rule or rule
    if db_rule == "type":
        assert isinstance(refused, DataError), refused
        return
    assert isinstance(refused, IntegrityError), refused
    code, constraint, failed_column = _diag(refused)
    if db_rule == "required":
        assert (code, failed_column) == (NOT_NULL, column)
    else:
        assert (code, constraint) == (CHECK, f"ck_{column}_{CHECK_SUFFIX[db_rule]}")


def test_a_repeated_unique_value_is_refused_by_both(conn: Connection, backstop: Backstop) -> None:
    frame = pd.DataFrame({c.label: [""] * 3 for c in SPEC.columns})
    frame["Code"] = ["AB-1", "AB-01", "AB-1"]
    frame["Name"] = ["a", "b", "c"]
    frame["Active"] = ["y", "n", "y"]
    result = validate(SPEC, frame)
    assert [(e.row, e.column, e.rule) for e in result.errors] == [(4, "Code", "unique")]

    insert = text(f"INSERT INTO {backstop.table} (code, name, active) VALUES (:code, 'n', true)")
    conn.execute(insert, {"code": "AB-1"})
    conn.execute(insert, {"code": "AB-01"})  # a different text, though the same number
    with pytest.raises(IntegrityError) as raised:
        conn.execute(insert, {"code": "AB-1"})
    code, constraint, _ = _diag(raised.value)
    assert (code, constraint) == (UNIQUE, f"uq_{backstop.table_name}_code")


# --- good values: both accept, and the table stores what the validator typed ----------------

GOOD: list[Any] = [
    ("code", "AB-1"),
    ("code", "ZY-12345"),
    ("name", "x" * 10),
    ("name", "😀" * 10),
    ("name", "e\u0301" * 5),
    ("name", " "),  # text is kept as written: a space is a value
    ("name", "<b>'\"\\</b>"),
    ("login", "corp\\o'brien"),
    ("login", "corp\\ann"),
    ("login", None),
    ("qty", -5),
    ("qty", 100),
    ("qty", "42"),
    ("qty", None),
    ("count", INT64_MAX),
    ("count", INT64_MIN),
    ("price", Decimal("0")),
    ("price", Decimal("9999.99")),
    ("price", Decimal("1.230")),  # trailing zeros are not digits past the scale
    ("price", "12.5"),
    ("ratio", Decimal("1E-30")),
    ("ratio", Decimal("12345678901234567890123456789012345678.5")),
    ("colour", "red"),
    ("colour", "blue"),
    ("colour", None),
    ("active", False),
    ("active", "yes"),
    ("born", date(1900, 1, 1)),
    ("born", date(2099, 12, 31)),
    ("born", "2024-02-29"),
    ("due", date(1, 1, 1)),
    ("due", date(9999, 12, 31)),
    ("seen", "2000-01-01T00:00:00Z"),
    ("seen", "2000-01-01T00:30:00-01:00"),
    ("seen", SEEN_MAX),
    ("stamp", datetime(1, 1, 1, tzinfo=UTC)),
    ("stamp", "2024-06-30T23:59:59.999999-05:00"),
]


@pytest.mark.parametrize(
    ("column", "value"), [pytest.param(*g, id=f"{g[0]}-{g[1]!r}"[:50]) for g in GOOD]
)
def test_a_value_the_validator_accepts_the_table_stores_as_typed(
    conn: Connection, backstop: Backstop, column: str, value: object
) -> None:
    typed = validate_value(COLUMNS[column], value)
    assert not isinstance(typed, CellError), typed
    assert _write(conn, column, value, update=True) is None

    row = {**BASE, column: value}
    names = ", ".join(f'"{n}"' for n in row)
    stored = conn.execute(
        text(
            f"INSERT INTO {backstop.table} ({names})"
            f' VALUES ({", ".join(f":{n}" for n in row)}) RETURNING _row_id, "{column}"'
        ),
        row,
    ).one()
    assert stored[1] == typed
    assert type(stored[1]) is type(typed)
    audited = conn.execute(
        text(
            "SELECT c.kind, r.op, r.after ->> :column FROM audit.row_change r"
            " JOIN audit.changeset c ON c.id = r.changeset_id WHERE r.row_id = :row_id"
        ),
        {"column": column, "row_id": stored[0]},
    ).one()
    assert audited[:2] == ("out_of_band", "insert")  # a write outside the portal is recorded


# --- where the backstop stops ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("name", ""),
        ("ratio", "NaN"),
        ("ratio", "Infinity"),
        ("due", "infinity"),
        ("due", "10000-01-01"),
        ("stamp", "infinity"),
    ],
)
def test_values_no_rule_names_are_refused_by_the_table(
    conn: Connection, column: str, value: object
) -> None:
    assert isinstance(validate_value(COLUMNS[column], value), CellError)
    assert _write(conn, column, value, update=False) is not None


def test_an_integer_column_rounds_a_fraction_sent_as_a_number(
    conn: Connection, backstop: Backstop
) -> None:
    """PostgreSQL's assignment cast rounds a numeric into bigint before any CHECK runs, so for
    a fraction sent as a number only the validator refuses; as text both refuse."""
    verdict = validate_value(COLUMNS["qty"], Decimal("1.5"))
    assert isinstance(verdict, CellError)
    assert verdict.rule == "type"
    assert isinstance(_write(conn, "qty", "1.5", update=False), DataError)
    stored = conn.scalar(
        text(
            f"INSERT INTO {backstop.table} (code, name, active, qty)"
            " VALUES ('AB-2', 'n', true, :v) RETURNING qty"
        ),
        {"v": Decimal("1.5")},
    )
    assert stored == 2


# --- property: the two agree on every generated value ----------------------------------------


def _offsets() -> st.SearchStrategy[timezone]:
    """UTC offsets PostgreSQL takes (up to ±15:59; the validator reads up to ±23:59 and writes
    UTC, so a wider offset never reaches the table)."""
    minutes = st.integers(min_value=-(15 * 60 + 59), max_value=15 * 60 + 59)
    return minutes.map(lambda m: timezone(timedelta(minutes=m)))


AGREEMENT: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "integer-bounds": ("qty", st.integers(min_value=-10, max_value=110)),
    "integer-int64": (
        "count",
        st.one_of(
            st.integers(),
            st.integers(min_value=INT64_MAX - 3, max_value=INT64_MAX + 3),
            st.integers(min_value=INT64_MIN - 3, max_value=INT64_MIN + 3),
        ),
    ),
    "decimal-scale-bounds": (
        "price",
        st.one_of(
            *(
                st.decimals(
                    min_value=Decimal("-0.05"),
                    max_value=Decimal("10000.05"),
                    places=places,
                    allow_nan=False,
                    allow_infinity=False,
                )
                for places in range(5)
            ),
            st.decimals(Decimal("9999.9"), Decimal("10000.1"), allow_nan=False),
        ),
    ),
    "text-length": (
        "name",
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=14),
    ),
    "text-regex": (
        "login",
        st.one_of(
            st.text(st.sampled_from("az\\'/ \nAé0"), min_size=1, max_size=8),
            st.from_regex(r"[a-z]{1,3}\\[a-z']{1,3}\n?", fullmatch=True),
        ),
    ),
    "text-regex-anchors": (
        "code",
        st.one_of(
            st.text(st.sampled_from("AZ-09a \n"), min_size=1, max_size=9),
            st.from_regex(r"[A-Z]{2}-[0-9]{1,7}\n?", fullmatch=True),
        ),
    ),
    "date-bounds": ("born", st.dates()),
    "datetime-bounds": (
        "seen",
        st.datetimes(
            min_value=datetime(1999, 12, 30),
            max_value=datetime(2100, 1, 2),
            timezones=_offsets(),
        ),
    ),
}


@pytest.mark.parametrize("kind", list(AGREEMENT))
def test_validator_and_table_agree_on_every_generated_value(conn: Connection, kind: str) -> None:
    column, values = AGREEMENT[kind]
    conn.execute(text(f"DELETE FROM {conn.info['table']}"))  # no code to clash with a unique one
    seen: set[bool] = set()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(values)
    def agree(value: Any) -> None:
        validator, table = _accepted_by_both(conn, column, value)
        assert validator == table, (column, value, validate_value(COLUMNS[column], value))
        seen.add(validator)

    agree()
    assert seen == {True, False}  # both verdicts came up: the agreement is not vacuous
