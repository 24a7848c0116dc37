"""Browsing datasets read-only: the list, one page of a dataset's rows, and the CSV export.

    list_datasets()   every dataset with its size, owner and newest sealed change (when, by whom)
    open_dataset()    one dataset's name, description and spec, for the page to lay out
    read_page()       one page of rows, filtered and sorted in PostgreSQL, and the matching total
    export_csv()      every matching row streamed into a formula-safe CSV, recorded as an event

Decisions a reader needs:

- Paging is ``LIMIT``/``OFFSET`` over a deterministic order (the chosen column, then
  ``_row_id``), with a total counted up to ``COUNT_CAP`` rows past the page and estimated
  beyond (``portal.estimates``). It allows jumping to any page
  number under any sort, which keyset paging cannot without an index per sortable column; its
  cost is a scan past the skipped rows, so deep pages of a very large table are slower than the
  first ones. Keyset paging on ``(sort value, _row_id)`` can replace it behind ``read_page``
  without changing its callers.
- Queries are SQLAlchemy Core against the ``Table`` built from the dataset's spec
  (``portal.spec.ddl_table``): identifiers are quoted by SQLAlchemy and every value is bound.
- A filter is one column and a text: ``contains`` is a case-insensitive substring match on the
  value as text (``%`` and ``_`` match themselves; a date-time as text in UTC, as shown,
  whatever the database session's time zone); ``equals`` compares the typed value (the text
  is read as the column's type, so ``007`` equals the integer 7), exactly for text. ``equals``
  with an empty text finds the missing values (an empty cell is a missing value everywhere).
- The export reads through a server-side cursor in chunks, so the database never sends the whole
  table at once; cells are formatted as the upload reads them back (ISO dates, UTC datetimes,
  ``true``/``false``), every cell that could be read as a formula is neutralised
  (``portal.csv_safe``), and the file is UTF-8 with a byte-order mark so spreadsheets read it as
  UTF-8. Rows come in ``_row_id`` order. The export event is written in the same transaction as
  the read, so an export the database served is never unrecorded.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, get_args

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Text,
    UnaryExpression,
    and_,
    cast,
    func,
    select,
    true,
)
from sqlalchemy.orm import Session

from audit.events import record_event
from portal import estimates, indexes
from portal.actor import Actor
from portal.config import get_settings
from portal.csv_safe import (
    check_download_size,
    file_stem,
    neutralise,
    neutralise_row,
    value_text,
)
from portal.datasets import dataset_spec, get_dataset
from portal.errors import PermissionDenied, ValidationError
from portal.models import Changeset, Dataset, User
from portal.spec import (
    ROW_ID,
    CellError,
    ColumnSpec,
    DatasetSpec,
    browser_rounds,
    dataset_table,
    type_only,
    validate_value,
    without_file_advice,
)

FilterOp: TypeAlias = Literal["contains", "equals", "range", "empty"]
FILTER_OPS: Final[tuple[FilterOp, ...]] = get_args(FilterOp)
FILTER_HELP: Final = (
    "contains: anywhere in the value, ignoring case. equals: the whole value, read as the "
    "column's type. range: from the first value to the second (either end may be left open). "
    "empty: the cells with no value."
)
"""What each of ``FILTER_OPS`` keeps, for the pages' "Match" choice."""
PAGE_SIZES: Final = (50, 100, 500, 1000)
MAX_PAGE_SIZE: Final = max(PAGE_SIZES)
_PAST_ANY_END: Final = 2**62 // MAX_PAGE_SIZE
"""A page past the end of any table, whose offset PostgreSQL still takes (a page number of 2**62
made an offset past bigint's range: a DataError, not the last page)."""
COUNT_CAP: Final = 1_000
"""``read_page`` counts matching rows up to this many past the page, never further; past that
the total is PostgreSQL's estimate (see ``portal.estimates``)."""
EXPORT_CHUNK_ROWS: Final = 5_000
ROW_ID_LABEL: Final = "Row id"
"""``_row_id`` as the pages name it, in a filter's words and messages."""


@dataclass(frozen=True)
class DatasetListing:
    """One dataset in the list; ``last_change_*`` are ``None`` before any sealed changeset."""

    id: int
    name: str
    description: str
    owner: str
    owner_display_name: str
    row_count: int
    columns: int
    last_change_at: datetime | None
    last_change_by: str | None


@dataclass(frozen=True)
class DatasetInfo:
    """What the page needs to lay out an opened dataset."""

    id: int
    name: str
    description: str
    owner: str
    row_count: int
    spec: DatasetSpec
    reason_required: bool = True
    spec_version: int = 1  # what a change of its rules expects (rule_changes.change_rules)


@dataclass(frozen=True)
class RowFilter:
    """Rows whose ``column`` (a physical name, or ``_row_id``) ``op`` ``value``.

    ``range`` keeps values from ``value`` to ``upper`` (both included; an empty end is open; a
    day alone as the upper end of a date-time range includes the whole day);
    ``empty`` keeps missing values and ignores ``value``.
    """

    column: str
    op: FilterOp
    value: str
    upper: str = ""

    def describe(self, spec: DatasetSpec) -> str:
        """The filter in words, with the column's label: ``Name contains “ann”``."""
        label = _label(spec, self.column)
        if self.op == "empty" or (self.op == "equals" and self.value == ""):
            return f"{label} is empty"
        if self.op == "range":
            low, high = self.value or "…", self.upper or "…"
            return f"{label} from “{low}” to “{high}”" if self.value or self.upper else "no filter"
        if self.value == "":
            return "no filter"
        return f"{label} {self.op} “{self.value}”"

    @classmethod
    def asked(cls, column: str | None, op: FilterOp, value: str, upper: str) -> RowFilter | None:
        """The filter a page's fields ask for — a column, a match, "Value (or from)" and "To
        (range only)" — or None when they ask for nothing: no column, or no text to match
        (``empty`` needs none and ignores it; ``upper`` counts for a ``range`` only)."""
        value = "" if op == "empty" else value
        upper = upper if op == "range" else ""
        if column is None or (op != "empty" and not (value or upper)):
            return None
        return cls(column, op, value, upper)

    def to_json(self) -> dict[str, str]:
        data = {"column": self.column, "op": self.op, "value": self.value}
        return data | ({"upper": self.upper} if self.op == "range" else {})


@dataclass(frozen=True)
class Sort:
    column: str = ROW_ID
    descending: bool = False

    def to_json(self) -> dict[str, str | bool] | None:
        """As an export event records it; None for the default order (``_row_id`` ascending)."""
        return None if self == Sort() else {"column": self.column, "descending": self.descending}


@dataclass(frozen=True, eq=False)
class RowsPage:
    """One page of rows and where it lies among the matching ones.

    ``rows`` has ``_row_id`` then the spec's columns (physical names), Arrow-backed; ``page`` is
    the page actually returned (a page past the end is read as the last one).
    """

    rows: pd.DataFrame
    total: int
    page: int
    page_size: int
    indexing: tuple[str, ...] = ()
    """Columns (physical names) whose index is still being built for this read's sort or
    filter (``portal.indexes``): the read was slower than it will be."""
    total_is_exact: bool = True
    """False when ``total`` is PostgreSQL's estimate (far more rows match than were counted)."""
    as_text: tuple[str, ...] = ()
    """Number columns (physical names) whose values ``rows`` holds as text, exactly: one of them
    is a value a browser's grid would show rounded (``portal.spec.browser_shows``), such as a
    whole number past 2**53 or a decimal of more than 15 digits."""

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    @property
    def total_text(self) -> str:
        """ "1,234", or "about 1,200,000" for an estimate."""
        return estimates.total_text(self.total, self.total_is_exact)

    @property
    def pages_text(self) -> str:
        return estimates.total_text(self.pages, self.total_is_exact)

    @property
    def first_row(self) -> int:
        """The 1-based position of the page's first row among the matching rows (0 if none)."""
        return (self.page - 1) * self.page_size + 1 if len(self.rows) else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.rows) - 1 if len(self.rows) else 0


@dataclass(frozen=True, eq=False)
class CsvExport:
    """A prepared CSV download and the audit event that records it."""

    data: bytes
    file_name: str
    rows: int
    event_id: int


@dataclass(frozen=True)
class ExportKey:
    """What a prepared CSV file is for (the Datasets page keeps it with the file): the rows and
    order asked for, as of the dataset's newest change; a file prepared before a later change
    (an edit on the Edit page meanwhile, say) holds rows the dataset no longer has."""

    dataset_id: int
    row_filter: RowFilter | None
    order: Sort
    as_of: datetime | None

    def same_rows(self, other: ExportKey) -> bool:
        """The same rows and order asked for, whatever changed since."""
        return replace(self, as_of=None) == replace(other, as_of=None)


# ---------------------------------------------------------------------------------------------
# The list
# ---------------------------------------------------------------------------------------------


def list_datasets(*, session: Session) -> list[DatasetListing]:
    """Every dataset by name, with its newest sealed changeset (when, and who by)."""
    last_change = (
        select(Changeset.committed_at, Changeset.actor_display_name)
        .where(Changeset.dataset_id == Dataset.id, Changeset.committed_at.is_not(None))
        .order_by(Changeset.committed_at.desc(), Changeset.id.desc())
        .limit(1)
        .lateral("last_change")
    )
    stmt = (
        select(
            Dataset.id,
            Dataset.name,
            Dataset.description,
            Dataset.owner,
            func.coalesce(User.display_name, Dataset.owner),
            Dataset.row_count,
            func.coalesce(func.jsonb_array_length(Dataset.spec["columns"]), 0),
            last_change.c.committed_at,
            last_change.c.actor_display_name,
        )
        .outerjoin(User, User.username == Dataset.owner)
        .outerjoin(last_change, true())
        .order_by(func.lower(Dataset.name), Dataset.id)
    )
    return [DatasetListing(*row) for row in session.execute(stmt)]


def open_dataset(*, session: Session, dataset_id: int) -> DatasetInfo:
    """Raises: NotFound."""
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    return DatasetInfo(
        dataset.id,
        dataset.name,
        dataset.description,
        dataset.owner,
        dataset.row_count,
        dataset_spec(dataset),
        dataset.reason_required,
        dataset.spec_version,
    )


# ---------------------------------------------------------------------------------------------
# One page of rows
# ---------------------------------------------------------------------------------------------


def read_page(
    *,
    session: Session,
    dataset_id: int,
    page: int = 1,
    page_size: int = 100,
    sort: Sort | None = None,
    row_filter: RowFilter | None = None,
) -> RowsPage:
    """Page ``page`` (from 1) of the rows matching ``row_filter``, in ``sort`` order, and how
    many rows match. A page past the end returns the last page.

    The total is exact when the page is the last one or few rows follow it (counted up to
    ``COUNT_CAP`` past the page); on a large table it is PostgreSQL's estimate, as on the Edit
    page (``portal.estimates.matching_total``): an exact count of 10,000,000 rows costs
    seconds on every view.

    Raises:
        NotFound: no such dataset.
        ValidationError: an unknown column, a page size outside 1 to ``MAX_PAGE_SIZE``, or an
            ``equals`` text that is not a value of the column's type.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"Choose a page size between 1 and {MAX_PAGE_SIZE}.")
    sort = sort or Sort()
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    filters = [row_filter] if row_filter else []
    want = indexes.wanted(spec, dataset.row_count, sort, filters)
    building = indexes.ensure(session, dataset.table_name, want) if want else []
    table = dataset_table(spec, dataset.table_name)
    where = [condition(table, spec, f) for f in filters]
    ordered = _rows_select(table, spec).where(*where).order_by(*_order(table, spec, sort))
    page = min(max(1, page), _PAST_ANY_END)
    # One row more than the page: whether rows follow, without counting them.
    rows = session.execute(ordered.limit(page_size + 1).offset((page - 1) * page_size)).all()
    if not rows and page > 1:  # past the end (rows went away, or an estimate ran high)
        total = int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)
        page = max(1, math.ceil(total / page_size))
        rows = session.execute(ordered.limit(page_size + 1).offset((page - 1) * page_size)).all()
    total, exact = estimates.matching_total(
        session=session,
        table=table,
        spec=spec,
        filters=filters,
        where=where,
        row_count=dataset.row_count,
        start=(page - 1) * page_size,
        found=min(len(rows), page_size),
        has_more=len(rows) > page_size,
        cap=page * page_size + COUNT_CAP,
    )
    frame, as_text = _frame(spec, rows[:page_size])
    return RowsPage(frame, total, page, page_size, tuple(building), exact, as_text)


def _order(table: Table, spec: DatasetSpec, sort: Sort) -> list[UnaryExpression[Any]]:
    """ORDER BY ``sort``'s column, ties by ``_row_id`` (the same order on every read)."""
    key = table.c[known_column(spec, sort.column)]
    keys = [key] if key.name == ROW_ID else [key, table.c[ROW_ID]]
    return [k.desc() if sort.descending else k.asc() for k in keys]


def _rows_select(table: Table, spec: DatasetSpec) -> Select[Any]:
    return select(table.c[ROW_ID], *(table.c[name] for name in spec.names))


def known_column(spec: DatasetSpec, name: str) -> str:
    if name != ROW_ID and name not in spec.names:
        raise ValidationError(
            f"The dataset has no column {name!r}; reload the page to see its columns."
        )
    return name


def condition(table: Table, spec: DatasetSpec, row_filter: RowFilter | None) -> ColumnElement[bool]:
    if row_filter is None:
        return true()
    column = table.c[known_column(spec, row_filter.column)]
    if row_filter.op == "contains":
        if row_filter.value == "":
            return true()
        shown: ColumnElement[Any] = column
        if _column_type(spec, row_filter.column) == "datetime":  # as shown: in UTC, whatever
            shown = func.timezone("UTC", column)  # the session's time zone
        return cast(shown, Text).icontains(row_filter.value, autoescape=True)
    if row_filter.op == "empty" or (row_filter.op == "equals" and row_filter.value == ""):
        return column.is_(None)
    if row_filter.op == "range":
        bounds: list[ColumnElement[bool]] = []
        low = typed_filter_value(spec, row_filter) if row_filter.value != "" else None
        if low is not None:
            bounds.append(column >= low)
        if row_filter.upper != "":
            upper = RowFilter(row_filter.column, "range", row_filter.upper)
            high = typed_filter_value(spec, upper)
            whole_day = _whole_day(spec, upper)
            # Text compares in the database's collation, which Python's order is not.
            typed = _column_type(spec, row_filter.column) not in ("text", "category")
            if (
                typed
                and low is not None
                and (low.date() > high.date() if whole_day else low > high)
            ):
                raise ValidationError(
                    f"Filter on “{_label(spec, row_filter.column)}”: the range starts after it "
                    f"ends (from “{row_filter.value}” to “{row_filter.upper}”): swap the two ends."
                )
            if not whole_day:
                bounds.append(column <= high)
            elif high.date() < date.max:  # to the end of that day, not its midnight
                bounds.append(column < high + timedelta(days=1))
        return and_(true(), *bounds)
    if row_filter.op != "equals":
        raise ValidationError(f"Filter with one of: {', '.join(FILTER_OPS)}.")
    equals: ColumnElement[bool] = column == typed_filter_value(spec, row_filter)
    return equals


_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def filter_problem(spec: DatasetSpec, row_filter: RowFilter) -> str | None:
    """What is wrong with ``row_filter`` on a dataset of ``spec`` (a value of the wrong type, a
    range that ends before it starts, a column it does not have), said before it is applied;
    None if nothing."""
    try:
        condition(dataset_table(spec, "filter_check"), spec, row_filter)
    except ValidationError as exc:
        return str(exc)
    return None


def shown_labels(spec: DatasetSpec) -> dict[str, str]:
    """``_row_id`` and each column (physical names) as the pages name them: ``Row id``, then
    each column's label, but a column labelled ``Row id`` (a file's own row numbers) is
    ``Row id (column)``, so that neither hides the other in a list of columns or a filter's
    words (as ``trail_views.frame_names`` does for the History page's frames)."""
    shown = {ROW_ID: ROW_ID_LABEL}
    for c in spec.columns:
        label = c.label
        while label in shown.values():
            label += " (column)"
        shown[c.name] = label
    return shown


def _label(spec: DatasetSpec, name: str) -> str:
    """The column's label, as the pages show it (``shown_labels``)."""
    return shown_labels(spec).get(name, name)


def _column_type(spec: DatasetSpec, name: str) -> str:
    return next((c.type for c in spec.columns if c.name == name), "integer")  # _row_id


def _whole_day(spec: DatasetSpec, bound: RowFilter) -> bool:
    """Whether ``bound`` is a day alone on a date-time column: a range up to it means the whole
    day (the value it is read as is that day's midnight)."""
    return _column_type(spec, bound.column) == "datetime" and bool(
        _DAY.fullmatch(bound.value.strip())
    )


def typed_filter_value(spec: DatasetSpec, row_filter: RowFilter) -> Any:
    """The filter text read as a value of its column's type (text and category: as written;
    a range bound on them compares as text)."""
    if row_filter.column == ROW_ID:
        column = ColumnSpec(label=ROW_ID_LABEL, name="row_id", type="integer")
    else:
        found = next(c for c in spec.columns if c.name == row_filter.column)
        if found.type in ("text", "category"):
            return row_filter.value
        # The type alone: a value breaking a rule (min, scale...) simply matches no row.
        column = type_only(found)
    typed = validate_value(column, row_filter.value)
    if isinstance(typed, CellError):
        said = without_file_advice(typed.message)  # no file is read here
        raise ValidationError(f"Filter on “{_label(spec, row_filter.column)}”: {said}")
    return typed


def _frame(
    spec: DatasetSpec, rows: Sequence[Sequence[Any]]
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Rows as an Arrow-backed frame: ``_row_id`` then the spec's columns by physical name; and
    the number columns given as text (``RowsPage.as_text``)."""
    values = list(zip(*rows, strict=True)) if rows else [()] * (len(spec.columns) + 1)
    arrays = {ROW_ID: pa.array(values[0], pa.int64())}
    as_text = []
    for c, column_values in zip(spec.columns, values[1:], strict=True):
        cells = list(column_values)
        if browser_rounds(c, cells):
            arrays[c.name] = pa.array(
                [value_text(v) if v is not None else None for v in cells], pa.large_string()
            )
            as_text.append(c.name)
        else:
            arrays[c.name] = _arrow(c, cells)
    frame: pd.DataFrame = pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)
    return frame, tuple(as_text)


_ARROW_TYPES: Final[dict[str, Any]] = {
    "text": pa.large_string(),
    "category": pa.large_string(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def _arrow(c: ColumnSpec, values: list[Any]) -> Any:
    if c.type != "decimal":
        return pa.array(values, _ARROW_TYPES[c.type])
    try:  # the precision and scale the values need (numeric has no typmod)
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [value_text(v) if v is not None else None for v in values], pa.large_string()
        )
    return array if not pa.types.is_null(array.type) else pa.array(values, pa.decimal128(38, 0))


# ---------------------------------------------------------------------------------------------
# The CSV export
# ---------------------------------------------------------------------------------------------


def export_csv(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    row_filter: RowFilter | None = None,
    sort: Sort | None = None,
    chunk_rows: int = EXPORT_CHUNK_ROWS,
    max_mb: int | None = None,
) -> CsvExport:
    """Every row matching ``row_filter``, in ``sort`` order as the pages show them (default:
    ``_row_id``), as a formula-safe CSV (header: the column labels), and an ``export`` event
    naming who, which dataset, the filter, the order and the row count.

    The rows are read ``chunk_rows`` at a time through a server-side cursor, and the file may
    grow to ``max_mb`` (default: the upload limit, so it can be uploaded back). The event is
    recorded here, when the file is prepared: the page cannot know whether the browser saved it.

    Raises:
        PermissionDenied: the actor has no role that may read datasets.
        NotFound: no such dataset.
        ValidationError: as ``read_page``'s filter, or a file larger than ``max_mb``.
    """
    if not actor.can("viewer"):
        raise PermissionDenied("Only signed-in people with a role can download datasets.")
    sort = sort or Sort()
    limit = max_mb or get_settings().max_upload_mb
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    out = io.BytesIO()
    rows = 0
    chunks = _csv_chunks(session, dataset.table_name, spec, row_filter, sort, chunk_rows)
    for chunk, count in chunks:
        out.write(chunk)
        rows += count
        check_download_size(out.tell(), rows, limit)
    event_id = record_event(
        session=session,
        kind="export",
        actor_username=actor.username,
        target=f"dataset:{dataset.id}",
        detail={
            "dataset_id": dataset.id,
            "dataset": dataset.name,
            "format": "csv",
            "filter": row_filter.to_json() if row_filter else None,
            "sort": sort.to_json(),
            "rows": rows,
        },
    )
    name = file_stem(dataset.name) + ("-filtered" if row_filter else "")
    return CsvExport(out.getvalue(), f"{name}.csv", rows, event_id)


def _csv_chunks(
    session: Session,
    table_name: str,
    spec: DatasetSpec,
    row_filter: RowFilter | None,
    sort: Sort,
    chunk_rows: int,
) -> Iterator[tuple[bytes, int]]:
    """The CSV as encoded pieces (the header with the byte-order mark, then one per chunk of
    rows) and how many rows each piece holds."""
    table = dataset_table(spec, table_name)
    stmt = (
        select(*(table.c[name] for name in spec.names))
        .where(condition(table, spec, row_filter))
        .order_by(*_order(table, spec, sort))
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(neutralise_row(c.label for c in spec.columns))
    yield buffer.getvalue().encode("utf-8-sig"), 0
    result = session.execute(stmt, execution_options={"yield_per": chunk_rows})
    for partition in result.partitions():
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_csv_cell(v) for v in row] for row in partition)
        yield buffer.getvalue().encode("utf-8"), len(partition)


def _csv_cell(value: Any) -> str:
    return "" if value is None else neutralise(value_text(value))
