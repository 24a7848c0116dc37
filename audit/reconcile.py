"""Checking each dataset's table against the audit log: the rows rebuilt from the log alone
(``audit.trail.dataset_state``) must be the rows in the table, cell for cell.

The hash chain (``audit.chain.verify``) shows that the log was not edited; this shows that it is
complete. A change that reached a table without being captured shows up as a difference: the
table's owner disabling capture, a column rewritten by ``ALTER TABLE … USING``, the rows of a
table that inherits from it, a superuser writing with triggers off, a bulk load whose stored
stream is not what it inserted, a decimal's scale changed outside the portal. The portal never
deletes a dataset, so one the log knows whose row in ``portal.datasets`` or whose table is gone
was removed around it (the app role's credentials can do both): every row the log gives it is
then missing.

The log and the table are read in one snapshot (``REPEATABLE READ``), so commits made meanwhile
cannot look like differences. One dataset's rebuilt state is held in memory (roughly 1 KB a row
of ten columns): this is an admin's periodic check (``portal audit verify --data``), not
something to run on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from audit.search import loads
from audit.trail import dataset_state
from portal.models import Dataset
from portal.wording import agreeing, counted

SAMPLE: Final = 5
"""How many row ids and cells each difference lists (the counts are exact)."""


@dataclass(frozen=True)
class CellDrift:
    """A cell whose value in the table is not the value the log gives it."""

    row_id: int
    column: str
    logged: Any  # ABSENT: the log's row has no such column
    stored: Any  # ABSENT: the table's row has no such column


class _Absent:
    def __repr__(self) -> str:
        return "(no such column)"


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class DatasetDrift:
    """How one dataset's table differs from the state its audit log rebuilds."""

    dataset_id: int
    name: str
    rows: int  # in the table
    missing: int  # rows the log has and the table lacks
    extra: int  # rows in the table the log does not have
    differing: int  # rows present in both whose cells differ
    sample_missing: tuple[int, ...]
    sample_extra: tuple[int, ...]
    sample_cells: tuple[CellDrift, ...]
    gone: str | None = None  # what of the dataset was removed: its catalog row, or its table
    stored_count: int | None = None  # the row count portal.datasets keeps, if it has the dataset

    @property
    def ok(self) -> bool:
        """The table holds what the log says (the stored count is bookkeeping: see
        ``count_note``)."""
        return not (self.gone or self.missing or self.extra or self.differing)

    @property
    def count_note(self) -> str:
        """A stored row count other than the table's rows, and how to correct it; else ''."""
        if self.gone or self.stored_count is None or self.stored_count == self.rows:
            return ""
        return (
            f"; its stored row count says {self.stored_count:,} (the Datasets page shows that):"
            f" `portal dataset recount {self.dataset_id}` corrects it"
        )

    def summary(self) -> str:
        return self._summary() + self.count_note

    def _summary(self) -> str:
        head = f"dataset {self.dataset_id} “{self.name}”"
        if self.ok:
            return f"{head}: {counted(self.rows, 'row')}, as the audit log has them"
        parts = [self.gone] if self.gone else []
        if self.differing:
            cells = "; ".join(
                f"row {c.row_id} {c.column}: log {c.logged!r}, table {c.stored!r}"
                for c in self.sample_cells
            )
            verb = agreeing(self.differing, "differs", "differ")
            parts.append(f"{counted(self.differing, 'row')} {verb} ({cells})")
        if self.extra:
            extra = _ids(self.sample_extra, self.extra)
            parts.append(f"{counted(self.extra, 'row')} the log never recorded (ids {extra})")
        if self.missing:
            missing = _ids(self.sample_missing, self.missing)
            parts.append(
                f"{counted(self.missing, 'row')} of the log not in the table (ids {missing})"
            )
        return f"{head} does not match its audit log: " + "; ".join(parts)


def _ids(ids: tuple[int, ...], total: int) -> str:
    return ", ".join(map(str, ids)) + (", …" if total > len(ids) else "")


def check_datasets(
    *,
    session: Session,
    dataset_ids: list[int] | None = None,
    progress: Callable[[Dataset], None] | None = None,
) -> list[DatasetDrift]:
    """Compare every dataset (or those of ``dataset_ids``) with its audit log, in one snapshot,
    and every dataset the log has that is no longer in ``portal.datasets`` (after those, by id;
    ``progress`` hears of one such as a transient ``Dataset`` with the name the log gave it).
    Must be the first work of ``session``'s transaction (it sets the isolation level).

    Raises:
        AuditError: a bulk load's stored stream no longer matches its SHA-256.
    """
    session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    query = select(Dataset).order_by(Dataset.id)
    if dataset_ids is not None:
        query = query.where(Dataset.id.in_(dataset_ids))
    datasets = list(session.scalars(query).all())
    for row in session.execute(_UNLISTED):
        if dataset_ids is None or row.id in dataset_ids:
            # Not added to the session: nothing is written.
            datasets.append(Dataset(id=row.id, name=row.name or f"dataset {row.id}"))
    drifts = []
    for dataset in datasets:
        if progress is not None:
            progress(dataset)
        drifts.append(_check(session, dataset))
    return drifts


# Datasets with sealed changesets but no row in portal.datasets, with the last name the log
# gave them: at their creation, or a rename since (the portal has no way to delete one).
_UNLISTED = text(
    """
    SELECT u.id,
           (SELECT coalesce(c.detail #>> '{name,after}', c.detail #>> '{created,name}',
                            c.detail ->> 'name')
              FROM audit.changeset c
             WHERE c.dataset_id = u.id AND c.seq IS NOT NULL
               AND (coalesce(c.detail #>> '{created,action}', c.detail ->> 'action') = 'create'
                    OR (c.kind = 'dataset' AND c.detail ->> 'action' = 'settings'
                        AND c.detail ? 'name'))
             ORDER BY c.seq DESC LIMIT 1) AS name
      FROM (SELECT DISTINCT c.dataset_id AS id FROM audit.changeset c
             WHERE c.seq IS NOT NULL AND c.dataset_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM portal.datasets d WHERE d.id = c.dataset_id)) u
     ORDER BY u.id
    """
)


def _check(session: Session, dataset: Dataset) -> DatasetDrift:
    logged = dataset_state(session=session, dataset_id=dataset.id, exact=True)
    rows = extra = differing = 0
    sample_extra: list[int] = []
    cells: list[CellDrift] = []
    gone = _gone(session, dataset)
    for row_id, stored in [] if gone else _table_rows(session, dataset.table_name):
        rows += 1
        expected = logged.pop(row_id, None)
        if expected is None:
            extra += 1
            if len(sample_extra) < SAMPLE:
                sample_extra.append(row_id)
            continue
        found = _differences(row_id, expected, stored)
        if found:
            differing += 1
            cells.extend(found[: SAMPLE - len(cells)])
    missing = sorted(logged)
    return DatasetDrift(
        dataset_id=dataset.id,
        name=dataset.name,
        rows=rows,
        missing=len(missing),
        extra=extra,
        differing=differing,
        sample_missing=tuple(missing[:SAMPLE]),
        sample_extra=tuple(sample_extra),
        sample_cells=tuple(cells),
        gone=gone,
        stored_count=dataset.row_count,
    )


def _gone(session: Session, dataset: Dataset) -> str | None:
    """What of the dataset was removed outside the portal, if anything."""
    if dataset.table_name is None:  # not from portal.datasets: its row there was deleted
        return "its row in portal.datasets was deleted outside the portal"
    exists = session.scalar(
        select(func.to_regclass(func.format("data.%I", dataset.table_name)).is_not(None))
    )
    return None if exists else f"its table data.{dataset.table_name} was dropped outside the portal"


def _table_rows(session: Session, table_name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The table's rows (and those of any table inheriting from it, as every read of it sees
    them) as images shaped like the log's: without ``_row_id`` and ``_version``."""
    table = session.get_bind().dialect.identifier_preparer.quote(table_name)
    result = session.execute(
        text(
            f"SELECT t._row_id, (to_jsonb(t) - '_row_id' - '_version')::text FROM data.{table} t"
            " ORDER BY t._row_id"  # the samples: the first few differences, by row id
        ),
        execution_options={"yield_per": 10_000},
    )
    for row_id, image in result:
        yield row_id, loads(image, exact=True)


def _differences(row_id: int, logged: dict[str, Any], stored: dict[str, Any]) -> list[CellDrift]:
    return [
        CellDrift(row_id, column, logged.get(column, ABSENT), stored.get(column, ABSENT))
        for column in sorted(logged.keys() | stored.keys())
        if not _same(logged.get(column, ABSENT), stored.get(column, ABSENT))
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal and written alike: a decimal's scale counts (``1.50`` is not ``1.5``), as it does
    in the table's text and in a CSV download."""
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return type(a) is type(b) and str(a) == str(b)
    return type(a) is type(b) and a == b
