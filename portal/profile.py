"""One column's profile, for the Datasets page: how many of its cells are empty, how many
distinct values it holds, its most frequent values and, for numbers, dates and date-times, how
its values spread between the smallest and the largest.

Decisions a reader needs:

- Exact up to ``EXACT_ROWS`` rows. A larger table is profiled from a sample of about
  ``SAMPLE_ROWS`` rows (``TABLESAMPLE SYSTEM``: whole pages, ``REPEATABLE`` so the same table
  gives the same profile), and the profile says so and how many rows it read: a profile of
  10,000,000 rows must not read them all whenever someone looks. Which of the two is decided
  by counting the table's rows up to ``EXACT_ROWS`` + 1, not by the dataset's ``row_count``,
  which can miss rows written or deleted outside the portal (before migration 0016, or with
  triggers switched off).
- Every query of a profile runs under ``TIME_LIMIT``; past it the profile is refused with a
  message that says so, and the page goes on.
- The spread is at most ``BUCKETS`` ranges of equal width between the smallest and the largest
  value (``width_bucket``), counted in PostgreSQL: an integer exactly (``numeric``: an id past
  2**53 is not rounded), a decimal as ``float8``, a date as days since 2000-01-01, a date-time
  as seconds since 1970 (UTC). Ranges of whole numbers and of days hold
  whole ones (1–3, 4–6, …), so there are fewer when the values span fewer than ``BUCKETS``.
  A decimal past ``float8``'s range has no spread (said so), not an error.
- Queries are SQLAlchemy Core against the ``Table`` built from the spec; the column is one of
  the spec's (checked), every value bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pandas as pd
from sqlalchemy import (
    Float,
    FromClause,
    Numeric,
    cast,
    func,
    literal,
    select,
    tablesample,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from portal.csv_safe import value_text
from portal.datasets import dataset_spec, get_dataset
from portal.db import time_limited
from portal.errors import ValidationError
from portal.spec import ColumnSpec, dataset_table

EXACT_ROWS: Final = 200_000
SAMPLE_ROWS: Final = 100_000
TOP_VALUES: Final = 10
BUCKETS: Final = 20
TIME_LIMIT: Final = "5s"
SPREAD_TYPES: Final = frozenset({"integer", "decimal", "date", "datetime"})
_DAY_ZERO: Final = date(2000, 1, 1)
_PG_CLASS: Final = sql_table(
    "pg_class", sql_column("oid"), sql_column("reltuples"), schema="pg_catalog"
)
_SHOWN_CHARS: Final = 80  # of a long text among the most frequent values


@dataclass(frozen=True, eq=False)
class Profile:
    """What ``column_profile`` found."""

    label: str
    rows: int
    """Rows read: every row of the table, or of the sample."""
    sampled: bool
    empty: int
    distinct: int
    top: pd.DataFrame
    """The ``TOP_VALUES`` most frequent values, most frequent first: columns ``value`` (as
    the download writes it; a long one cut, each label its own: ``_labels``) and ``rows``."""
    spread: pd.DataFrame | None
    """For a number, date or date-time column with values: ``BUCKETS`` ranges, columns
    ``from``, ``to`` (as text) and ``rows``, in order. ``None`` otherwise."""
    note: str = ""
    """Why there is no spread, when there could have been one."""
    total: int = 0
    """About how many rows the table holds (``rows`` when not sampled)."""


def column_profile(*, session: Session, dataset_id: int, column: str) -> Profile:
    """The profile of ``column`` (a physical name) of the dataset.

    Raises:
        NotFound: no such dataset.
        ValidationError: the dataset has no such column, or the profile took longer than
            ``TIME_LIMIT``.
    """
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    by_name = {c.name: c for c in spec.columns}
    if column not in by_name:
        raise ValidationError(
            f"The dataset has no column {column!r}; reload the page to see its columns."
        )
    c = by_name[column]
    table = dataset_table(spec, dataset.table_name)
    refusal = (
        f"The profile of “{c.label}” took longer than {TIME_LIMIT} and was stopped; the rows "
        "themselves can still be filtered and sorted above."
    )
    with time_limited(session, TIME_LIMIT, refusal):
        # Whether to sample, from the table itself: its row_count can miss rows written outside
        # the portal, and a table it says is large but was emptied there gave a sample of none.
        present = session.execute(
            select(func.count()).select_from(
                select(literal(1)).select_from(table).limit(EXACT_ROWS + 1).subquery()
            )
        ).scalar_one()
        sampled = present > EXACT_ROWS
        total = present
        source: FromClause = table
        if sampled:
            # About how many rows: the larger of row_count and PostgreSQL's estimate (rows
            # added outside the portal are in the estimate once autovacuum has analysed them).
            estimate = session.execute(
                select(_PG_CLASS.c.reltuples).where(
                    _PG_CLASS.c.oid == func.to_regclass(table.fullname)
                )
            ).scalar_one_or_none()
            total = max(dataset.row_count, present, int(estimate or 0))
            percent = min(100.0, 100.0 * SAMPLE_ROWS / total)
            source = tablesample(table, func.system(percent), name="sample", seed=literal(0))
        profile = replace(_profile(session, source, c, sampled), total=total)
    return profile


def _profile(session: Session, source: FromClause, c: ColumnSpec, sampled: bool) -> Profile:
    col = source.c[c.name]
    rows, filled, distinct = session.execute(
        select(func.count(), func.count(col), func.count(col.distinct())).select_from(source)
    ).one()
    top = session.execute(
        select(col, func.count().label("n"))
        .select_from(source)
        .where(col.is_not(None))
        .group_by(col)
        .order_by(func.count().desc(), col)
        .limit(TOP_VALUES)
    ).all()
    spread, note = (None, "")
    if c.type in SPREAD_TYPES and filled:
        spread, note = _spread(session, source, c)
    return Profile(
        label=c.label,
        rows=int(rows),
        sampled=sampled,
        empty=int(rows) - int(filled),
        distinct=int(distinct),
        top=pd.DataFrame(
            {
                "value": pd.array(_labels([v for v, _ in top]), dtype="string"),
                "rows": pd.array([int(n) for _, n in top], dtype="int64"),
            }
        ),
        spread=spread,
        note=note,
    )


def _labels(values: list[Any]) -> list[str]:
    """The values as the chart labels them, each its own: a long one is cut to ``_SHOWN_CHARS``
    at its end or, when that makes it look like another (URLs, paths), in its middle, so each
    value is its own bar; labels still alike are numbered."""
    texts = [v if isinstance(v, str) else value_text(v) for v in values]
    cut = [_shown(t) for t in texts]
    labels = [
        t[: _SHOWN_CHARS // 2] + "…" + t[-(_SHOWN_CHARS - 1 - _SHOWN_CHARS // 2) :]
        if cut.count(label) > 1 and len(t) > _SHOWN_CHARS
        else label
        for t, label in zip(texts, cut, strict=True)
    ]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _spread(session: Session, source: FromClause, c: ColumnSpec) -> tuple[pd.DataFrame | None, str]:
    col = source.c[c.name]
    # Whole numbers and days are counted as numeric, exactly: an id past 2**53 is not rounded.
    if c.type == "integer":
        measure: Any = cast(col, Numeric)
    elif c.type == "date":
        measure = cast(col - literal(_DAY_ZERO), Numeric)
    elif c.type == "datetime":
        measure = cast(func.extract("epoch", col), Float)
    else:
        measure = cast(col, Float)
    try:
        with session.begin_nested():  # a decimal past float8's range fails only this part
            low, high = session.execute(
                select(func.min(measure), func.max(measure)).select_from(source)
            ).one()
            low, high = (int(low), int(high)) if c.type in _WHOLE else (float(low), float(high))
            start, width, count = _ranges(c, low, high)
            bounds: tuple[Any, Any] = (start, start + width * count)
            if c.type in _WHOLE:
                bounds = (literal(bounds[0], Numeric), literal(bounds[1], Numeric))
            bucket = func.width_bucket(measure, *bounds, count)
            counted: dict[int, int] = dict(
                session.execute(
                    select(bucket, func.count())
                    .select_from(source)
                    .where(col.is_not(None))
                    .group_by(bucket)
                ).all()
            )
    except DBAPIError as exc:
        # numeric_value_out_of_range; or a range too narrow for float8 at that size (one
        # value of 20 digits everywhere: its bounds came out equal, which width_bucket refuses)
        if getattr(exc.orig, "pgcode", None) in ("22003", "2201G"):
            return None, "Its values are too large to draw their spread."
        raise
    # width_bucket puts a value on the upper bound (the largest, in a range of decimals or
    # date-times) in the bucket after the last.
    counted[count] = counted.get(count, 0) + counted.pop(count + 1, 0)
    starts = [start + width * b for b in range(count)]
    if c.type in _WHOLE:  # a range of whole numbers or days ends at its last one, the last
        ends = [min(first + width - 1, high) for first in starts]  # at the largest value
    else:
        ends = [min(first + width, high) for first in starts[:-1]] + [high]
    starts[0] = low  # the first range is labelled by the smallest value, where the values begin
    froms, tos = _edges(c, starts, ends)
    return (
        pd.DataFrame(
            {
                "from": pd.array(froms, dtype="string"),
                "to": pd.array(tos, dtype="string"),
                "rows": pd.array([counted.get(b, 0) for b in range(1, count + 1)], "int64"),
            }
        ),
        "",
    )


_WHOLE: Final = frozenset({"integer", "date"})


def _ranges(c: ColumnSpec, low: float, high: float) -> tuple[float, float, int]:
    """Where the ranges covering ``low`` to ``high`` start, their width and their number: at
    most ``BUCKETS`` (one more for decimals); of whole numbers (or days) at least one wide, so
    each holds whole values; of decimals a round width (1, 2, 2.5 or 5 times a power of ten,
    not below the column's last decimal) from a multiple of it, so that they start at numbers
    a person reads at a glance (5, 7.5, 10 rather than 5.9855, 10.631)."""
    if c.type in _WHOLE:  # ints, exactly
        values = int(high) - int(low) + 1
        width = max(1, -(-values // BUCKETS))
        return low, width, -(-values // width)
    if high == low:
        return low, 1.0, 1
    if c.type != "decimal":
        return low, (high - low) / BUCKETS, BUCKETS
    step = _round_width((high - low) / BUCKETS)
    if c.scale is not None:
        step = max(step, 10.0**-c.scale)
    start = math.floor(low / step) * step
    if start > low:  # float8 arithmetic, one step too far: the smallest would be left out
        start -= step
    return start, step, max(1, math.ceil((high - start) / step - 1e-9))


def _round_width(raw: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten not below ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= raw * (1 - 1e-12))


_LAST_MOMENT: Final = datetime.max.replace(tzinfo=UTC)
_DATETIME_FORMATS: Final = ("minutes", "seconds", "microseconds")  # isoformat's timespec


def _edges(c: ColumnSpec, starts: list[float], ends: list[float]) -> tuple[list[str], list[str]]:
    """The ranges' edges as text, in the column's terms: decimals and date-times as finely as
    it takes for no two ranges to start at the same label (a million and some tenths, seconds
    of one minute), so each bar of the chart is one range."""
    if c.type in _WHOLE:
        return [_edge(c, x) for x in starts], [_edge(c, x) for x in ends]
    fines: tuple[str | int, ...] = _DATETIME_FORMATS if c.type == "datetime" else (6, 9, 12, 15, 17)
    for fine in fines:
        labels = [_edge(c, x, fine) for x in starts]
        if len(set(labels)) == len(labels):
            break
    tos = [_edge(c, x, fine) for x in ends]
    if c.type == "decimal":  # the smallest and the largest as they are: 12,345.67, not 12,345.7
        labels[0], tos[-1] = _shortest(starts[0]), _shortest(ends[-1])
    return labels, tos


def _shortest(x: float) -> str:
    text = f"{x:,}"  # the shortest text that reads back as x
    return text.removesuffix(".0")


def _edge(c: ColumnSpec, x: float, fine: str | int = 6) -> str:
    """A range's edge as text, in the column's terms (``fine``: a date-time's timespec, a
    decimal's significant digits)."""
    if c.type == "date":
        return (_DAY_ZERO + timedelta(days=x)).isoformat()
    if c.type == "datetime":
        # 9999-12-31 23:59:59.999999 as a float8 rounds up to a moment past datetime's range
        moment = _LAST_MOMENT if x >= _LAST_MOMENT.timestamp() else datetime.fromtimestamp(x, UTC)
        # isoformat, not strftime: %Y writes the year 1 as "1", not "0001" as a date is
        return moment.replace(tzinfo=None).isoformat(" ", str(fine))
    if c.type == "integer":
        return f"{int(x):,}"
    return f"{x:,.{fine}g}"
