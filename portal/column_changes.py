"""Adding a column to a dataset, or removing one, after its creation (DESIGN §4: "Changing a
spec later is itself an audited change").

An admin gives a new column a label, a type, whether it is required, the options of a category,
and optionally one value for every row the table has now. The column goes at the end of the
table; its other rules (unique, bounds, pattern, …) are set afterwards in the rules grid, where
the rows are checked against them first. Removing a column drops it from the table with its
values, its constraints and its indexes; the values stay in the audit log (the table as of an
earlier changeset still shows them). The last column cannot be removed.

Each change is one ``schema`` changeset whose detail holds the column (``action`` ``add_column``
or ``remove_column``) and the new spec; an added column's detail also holds the value the
existing rows were given (``fill``: the column's JSON as the capture would record it, a decimal
as its text). The table gets that value through ``ADD COLUMN … DEFAULT`` (one catalog change,
not a rewrite of every row) and the default is dropped at once, so rows inserted later get only
what they are given. No row change is captured for either change: the log's readers
(``audit.trail.dataset_state``, ``row_versions``) give every row in the table at that changeset
the added column with that value, or take the removed one out of it, so the state after every
changeset is still read from the log alone, and ``portal audit verify --data`` compares the
table with it.

The capture function is written again in the same transaction (it refuses to run on columns
other than those it was written for).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Final

from sqlalchemy import MetaData, text
from sqlalchemy.orm import Session

from audit.capture import install_capture, qualified_table
from audit.trail import removed_columns
from portal import spec as specs
from portal.actor import Actor
from portal.datasets import admin_reason, check_labels, count_rows
from portal.errors import NotFound, ValidationError
from portal.rule_changes import (
    ConstraintPlan,
    close_schema_changeset,
    locked_spec,
    open_schema_changeset,
)
from portal.spec import CellError, ColumnSpec, ColumnType, DatasetSpec, DateFormat, column_json
from portal.wording import counted

ADDABLE_TYPES: Final[tuple[ColumnType, ...]] = specs.COLUMN_TYPES
"""Every type a column can have."""
MAX_LABEL_CHARS: Final = 120
"""A new column's label at most, as a dataset's name: it heads the grid and every message."""


def add_column(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    label: str,
    column_type: ColumnType,
    required: bool = False,
    options: Sequence[str] | None = None,
    scale: int | None = None,
    date_format: DateFormat | None = None,
    fill: object = None,
    expected_version: int,
    reason: str,
) -> int:
    """Add a column at the end of the dataset's table, as one ``schema`` changeset; returns its
    id. ``fill``: the value every existing row gets (as typed in a form or a CSV cell; None or
    empty for no value). ``scale`` (decimal places, a decimal only) and ``date_format`` (a date
    only; YYYY-MM-DD is always read) cannot change afterwards, as a column's type cannot.

    Raises:
        PermissionDenied: the actor is not an admin.
        NotFound: no such dataset.
        ChangedMeanwhile: the spec changed since ``expected_version`` was read.
        ValidationError: no reason, or one over ``MAX_REASON_CHARS``; a label that is empty,
            has an invisible character or is another column's already; a category without
            options; a value for the rows the column's type or options refuse; a required
            column with no value for the rows the table has; the dataset has as many columns
            as a dataset may.
        Nothing is written.
    """
    reason = admin_reason(
        actor,
        reason,
        may_not="Only admins can add a column to a dataset.",
        say_why="Say why you are adding the column; nothing was changed.",
    )
    dataset, old = locked_spec(session, dataset_id, expected_version)
    # A removed column's name is not used again: the log's rows still hold its values under it.
    removed = removed_columns(session, dataset.id)
    column = _column(old, label, column_type, required, options, removed, scale, date_format)
    new = DatasetSpec((*old.columns, column), version=old.version + 1)
    check_labels(new, "type the label again without it")
    value = _fill_value(column, fill)
    table = qualified_table(session, dataset.table_name)
    rows = count_rows(session, table)
    if column.required and value is None and rows:
        raise ValidationError(
            f"“{column.label}” is required, so the {counted(rows, 'row')} the dataset has need a "
            "value in it: give the value they should all get, or add the column as optional "
            "and make it required once every row has one. Nothing was changed."
        )
    sql = specs.ddl_table(new, dataset.table_name, MetaData())
    plan = ConstraintPlan.of(session, specs.ddl_table(old, dataset.table_name, MetaData()), sql)
    sql_type = sql.c[column.name].type.compile(dialect=session.get_bind().dialect)
    logged = None
    if value is not None:  # as the capture would record it: to_jsonb of the column's type
        logged_text = session.scalar(
            text(f"SELECT CAST(to_jsonb(CAST(:value AS {sql_type})) AS text)"), {"value": value}
        )
        logged = json.loads(logged_text, parse_float=str)  # a decimal as its exact text
    detail = {"action": "add_column", "column": column_json(column), "fill": logged, "rows": rows}
    changeset = open_schema_changeset(session, actor, dataset, reason, detail, new)
    name = session.get_bind().dialect.identifier_preparer.quote(column.name)
    add = f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"
    if value is None:
        session.execute(text(add))
    else:
        session.execute(text(f"{add} DEFAULT CAST(:value AS {sql_type})"), {"value": value})
        session.execute(text(f"ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT"))
    plan.apply(session, table)  # its rules: NOT NULL, CHECKs, UNIQUE
    install_capture(session=session, table_name=dataset.table_name, dataset_id=dataset.id)
    return close_schema_changeset(session, dataset, new, changeset)


def _column(
    spec: DatasetSpec,
    label: str,
    column_type: ColumnType,
    required: bool,
    options: Sequence[str] | None,
    removed: Collection[str],
    scale: int | None = None,
    date_format: DateFormat | None = None,
) -> ColumnSpec:
    """The new column, its physical name one the table does not have, nor had (``removed``).

    Raises:
        ValidationError: an empty label or one taken, an unknown type, a category without
            options (or options on another type), too many columns.
    """
    label = label.strip()
    if not label:
        raise ValidationError("Give the new column a label; nothing was changed.")
    if len(label) > MAX_LABEL_CHARS:
        raise ValidationError(
            f"The label is {len(label):,} characters; use at most {MAX_LABEL_CHARS}. Nothing was "
            "changed."
        )
    if column_type not in ADDABLE_TYPES:
        raise ValidationError(
            f"Unknown type {column_type!r}: choose one of {', '.join(ADDABLE_TYPES)}."
        )
    cleaned = None
    if column_type == "category":
        cleaned = tuple(dict.fromkeys(o.strip() for o in options or () if o.strip()))
    elif options:
        raise ValidationError("Only a category column has a list of options.")
    same = specs.label_key(label)
    if taken := next((c.label for c in spec.columns if specs.label_key(c.label) == same), None):
        raise ValidationError(
            f"“{taken}” is a column of this dataset already (labels are compared ignoring case "
            "and surrounding spaces): choose another label. Nothing was changed."
        )
    taken_names = [*spec.names, *removed]
    (name,) = specs.physical_names([label], taken=taken_names, start=len(spec.columns) + 1)
    try:
        return ColumnSpec(
            label=label,
            name=name,
            type=column_type,
            required=required,
            options=cleaned,
            scale=scale,
            format=None if date_format == specs.ISO_DATE else date_format,
        )
    except ValidationError as exc:
        raise ValidationError(f"{exc} Nothing was changed.") from None


def _fill_value(column: ColumnSpec, fill: object) -> specs.Value:
    """``fill`` typed as the column's, or None for no value.

    Raises:
        ValidationError: the column's type or options refuse it.
    """
    if specs.is_missing(fill) or (isinstance(fill, str) and not fill.strip()):
        return None  # spaces typed into the form's field are no value for every row
    typed = specs.validate_value(column, fill)
    if isinstance(typed, CellError):
        raise ValidationError(
            f"The value for the existing rows does not fit “{column.label}”: {typed.message}"
            " Nothing was changed."
        )
    return typed


def remove_column(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    name: str,
    expected_version: int,
    reason: str,
) -> int:
    """Remove the column of physical name ``name`` from the dataset's table, with its values,
    constraints and indexes, as one ``schema`` changeset; returns its id.

    Raises:
        PermissionDenied: the actor is not an admin.
        NotFound: no such dataset, or no such column in it.
        ChangedMeanwhile: the spec changed since ``expected_version`` was read.
        ValidationError: no reason, or one over ``MAX_REASON_CHARS``; the dataset's last column.
        Nothing is written.
    """
    reason = admin_reason(
        actor,
        reason,
        may_not="Only admins can remove a column from a dataset.",
        say_why="Say why you are removing the column; nothing was changed.",
    )
    dataset, old = locked_spec(session, dataset_id, expected_version)
    column = next((c for c in old.columns if c.name == name), None)
    if column is None:
        raise NotFound(f"“{dataset.name}” has no column {name!r} (any more); nothing was changed.")
    if len(old.columns) == 1:
        raise ValidationError(
            f"“{column.label}” is the only column of “{dataset.name}”, and a dataset needs one. "
            "Nothing was changed."
        )
    new = DatasetSpec(tuple(c for c in old.columns if c.name != name), version=old.version + 1)
    table = qualified_table(session, dataset.table_name)
    quoted = session.get_bind().dialect.identifier_preparer.quote(name)
    with_value: int = session.execute(text(f"SELECT count({quoted}) FROM {table}")).scalar_one()
    detail = {
        "action": "remove_column",
        "column": column_json(column),
        "rows_with_value": with_value,
    }
    changeset = open_schema_changeset(session, actor, dataset, reason, detail, new)
    session.execute(text(f"ALTER TABLE {table} DROP COLUMN {quoted}"))
    install_capture(session=session, table_name=dataset.table_name, dataset_id=dataset.id)
    return close_schema_changeset(session, dataset, new, changeset)


def removed_labels(*, session: Session, dataset_id: int) -> dict[str, str]:
    """The labels of the columns removed from the dataset, by physical name (the latest
    removal of a name)."""
    return {
        name: str(column.get("label", name))
        for name, column in removed_columns(session, dataset_id).items()
    }
