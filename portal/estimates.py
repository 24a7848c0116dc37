"""How many rows a filtered read will match, without reading them: the "about N" totals of the
Edit window and the Datasets page past their counting caps.

    estimated_rows()   the estimate for a set of filters on a dataset table
    matching_total()   a paged read's total: exact when cheap to know, else the estimate
    total_text()       such a total for people: "1,234" or "about 1,200,000"

An ``equals`` or ``empty`` filter (the common case, and the one read most often: every page of
a filter asks again) is estimated here in Python from the column's ``pg_stats`` row — its
null fraction, distinct count and most common values with their frequencies — by the rule
PostgreSQL's planner itself applies (``var_eq_const``), times the dataset's exact row count.
The statistics of a column are read once and kept for ``STATS_RECHECK_S`` (they change only
when the table is analysed), so such an estimate costs no query at all; an EXPLAIN on every
read cost as much as a tenth of the read. Any other filter (``range``, ``contains``), a column
never analysed, or several filters of which one is not an equality, falls back to one
``EXPLAIN``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from portal.spec import DATA_SCHEMA, ROW_ID, SQL_TYPE_NAMES, ColumnType, DatasetSpec

if TYPE_CHECKING:  # portal.browse reads through this module
    from portal.browse import RowFilter

STATS_RECHECK_S = 60.0
"""How long a column's statistics are used before ``pg_stats`` is read again."""


@dataclass(frozen=True)
class ColumnStats:
    """One column's planner statistics, its most common values typed as the column's."""

    null_frac: float
    n_distinct: float  # negative: minus the fraction of rows that are distinct
    common: dict[Any, float]  # most common value -> its fraction of the rows

    def equals_fraction(self, value: Any, rows: int) -> float:
        """The fraction of rows holding ``value`` (``None``: the empty ones)."""
        if value is None:
            return self.null_frac
        if value in self.common:
            return self.common[value]
        distinct = self.n_distinct if self.n_distinct > 0 else -self.n_distinct * rows
        others = distinct - len(self.common)
        if others < 1:
            return 0.0
        rest = max(0.0, 1.0 - self.null_frac - sum(self.common.values()))
        # As the planner does: a value not among the common ones is no commoner than they are.
        return min(rest / others, min(self.common.values(), default=1.0))


_lock = threading.Lock()
# Per engine (one per database): (table, column) -> (statistics or None if none, read when).
_stats: weakref.WeakKeyDictionary[
    Engine, dict[tuple[str, str], tuple[ColumnStats | None, float]]
] = weakref.WeakKeyDictionary()


def column_stats(
    session: Session, table_name: str, column: str, column_type: ColumnType
) -> ColumnStats | None:
    """The column's statistics (kept ``STATS_RECHECK_S``), or None if it was never analysed."""
    engine = session.get_bind().engine
    now = time.monotonic()
    with _lock:
        kept = _stats.setdefault(engine, {}).get((table_name, column))
    if kept is not None and now - kept[1] < STATS_RECHECK_S:
        return kept[0]
    # The array of common values is anyarray: through text to the column's own array type.
    row = session.execute(
        text(
            "SELECT null_frac, n_distinct,"
            f" CAST(CAST(most_common_vals AS text) AS {SQL_TYPE_NAMES[column_type]}[]) AS vals,"
            " most_common_freqs AS freqs"
            " FROM pg_stats WHERE schemaname = :schema AND tablename = :table"
            " AND attname = :column AND NOT inherited"
        ),
        {"schema": DATA_SCHEMA, "table": table_name, "column": column},
    ).one_or_none()
    stats = (
        None
        if row is None
        else ColumnStats(
            float(row.null_frac),
            float(row.n_distinct),
            dict(zip(row.vals or (), map(float, row.freqs or ()), strict=True)),
        )
    )
    with _lock:
        _stats[engine][(table_name, column)] = (stats, now)
    return stats


def estimated_rows(
    *,
    session: Session,
    table: Any,
    spec: DatasetSpec,
    filters: Sequence[RowFilter],
    where: Sequence[Any],
    row_count: int,
) -> int:
    """How many of the table's ``row_count`` rows match ``filters`` (compiled as ``where``):
    from the columns' statistics for equalities, else the planner's estimate of one EXPLAIN.
    Like the planner: at least one row when anything is filtered."""
    from portal.browse import typed_filter_value  # (it imports this module)

    if not where:
        return row_count
    fraction = 1.0
    for f in filters:
        if f.op not in ("equals", "empty"):
            return _explained(session, table, where)
        if f.column == ROW_ID:
            fraction *= 1.0 / max(row_count, 1) if f.op == "equals" and f.value != "" else 0.0
            continue
        column = next(c for c in spec.columns if c.name == f.column)
        stats = column_stats(session, table.name, column.name, column.type)
        if stats is None:
            return _explained(session, table, where)
        empty = f.op == "empty" or f.value == ""
        fraction *= stats.equals_fraction(None if empty else typed_filter_value(spec, f), row_count)
    return max(1, round(fraction * row_count))


def _explained(session: Session, table: Any, where: Sequence[Any]) -> int:
    query = select(table.c[ROW_ID]).where(*where).compile(dialect=session.get_bind().dialect)
    plan = (
        session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {query}", dict(query.params))
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])


def matching_total(
    *,
    session: Session,
    table: Any,
    spec: DatasetSpec,
    filters: Sequence[RowFilter],
    where: Sequence[Any],
    row_count: int,
    start: int,
    found: int,
    has_more: bool,
    cap: int,
) -> tuple[int, bool]:
    """``(total, exact)`` of the rows matching ``where``, for a read that returned ``found``
    rows from position ``start`` and knows whether more follow (it read one row more).

    The last window gives the total with no count. Otherwise the rows are counted up to
    ``cap``, unless PostgreSQL expects more than four times that many (then nothing is
    counted); past the cap the total is the estimate, never below what was counted.
    """
    if not has_more and (found or start == 0):  # the last window: its end is the total
        return start + found, True
    estimate = estimated_rows(
        session=session, table=table, spec=spec, filters=filters, where=where, row_count=row_count
    )
    if estimate > 4 * cap:
        return estimate, False  # far more than a count would reach: not worth one
    capped = select(table.c[ROW_ID]).where(*where).limit(cap + 1).subquery()
    total = int(session.scalar(select(func.count()).select_from(capped)) or 0)
    if found:  # never fewer than the read saw (rows deleted since, unseen by the count's snapshot)
        total = max(total, start + found + has_more)
    if total <= cap:
        return total, True
    return max(cap + 1, estimate), False


def total_text(total: int, exact: bool) -> str:
    """A total for people: "1,234", or an estimate to two significant digits, "about
    1,200,000"."""
    if exact:
        return f"{total:,}"
    digits = len(str(total))
    return f"about {round(total, min(0, 2 - digits)):,}"
