"""A column's pattern is read by two engines: the validator's (RE2, through pyarrow) on upload
and on every edit, and PostgreSQL's (``~``, its ARE flavour) in the table's CHECK. Here the same
(pattern, value) goes through both: ``spec.validate_value`` and ``SELECT :value ~ :pattern``,
which is the CHECK's own test (a search, unanchored, as ``ddl_table`` writes it)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Connection, create_engine, pool, text

from portal.embedded import ClusterInfo
from portal.spec import CellError, ColumnSpec, DatasetSpec, validate, validate_value
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def pg(pg_cluster: ClusterInfo, migrated_template: str) -> Iterator[Connection]:
    """A connection as the app role to a database of the test cluster (its locale and
    encoding are the ones every dataset's table gets)."""
    name = f"t_{secrets.token_hex(6)}"
    create_database(pg_cluster, name, template=migrated_template)
    engine = create_engine(pg_cluster.url("app", name), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
        drop_database(pg_cluster, name)


def verdicts(pg: Connection, pattern: str, value: str) -> tuple[bool, bool]:
    """(the validator takes ``value`` for a text column with ``pattern``, PostgreSQL's CHECK
    would). The validator's verdict is the edit's (``validate_value``) and the upload's
    (``validate`` over a frame), which must be one."""
    column = ColumnSpec("Code", "code", "text", regex=pattern)
    edit = not isinstance(validate_value(column, value), CellError)
    upload = validate(DatasetSpec((column,)), pd.DataFrame({"Code": [value]})).ok
    assert edit == upload, (pattern, value)
    database = pg.scalar(
        text("SELECT CAST(:value AS text) ~ :pattern"), {"value": value, "pattern": pattern}
    )
    return edit, bool(database)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [("^a.b$", "a\nb"), ("^A.*Z$", "A\r\nZ"), ("^.+$", "line one\nline two"), (".", "\n")],
)
def test_a_dot_takes_a_line_break_for_the_validator_as_for_postgresql(
    pg: Connection, pattern: str, value: str
) -> None:
    """PostgreSQL's ``.`` matches any character, a line break too (``~`` is not
    newline-sensitive); RE2's did not, so a cell of two lines was refused on upload and on edit
    although the table takes it."""
    assert verdicts(pg, pattern, value) == (True, True)
