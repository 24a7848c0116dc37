"""From the grid's editing state to a checked ChangeSet: pure functions, no database, no Streamlit.

    Window              the rows the Edit page loaded: their committed values and versions
                        (``base``), the frame exactly as passed to ``st.data_editor``
                        (``shown``), and the pending changes to rows outside the window
    build_changeset()   Window + the editor's state -> ChangeSet, every value re-validated
    apply_changeset()   a ChangeSet applied to a frame: what the table holds after the commit
    cell_changes()      a ChangeSet as one before -> after line per changed cell, for review
    grid_problems()     what in the state of any grid (the Upload page's too) does not fit it

Decisions a reader needs:

- The editor's state holds **row positions** in ``shown``: ``edited_rows {position: {column:
  value}}``, ``deleted_rows [position]``, ``added_rows [{column: value}]`` (Streamlit applies
  edits, then deletions, then additions). Positions are bounds-checked: a negative or
  out-of-range position is refused, never wrapped as Python indexing would.
- Nothing the browser enforces is trusted: a forged state arrives intact. Every value is
  re-validated with ``portal.spec.validate_value`` (type, required, min/max, scale, regex,
  options, max length), unknown columns and ``_row_id`` / ``_version`` are refused, uniqueness
  is checked among the rows the window holds (the table's UNIQUE constraint checks the rest),
  and a viewer's non-empty state is refused outright.
- Unsaved changes survive paging and page switches: the Edit page folds a window's changes into
  ``Window.outside`` of the next window and shows the rows of the new window with their pending
  values. A pending new row appears in the grid with a negative ``_row_id`` (-1, -2, ...): it is
  not in the table yet, and editing or deleting it edits or drops the pending insert.
- Every change is relative to ``base``, the committed values as read: a cell edited back to its
  committed value is no change and is dropped; a row edited and deleted is a delete.
- A browser holds numbers as 64-bit floats. A number column holding a stored value it would
  round is text in the grid (``Window.grid``), so it shows and takes every digit; a number
  arriving from a number cell that may have been rounded as it was typed (a whole number past
  2**53 - 1, more than 15 significant digits) is refused, never stored rounded.
- All problems are collected, not just the first: ``InvalidEdits.problems`` has one per cell,
  each naming the row (its ``_row_id``, or "new row N") and the column's label. A forged state
  cannot make that list huge: a row with more cells than the grid has columns is refused as a
  whole, and positions outside the window past the first ``MAX_PROBLEMS_SHOWN`` are counted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import chain, islice
from typing import Any, Final, cast

import numpy as np
import pandas as pd

from portal.errors import PermissionDenied, ValidationError
from portal.spec import (
    REQUIRED_MESSAGE,
    ROW_ID,
    CellError,
    ColumnSpec,
    DatasetSpec,
    Value,
    as_grid_text,
    browser_exact,
    escape_surrogates,
    is_missing,
    stored_decimal,
    typed_only,
    validate_value,
)
from portal.wording import counted

MAX_ADDED_ROWS: Final = 5_000
"""New rows in one commit; a larger batch is an upload."""
MAX_PROBLEMS_SHOWN: Final = 50


@dataclass(frozen=True)
class RowUpdate:
    """Changed cells of one committed row: ``before`` and ``after`` hold the same columns."""

    row_id: int
    version: int
    before: Mapping[str, Value]
    after: Mapping[str, Value]


@dataclass(frozen=True)
class RowInsert:
    """A new row: a value for every column of the spec (``None`` for a missing one).

    ``row_id`` is ``None`` for a row made in the grid (the table numbers it); a revert bringing
    a deleted row back gives the ``_row_id`` the row had (row ids are never reused)."""

    values: Mapping[str, Value]
    row_id: int | None = None


@dataclass(frozen=True)
class RowDelete:
    """A committed row to delete, with every value it had."""

    row_id: int
    version: int
    before: Mapping[str, Value]


@dataclass(frozen=True)
class ChangeSet:
    """Everything one commit changes, in ``_row_id`` order (inserts in the order added)."""

    updates: tuple[RowUpdate, ...] = ()
    inserts: tuple[RowInsert, ...] = ()
    deletes: tuple[RowDelete, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.updates or self.inserts or self.deletes)

    @property
    def cells_updated(self) -> int:
        return sum(len(u.after) for u in self.updates)

    def summary(self) -> str:
        """``3 cells in 2 rows changed, 1 row added, 1 row deleted``, leaving out what did not
        happen (``1 row added``, not ``0 cells in 0 rows changed, 1 row added, 0 rows
        deleted``); ``no changes`` for none."""
        parts = []
        if self.updates:
            cells, rows = counted(self.cells_updated, "cell"), counted(len(self.updates), "row")
            parts.append(f"{cells} in {rows} changed")
        if self.inserts:
            parts.append(f"{counted(len(self.inserts), 'row')} added")
        if self.deletes:
            parts.append(f"{counted(len(self.deletes), 'row')} deleted")
        return ", ".join(parts) or "no changes"

    def row_ids(self) -> set[int]:
        """The committed rows this ChangeSet touches."""
        return {u.row_id for u in self.updates} | {d.row_id for d in self.deletes}

    def only_columns(self, names: Collection[str]) -> tuple[ChangeSet, dict[str, int]]:
        """This ChangeSet without the cells of columns not in ``names`` (columns removed since
        it was made), and how many edits to each of those it held: its changed cells, and the
        values typed into its new rows. An update left with no cell goes; a new row and a
        delete keep their other values."""
        keep = set(names)
        dropped: dict[str, int] = {}

        def kept(values: Mapping[str, Value], count: bool) -> dict[str, Value]:
            for name, value in values.items():
                if name not in keep and count and value is not None:
                    dropped[name] = dropped.get(name, 0) + 1
            return {n: v for n, v in values.items() if n in keep}

        updates = []
        for u in self.updates:
            after = kept(u.after, count=True)
            if after:
                updates.append(replace(u, before=kept(u.before, False), after=after))
        changes = ChangeSet(
            updates=tuple(updates),
            inserts=tuple(replace(i, values=kept(i.values, True)) for i in self.inserts),
            deletes=tuple(replace(d, before=kept(d.before, False)) for d in self.deletes),
        )
        return changes, dropped


@dataclass(frozen=True)
class EditProblem:
    """One refused value or row: where (``row 17`` / ``new row 2``), the column's label
    (empty for the row as a whole), the value as sent, and what is wrong."""

    where: str
    column: str
    value: str
    message: str

    def __str__(self) -> str:
        column = f", {self.column}" if self.column else ""
        shown = f" (“{self.value}”)" if self.value else ""
        return f"{self.where}{column}{shown}: {self.message}"


class InvalidEdits(ValidationError):
    """The editor's state breaks the dataset's rules; ``problems`` lists every cell."""

    def __init__(self, problems: Sequence[EditProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            f"{counted(len(self.problems), 'change')} cannot be saved: {listed(self.problems, 3)}. "
            "Correct the highlighted values, or discard those edits; nothing was written."
        )


def listed(problems: Sequence[EditProblem], shown: int) -> str:
    """The first ``shown`` problems in words, and how many more there are."""
    more = f" (and {len(problems) - shown:,} more)" if len(problems) > shown else ""
    return "; ".join(str(p).rstrip(".") for p in problems[:shown]) + more


@dataclass(frozen=True, eq=False)
class Window:
    """The rows the Edit page loaded, as it passed them to the editor.

    ``shown`` is indexed by ``_row_id`` with the spec's columns (physical names): committed
    rows with their pending values, then pending inserts with negative ids. ``base`` holds the
    committed values of the committed rows, indexed the same way, and ``versions`` their
    ``_version``. ``outside`` has the pending changes to rows not in this window.

    ``grid`` is ``shown`` as passed to the editor: the integer and decimal columns
    (``as_text``, ``EDITED_AS_TEXT``) are text there, so the stored values show as they are and
    what is typed or pasted in them arrives as text, exactly, to be read as a file's cell is.
    """

    spec: DatasetSpec
    shown: pd.DataFrame
    base: pd.DataFrame
    versions: Mapping[int, int]
    outside: ChangeSet = field(default_factory=ChangeSet)
    pending_ids: frozenset[int] = frozenset()
    """The committed rows of ``shown`` holding pending changes (their shown values differ from
    ``base``)."""
    checked: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)
    """What each cell value the editor sent checked to, by column and value (``_verdict``): the
    Edit page checks the whole editor state on every run, so a cell is checked once, not at
    every click."""

    @cached_property
    def as_text(self) -> frozenset[str]:
        """The number columns, given to the editor as text (see ``grid``)."""
        return frozenset(c.name for c in self.spec.columns if c.type in EDITED_AS_TEXT)

    @cached_property
    def grid(self) -> pd.DataFrame:
        if not self.as_text:
            return self.shown
        frame = self.shown.copy()
        for name in self.as_text:
            frame[name] = as_grid_text(frame[name].tolist())
        return frame

    # The frames' cells as plain lists, read out once per window: the Edit page checks the
    # editor's state against its window on every run (a 5,000-row window costs milliseconds to
    # read out). The frames are never changed after the window is made.
    @cached_property
    def shown_cells(self) -> _Columns:
        return _Columns(self.shown, self.spec)

    @cached_property
    def base_cells(self) -> _Columns:
        return _Columns(self.base, self.spec)


# ---------------------------------------------------------------------------------------------
# Building a window from committed rows and pending changes
# ---------------------------------------------------------------------------------------------


_EDITOR_DTYPES: Final[dict[str, Any]] = {
    "text": "object",
    "category": "object",
    "integer": "Int64",
    "decimal": "object",  # Decimal values: exact, whatever their scale
    "boolean": "boolean",
    "date": "object",  # datetime.date values
    "datetime": "datetime64[us, UTC]",
}


def editor_frame(spec: DatasetSpec, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows ``(_row_id, *values in spec order)`` as the frame the editor gets: indexed by
    ``_row_id``, one column per spec column (physical names), in dtypes the grid edits well."""
    index = pd.Index([int(r[0]) for r in rows], name=ROW_ID, dtype="int64")
    columns = list(zip(*(r[1:] for r in rows), strict=True)) or [()] * len(spec.columns)
    data = {}
    for c, values in zip(spec.columns, columns, strict=True):
        cells = pd.Series(list(values), index=index, dtype=object)  # one column at a time
        dtype = _EDITOR_DTYPES[c.type]
        data[c.name] = cells if dtype == "object" else cells.astype(dtype)
    return pd.DataFrame(data, index=index, columns=spec.names)


def make_window(
    spec: DatasetSpec,
    base: pd.DataFrame,
    versions: Mapping[int, int],
    pending: ChangeSet | None = None,
) -> Window:
    """A window over the committed rows ``base`` (indexed by ``_row_id``), showing ``pending``
    changes on them: pending values in changed cells, pending deletes left out, pending inserts
    appended with ids -1, -2, ... Pending changes to other rows stay in ``outside``."""
    pending = pending or ChangeSet()
    here = set(base.index)
    # A pending change stays relative to what its author saw: the version and values it was
    # made against, so a commit after someone else's change is a conflict, not an overwrite.
    base, versions = base.copy(), dict(versions)
    for u in pending.updates:
        if u.row_id in here:
            versions[u.row_id] = u.version
            for name, value in u.before.items():
                base.at[u.row_id, name] = _cell(value)
    for d in pending.deletes:
        if d.row_id in here:
            versions[d.row_id] = d.version
    shown = base.copy()
    for u in pending.updates:
        if u.row_id in here:
            for name, value in u.after.items():
                shown.at[u.row_id, name] = _cell(value)
    gone = [d.row_id for d in pending.deletes if d.row_id in here]
    shown = shown.drop(index=gone)
    if pending.inserts:
        new = pd.DataFrame(
            [{c: _cell(i.values.get(c)) for c in spec.names} for i in pending.inserts],
            index=pd.Index(range(-1, -len(pending.inserts) - 1, -1), name=ROW_ID),
        ).astype(shown.dtypes.to_dict())
        shown = pd.concat([shown, new])
    outside = ChangeSet(
        updates=tuple(u for u in pending.updates if u.row_id not in here),
        deletes=tuple(d for d in pending.deletes if d.row_id not in here),
    )
    edited = frozenset(u.row_id for u in pending.updates if u.row_id in here)
    return Window(spec, shown, base, versions, outside, edited)


EDITED_AS_TEXT: Final = ("integer", "decimal")
"""The types whose columns the editor is given as text: what is typed or pasted there reaches
the server as written and is read as an uploaded file's cell is. A browser's number cell
changes numbers before sending them, without a word: pasted 12,5 becomes 125, 15.7 in a whole
number column 15, 1.234 in one of two decimal places 1.23 (the cell's step cuts the digits),
and a paste it cannot read (abc, €12.30) leaves the old value; a number past 2^53 is rounded."""


def _cell(value: Value) -> Any:
    """A typed value as a frame cell (the editor frame's own missing marker for ``None``)."""
    return pd.NA if value is None else value


# ---------------------------------------------------------------------------------------------
# The editor's state -> ChangeSet
# ---------------------------------------------------------------------------------------------


def build_changeset(window: Window, state: object, *, may_edit: bool) -> ChangeSet:
    """Check the editor's ``state`` against the window and the spec; the ChangeSet it means,
    including the pending changes outside the window.

    Raises:
        PermissionDenied: ``may_edit`` is false and the state or the window holds a change.
        InvalidEdits: a malformed state, a position outside the window, an unknown or
            read-only column, or a value breaking a rule; nothing is partly accepted.
    """
    return _build(window, state, may_edit=may_edit, dropped=None)


def _build(
    window: Window, state: object, *, may_edit: bool, dropped: list[EditProblem] | None
) -> ChangeSet:
    """``build_changeset``; given a ``dropped`` list, the ChangeSet of every value of its
    column's type, rules broken or not, with the cells that are not (and new rows left empty)
    added to ``dropped`` instead of refused (``carried_changes``)."""
    edited, added, deleted = _parse_state(state)
    if not may_edit and (edited or added or deleted or _pending(window)):
        raise PermissionDenied(
            "Your role can view this dataset but not change it; nothing was written. "
            "Ask an admin for the editor role."
        )
    spec = window.spec
    by_name = {c.name: c for c in spec.columns}
    rows = len(window.shown)
    problems: list[EditProblem] = []
    memo = window.checked
    if len(memo) > MAX_CHECKED_KEPT:  # a long session's values typed and typed over
        memo.clear()
    too_many = _too_many_new_rows(window, len(added))
    if too_many is not None:
        raise InvalidEdits([too_many])
    widest = max((len(r) for r in (*edited.values(), *added)), default=0)
    if widest > len(spec.columns) + 3:  # a forged row: more cells than the grid has columns
        raise InvalidEdits(
            [
                EditProblem(
                    "the grid",
                    "",
                    "",
                    f"a row arrived with {widest:,} cells for "
                    f"{counted(len(spec.columns), 'column')}; reload the page and make the "
                    "edits again",
                )
            ]
        )
    outside_window = _outside_all([p for p in (*edited, *deleted) if not 0 <= p < rows], rows)
    if outside_window:  # nothing else is worth checking against positions that do not fit
        raise InvalidEdits(outside_window)

    # Only the cells the state edits and the rows holding pending changes can differ from what
    # was committed: just those are turned into plain values (a whole window, value by value,
    # costs more than the rest of a diff).
    shown = window.shown_cells
    ids = list(shown.position)  # row ids by position
    deleted_ids = {ids[p] for p in deleted}
    edits: dict[int, dict[str, Value]] = {}  # row id -> its edited cells, checked
    for position in sorted(set(edited) - set(deleted)):
        row_id = ids[position]
        edits[row_id] = _checked_cells(
            edited[position], by_name, row_id, problems, memo, dropped=dropped
        )

    new_rows: list[dict[str, Value]] = []
    new_where: list[str] = []  # as the grid numbers new rows: pending ones first
    pending_count = sum(1 for i in ids if i < 0)
    needs_values = any(c.required and c.default is None for c in spec.columns)
    for n, row in enumerate(added, start=1):
        where = f"new row {pending_count + n}"
        if dropped is not None:  # carried: a row with a value, rules broken or not
            cells = _checked_cells(row, by_name, where, [], memo, dropped=dropped)
            if all(map(is_missing, cells.values())):
                continue
            new_where.append(where)
            new_rows.append({c.name: _default(c) for c in spec.columns} | cells)
            continue
        new_where.append(where)
        if needs_values and all(map(is_missing, row.values())):
            # A row added and not typed in yet (the grid adds one at a click): one line, not
            # "A value is required" for each of its required cells.
            problems.append(EditProblem(where, "", "", EMPTY_NEW_ROW))
            new_rows.append({c.name: _default(c) for c in spec.columns})
            continue
        values = {c.name: _default(c) for c in spec.columns}
        values |= _checked_cells(row, by_name, where, problems, memo)
        for c in spec.columns:  # a required column left out of the added row entirely
            if c.required and values[c.name] is None and c.name not in row:
                problems.append(EditProblem(where, c.label, "", REQUIRED_MESSAGE))
        new_rows.append(values)

    pending_ids = [i for i in ids if i < 0 and i not in deleted_ids]
    pending_inserts = [shown.row(shown.position[i]) | edits.get(i, {}) for i in pending_ids]
    _recheck_pending(window, edits, deleted_ids, pending_ids, by_name, problems, memo)
    kept = (  # the committed rows that stay, for the unique columns (if any)
        [(p, i) for p, i in enumerate(ids) if i >= 0 and i not in deleted_ids]
        if any(c.unique for c in spec.columns)
        else []
    )
    inserts = [(_where(i), v) for i, v in zip(pending_ids, pending_inserts, strict=True)]
    inserts += list(zip(new_where, new_rows, strict=True))
    _check_unique(spec, shown, kept, edits, inserts, problems)
    if problems and dropped is None:
        raise InvalidEdits(problems)

    base = window.base_cells
    order = {name: k for k, name in enumerate(shown.names)}
    updates, deletes = [], []
    for row_id in sorted({i for i in edits if i >= 0} | (window.pending_ids - deleted_ids)):
        mine = edits.get(row_id, {})
        there = base.position[row_id]
        if row_id in window.pending_ids:  # any cell may differ: compare the whole row
            here = shown.position[row_id]
            now = {n: mine[n] if n in mine else plain(shown.cells[n][here]) for n in shown.names}
        else:  # shown as committed: only its edited cells can differ
            now = (
                {n: mine[n] for n in sorted(mine, key=order.__getitem__)} if len(mine) > 1 else mine
            )
        before: dict[str, Value] = {}
        after: dict[str, Value] = {}
        for name, value in now.items():
            was = plain(base.cells[name][there])
            if not same_value(value, was):
                before[name] = was
                after[name] = value
        if after:
            updates.append(RowUpdate(row_id, int(window.versions[row_id]), before, after))
    # Rows deleted in the grid, and rows a pending delete already dropped from ``shown`` (they
    # are in ``base`` only) and which stay deleted.
    shown_ids = set(ids)
    gone = {i for i in deleted_ids if i >= 0}
    gone |= base.position.keys() - shown_ids
    for row_id in sorted(gone):
        before = base.row(base.position[row_id])
        deletes.append(RowDelete(row_id, int(window.versions[row_id]), before))
    return ChangeSet(
        updates=tuple(sorted([*window.outside.updates, *updates], key=lambda u: u.row_id)),
        inserts=tuple(RowInsert(v) for v in [*pending_inserts, *new_rows]),
        deletes=tuple(sorted([*window.outside.deletes, *deletes], key=lambda d: d.row_id)),
    )


EMPTY_NEW_ROW: Final = (
    "This new row is empty: type its values, or delete it (tick the box at its left, then "
    "press Delete)."
)


def _recheck_pending(
    window: Window,
    edits: Mapping[int, Mapping[str, Value]],
    deleted_ids: set[int],
    pending_ids: Sequence[int],
    by_name: Mapping[str, ColumnSpec],
    problems: list[EditProblem],
    memo: dict[tuple[Any, ...], Any],
) -> None:
    """The pending values not typed over in this state, checked against the window's rules:
    they were checked when typed, but the rules may have changed since (``rule_changes``), and
    a value they now refuse must be named before a commit, not refused by the table at it.
    Values are typed already (``validate_value`` takes them so); each verdict is kept in
    ``memo``, so a value is checked once per window."""
    shown, base = window.shown_cells, window.base_cells

    def check(values: Mapping[str, Value], where: int) -> None:
        for name, value in values.items():
            column = by_name.get(name)
            if column is None:  # pragma: no cover - pending values are of the spec's columns
                continue
            key = ("pending", name, type(value), repr(value))  # 1.5 and 1.50 apart
            verdict = memo.get(key, _UNCHECKED)
            if verdict is _UNCHECKED:
                verdict = memo[key] = validate_value(column, value)
            if isinstance(verdict, CellError):
                problems.append(
                    EditProblem(_where(where), column.label, verdict.value, verdict.message)
                )

    for row_id in sorted(window.pending_ids - deleted_ids):
        here, there, mine = shown.position[row_id], base.position[row_id], edits.get(row_id, {})
        check(
            {
                n: plain(shown.cells[n][here])
                for n in shown.names
                if n not in mine
                and not same_value(plain(shown.cells[n][here]), plain(base.cells[n][there]))
            },
            row_id,
        )
    for row_id in pending_ids:  # pending new rows
        mine = edits.get(row_id, {})
        row = shown.row(shown.position[row_id])
        check({n: v for n, v in row.items() if n not in mine}, row_id)
    for u in window.outside.updates:  # pending changes to rows outside this window
        check(u.after, u.row_id)


LIKELY_YEARS: Final = range(1900, 2101)
"""Years a date typed in the Edit page's grid is taken to mean without a second look."""


def doubtful_dates(
    changes: ChangeSet, spec: DatasetSpec, today: date | None = None
) -> list[EditProblem]:
    """New dates the review asks about, as likely slips of the grid's date field. Not refused:
    such a date may be meant.

    - A date or date-time of a year outside ``LIKELY_YEARS``, in a column whose rules set no
      minimum or maximum (those rule on it): the field reads what is typed in the browser's
      order (month/day/year in the United States), so 2024-04-01 typed there becomes the year
      401, with nothing said.
    - A date cell changed to ``today`` (UTC, or a day either side: the browser's own day): the
      grid turns a date pasted that it cannot read (2024-02-30, 31/12/2024) into today's, with
      nothing said. A new row dated today is not asked about: it is what most of them mean.
    """
    today = today or datetime.now(UTC).date()
    around_today = {today - timedelta(days=1), today, today + timedelta(days=1)}
    dated = {c.name: c for c in spec.columns if c.type in ("date", "datetime")}
    found: list[EditProblem] = []

    def look(values: Mapping[str, Value], where: str, *, changed: bool) -> None:
        for name, value in values.items():
            column = dated.get(name)
            if not isinstance(value, date) or column is None:
                continue
            if value.year not in LIKELY_YEARS and column.min is None and column.max is None:
                check = (
                    f"The year {value.year} is far from today: check it was meant (the "
                    "grid's date field takes what is typed in your browser's order, such as "
                    "month/day/year), and type the date again if not."
                )
            elif changed and column.type == "date" and value in around_today:
                check = (
                    "Today's date: check it was meant (the grid turns a pasted date it cannot"
                    " read, such as 2024-02-30 or 31/12/2024, into today's), and type the date"
                    " again if not."
                )
            else:
                continue
            found.append(EditProblem(where, column.label, _shown(value), check))

    for u in changes.updates:
        look(u.after, _where(u.row_id), changed=True)
    for n, i in enumerate(changes.inserts, start=1):
        look(i.values, f"new row {n}", changed=False)
    return found


@dataclass(frozen=True)
class Carried:
    """What ``carried_changes`` keeps of an editor state, and what it cannot."""

    changes: ChangeSet
    dropped: tuple[EditProblem, ...]


def carried_changes(window: Window, state: object) -> Carried | None:
    """What of an editor state that breaks a rule to keep when the grid itself is lost (the
    Edit page keeps it on leaving the page): every edit whose value the grid can show again in
    its column, rules broken or not — a value over the maximum, a new row with a required cell
    still empty — to be corrected when its rows come back (pending values are checked again
    then, ``_recheck_pending``); in ``dropped``, the cells it cannot keep (a value of another
    type, a cell of a column the grid does not have). None when the state cannot be read at
    all. Never committed as it is: a commit takes ``build_changeset``'s, which refuses it."""
    dropped: list[EditProblem] = []
    try:
        changes = _build(window, state, may_edit=True, dropped=dropped)
    except InvalidEdits:
        return None
    return Carried(changes, tuple(dropped))


def keeping_the_rules(
    changes: ChangeSet, spec: DatasetSpec, problems: Sequence[EditProblem] = ()
) -> ChangeSet:
    """The part of ``changes`` whose values keep their columns' rules: the changed cells that
    do, the new rows whose every value does, every delete. Uniqueness needs the table: a cell
    or new row named in ``problems`` (a value another row holds) is left out too, so that no
    cell is listed both as a problem and as keeping the rules."""
    by_name = {c.name: c for c in spec.columns}
    named = {(p.where, p.column) for p in problems}
    troubled = {p.where for p in problems}

    def keeps(name: str, value: Value) -> bool:
        column = by_name.get(name)
        return column is not None and not isinstance(validate_value(column, value), CellError)

    updates = []
    for u in changes.updates:
        where = _where(u.row_id)
        after = {
            n: v
            for n, v in u.after.items()
            if keeps(n, v) and (where, by_name[n].label) not in named
        }
        if after:
            updates.append(replace(u, before={n: u.before[n] for n in after}, after=after))
    return ChangeSet(
        updates=tuple(updates),
        inserts=tuple(
            i
            for n, i in enumerate(changes.inserts, start=1)
            if f"new row {n}" not in troubled
            and all(keeps(c.name, i.values.get(c.name)) for c in spec.columns)
        ),
        deletes=changes.deletes,
    )


def structural_problems(window: Window, state: object) -> list[EditProblem]:
    """What in ``state`` does not fit the window at all — a malformed shape, a position outside
    it, a column it does not have, a value the grid cannot read into its column, more new rows
    than a commit takes — and so cannot even be shown (Streamlit's own grid fails on such a
    state, or takes minutes over it). Values are otherwise not checked here;
    ``build_changeset`` checks everything."""
    problems = grid_problems(state, rows=len(window.shown), columns={*window.spec.names, "_index"})
    if problems:
        return problems
    # The grid adds new rows one by one (milliseconds each): too many are refused before it does.
    added = len(state.get("added_rows") or ()) if isinstance(state, Mapping) else 0
    too_many = _too_many_new_rows(window, added)
    return [too_many] if too_many is not None else _unreadable(window, state)


def _too_many_new_rows(window: Window, added: int) -> EditProblem | None:
    """``added`` new rows, with the window's pending ones, over ``MAX_ADDED_ROWS``."""
    new_count = added + int((window.shown.index < 0).sum())
    if new_count <= MAX_ADDED_ROWS:
        return None
    return EditProblem(
        "new rows",
        "",
        "",
        f"{new_count:,} new rows in one commit is more than the {MAX_ADDED_ROWS:,} allowed; "
        "upload them as a CSV file instead",
    )


def _unreadable(window: Window, state: object) -> list[EditProblem]:
    """The cells of a state that fits the window whose value the grid fails on, rather than
    skips, when it applies the state to its frame: in a date column, a date pandas reads with
    a year outside 1 to 9999 (``0000-01-01``). (Number columns are text to the grid, which
    takes any value there: ``EDITED_AS_TEXT``.)"""
    columns = {c.name: c for c in window.spec.columns if c.type == "date"}
    if not columns:
        return []
    edited, added, _ = _parse_state(state)
    ids = window.shown.index
    pending_count = int((ids < 0).sum())
    rows = chain(
        ((_where(int(ids[p])), row) for p, row in edited.items()),
        ((f"new row {pending_count + n}", row) for n, row in enumerate(added, start=1)),
    )
    problems: list[EditProblem] = []
    for where, row in rows:
        for name, raw in row.items():
            column = columns.get(name)
            if column is None or _grid_reads(column, raw):
                continue
            problems.append(
                EditProblem(
                    where,
                    column.label,
                    _shown(raw),
                    "the grid cannot read this as a date between years 1 and 9999; reload the"
                    " page and make the edits again",
                )
            )
            if len(problems) > MAX_PROBLEMS_SHOWN:  # a forged state: enough to refuse it
                return problems
    return problems


def _grid_reads(column: ColumnSpec, raw: object) -> bool:
    """Whether Streamlit's grid can apply ``raw`` to a cell of ``column`` (a date), as it
    reads one: a value it cannot read at all (a list, a dict) it skips; these are the ones it
    fails on."""
    if raw is None or isinstance(raw, list):
        return True
    try:
        moment = pd.Timestamp(cast(Any, raw))
    except (ValueError, TypeError, OverflowError):
        return True
    if pd.isna(moment):
        return True
    try:
        moment.date()
    except (NotImplementedError, ValueError):
        return False
    return True


def grid_problems(
    state: object, *, rows: int, columns: Collection[str], fixed_rows: bool = False
) -> list[EditProblem]:
    """What in the state of any ``st.data_editor`` grid does not fit it — a malformed shape, a
    position outside its ``rows``, a deleted row's position given as text, a cell in a column
    not among the ``columns`` it may send, and, on a grid whose rows are ``fixed_rows``, an
    added or deleted row — so that the grid itself would fail on it. Values are not checked."""
    try:
        edited, added, deleted = _parse_state(state)
    except InvalidEdits as exc:
        return list(exc.problems)
    problems = _outside_all([p for p in (*edited, *deleted) if not 0 <= p < rows], rows)
    if isinstance(state, Mapping) and any(map(_is_str, state.get("deleted_rows") or ())):
        # The grid reads the edited rows' keys as numbers (JSON keys are text), but indexes
        # with the deleted rows as they arrive.
        problems.append(
            EditProblem(
                "the grid",
                "",
                "",
                "its deleted rows arrived as text, not as row positions; reload the page and "
                "make the edits again",
            )
        )
    if fixed_rows and (added or deleted):
        problems.append(
            EditProblem(
                "the grid",
                "",
                "",
                "rows were added to it or deleted from it, but its rows are fixed; reload the "
                "page and make the edits again",
            )
        )
    rows_cells = chain(  # lazily: a huge forged state stops at the first problems
        ((("row position", position), row) for position, row in edited.items()),
        ((("added row", n), row) for n, row in enumerate(added, start=1)),
    )
    for (kind, number), row in rows_cells:
        if len(problems) >= MAX_PROBLEMS_SHOWN:  # a forged state: enough to refuse it
            break
        unknown = ((name, raw) for name, raw in row.items() if name not in columns)
        where = f"{kind} {number}"
        problems += [_unknown(where, n, raw) for n, raw in islice(unknown, MAX_PROBLEMS_SHOWN)]
    return problems[: MAX_PROBLEMS_SHOWN + 1]


def _unknown(where: str, name: str, raw: object) -> EditProblem:
    return EditProblem(
        where,
        escape_surrogates(name),
        _shown(raw),
        "the dataset has no such column; reload the page to see its columns",
    )


def _pending(window: Window) -> bool:
    """Whether the window carries changes from earlier (a viewer's never does)."""
    return (
        not window.outside.empty
        or bool((window.shown.index < 0).any())
        or set(window.shown.index) != set(window.base.index)
    )


def _parse_state(
    state: object,
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]], list[int]]:
    """The three parts of an editor state, with their shapes checked (positions unchecked)."""

    def malformed(part: str) -> InvalidEdits:
        return InvalidEdits(
            [
                EditProblem(
                    "the grid",
                    "",
                    "",
                    f"its {part} arrived malformed; reload the page and make the edits again",
                )
            ]
        )

    if state is None:
        return {}, [], []
    if not isinstance(state, Mapping):
        raise malformed("state")
    edited_raw = state.get("edited_rows") or {}
    added_raw = state.get("added_rows") or []
    deleted_raw = state.get("deleted_rows") or []
    if not isinstance(edited_raw, Mapping):
        raise malformed("edited rows")
    edited: dict[int, dict[str, Any]] = {}
    for k, v in edited_raw.items():  # one pass: positions are read once
        position = _position(k)
        if position is None or not _is_mapping(v) or not all(map(_is_str, v)):
            raise malformed("edited rows")
        edited.setdefault(position, {}).update(v)
    if not isinstance(added_raw, list | tuple) or not all(
        _is_mapping(r) and all(map(_is_str, r)) for r in added_raw
    ):
        raise malformed("added rows")
    if not isinstance(deleted_raw, list | tuple):
        raise malformed("deleted rows")
    positions = [_position(p) for p in deleted_raw]
    if None in positions:
        raise malformed("deleted rows")
    deleted = list(dict.fromkeys(cast(list[int], positions)))
    return edited, [dict(r) for r in added_raw], deleted


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the ABC's check costs 5x more


def _position(value: object) -> int | None:
    """An int position (or its decimal string, as JSON keys arrive); never a bool or float."""
    if isinstance(value, str):  # JSON keys: a plain run of ASCII digits is the common case
        if len(value) <= 18 and value.isascii() and value.isdigit():
            return int(value)
        return int(value) if _POSITION.fullmatch(value) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    return None


_POSITION: Final = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: int() reads "١" too


def _outside_all(positions: Sequence[int], rows: int) -> list[EditProblem]:
    """The first positions outside the window, named; a forged state may hold any number of
    them, so the rest are counted in one more problem."""
    named = [_outside(p, rows) for p in positions[:MAX_PROBLEMS_SHOWN]]
    if len(positions) > MAX_PROBLEMS_SHOWN:
        rest = len(positions) - MAX_PROBLEMS_SHOWN
        named.append(
            EditProblem("the grid", "", "", f"{counted(rest, 'more row position')} outside it")
        )
    return named


def _outside(position: int, rows: int) -> EditProblem:
    shows = f"rows 0 to {rows - 1} only" if rows else "no rows"
    return EditProblem(
        f"row position {position}",
        "",
        "",
        f"the grid shows {shows}; reload the page and make the edits again",
    )


def _where(row_id: int) -> str:
    return f"row {row_id}" if row_id >= 0 else f"new row {-row_id}"


def _checked_cells(
    sent: Mapping[str, object],
    by_name: Mapping[str, ColumnSpec],
    where: int | str,
    problems: list[EditProblem],
    memo: dict[tuple[Any, ...], Any] | None = None,
    *,
    dropped: list[EditProblem] | None = None,
) -> dict[str, Value]:
    """The cells of one grid row, each checked against its column: a cell in a column the grid
    may not send (an unknown one, or a row id) is left out, a refused value is ``None``; each
    problem goes to ``problems``, at ``where`` (a row id, or a new row's name, made into words
    only for a problem). ``memo`` keeps each value's verdict (``_verdict``). Given a
    ``dropped`` list, a refused value of the column's type is kept as it is (``_carried``), and
    a cell that cannot be kept is left out and added to ``dropped`` too."""
    cells: dict[str, Value] = {}
    for name, raw in sent.items():
        column = by_name.get(name)
        if column is None:
            if name in ("_index", ROW_ID, "_version"):
                message = "row ids are assigned by the portal and cannot be edited"
                problem = EditProblem(_place(where), name, _shown(raw), message)
            else:
                problem = _unknown(_place(where), name, raw)
            problems.append(problem)
            if dropped is not None:
                dropped.append(problem)
            continue
        verdict = _verdict(column, raw, memo)
        if isinstance(verdict, _Refusal):
            problems.append(EditProblem(_place(where), *verdict))
            if dropped is None:
                cells[name] = None
                continue
            carried = _carried(column, raw)
            if carried is _UNCHECKED:
                dropped.append(problems[-1])
            else:
                cells[name] = cast(Value, carried)
        else:
            cells[name] = verdict
    return cells


def _carried(column: ColumnSpec, raw: object) -> object:
    """A refused cell's value as the column's type, rules broken or not, to be kept and
    corrected later; ``_UNCHECKED`` when it is not of that type (or, a number, not as the
    browser sent it)."""
    value = _from_editor(column, raw)
    typed = typed_only(column, value)
    if isinstance(typed, CellError):
        return _UNCHECKED
    if type(value) in (int, float) and column.type in _NUMBERS and not browser_exact(value):
        return _UNCHECKED
    if isinstance(typed, Decimal):
        return stored_decimal(column, typed)
    return typed


class _Refusal(tuple[str, str, str]):
    """Why a cell's value is refused: the column's label, the value as shown, the message."""


MAX_CHECKED_KEPT: Final = 100_000
"""How many verdicts a window keeps (``Window.checked``) before it starts again."""


def _verdict(
    column: ColumnSpec, raw: object, memo: dict[tuple[Any, ...], Any] | None
) -> Value | _Refusal:
    """The value a cell the grid sent holds in ``column``, or why it is refused; kept in
    ``memo`` by column, type and value (a float by its ``repr``: ``-0.0`` and ``0.0`` are equal
    but quoted apart; ``True``, ``1`` and ``1.0`` are equal but typed apart). A value that
    cannot be a key (a list in a forged state) is checked every time."""
    key: tuple[Any, ...] | None = None
    if memo is not None:
        kind = type(raw)
        key = (column.name, kind, repr(raw) if kind is float else raw)
        try:
            found = memo.get(key, _UNCHECKED)
        except TypeError:
            key = None
        else:
            if found is not _UNCHECKED:
                return cast(Value | _Refusal, found)
    verdict = _check_cell(column, raw)
    if key is not None and memo is not None:
        memo[key] = verdict
    return verdict


_UNCHECKED: Final = object()


def _check_cell(column: ColumnSpec, raw: object) -> Value | _Refusal:
    value = _from_editor(column, raw)
    if column.type in ("date", "datetime") and isinstance(value, str):
        long_year = _LONG_YEAR.match(value)
        if long_year:  # "+040505-02-02": 2024-05-05 typed into a month/day/year field
            return _Refusal((column.label, _shown(raw), _long_year_message(long_year["year"])))
    typed = validate_value(column, value)
    if isinstance(typed, CellError):  # said as an upload says it, rounded or not
        return _Refusal((column.label, typed.value, typed.message))
    if type(value) in (int, float) and column.type in _NUMBERS and not browser_exact(value):
        return _Refusal((column.label, _shown(raw), _NUMBERS[column.type]))
    if isinstance(typed, Decimal):  # as an upload writes it: 1.5 is 1.50 at scale 2
        return stored_decimal(column, typed)
    return typed


_LONG_YEAR: Final = re.compile(r"[ \t]*[+-]0*(?P<year>[1-9][0-9]{4,})-")
"""A date as a browser's date field sends one with a year past 9999 (ISO 8601's expanded
form, signed: ``+040505-02-02``; the field takes up to six digits): a date typed in another
order than the field's fills its year with the wrong digits. Unsigned, as a file or a person
writes it, it is judged as an upload judges it."""


def _long_year_message(year: str) -> str:
    return (
        f"The year {year} is past 9999. A date cell fills month, day and year in the order it "
        "shows them, so a date typed in another order (2024-05-05 into a month/day/year "
        "cell, say) lands in the wrong parts: pick the date from the cell's calendar, or type "
        "it in the order the cell shows."
    )


def _default(column: ColumnSpec) -> Value:
    """The value a new row takes in a column it was not given: its default, a decimal written
    as an upload writes it (``stored_decimal``)."""
    if isinstance(column.default, Decimal):
        return stored_decimal(column, column.default)
    return column.default


def _place(where: int | str) -> str:
    return _where(where) if isinstance(where, int) else where


def _from_editor(column: ColumnSpec, raw: object) -> object:
    """What the grid sends, read as the validator reads a cell.

    Date cells arrive as ISO strings, possibly with a midnight time (``2024-05-01T00:00:00``);
    datetimes as ISO strings without an offset, meaning UTC; pandas and numpy scalars as such.
    """
    kind = type(raw)
    if kind in _AS_IS or (kind is str and column.type != "date"):
        return raw
    if isinstance(raw, pd.Timestamp):
        raw = raw.to_pydatetime()
    elif isinstance(raw, np.generic):
        raw = raw.item()
    if column.type == "date" and isinstance(raw, str) and "T" in raw:
        midnight = _GRID_MIDNIGHT.fullmatch(raw)
        if midnight:
            return midnight["date"]
    return raw


_GRID_MIDNIGHT: Final = re.compile(
    r"(?P<date>[ \t\r\n]*[^T\s]*)T00:00(?::00(?:\.0+)?)?Z?[ \t\r\n]*"
)
"""A date as the grid sends one, at midnight (``2024-05-01T00:00:00.000``): the date is read as
an upload reads it; any other time of day is refused."""


_NUMBERS: Final = {
    # A number a browser may have rounded as it was typed (it holds 64-bit floats): refused, not
    # stored rounded. An unchanged cell is never sent, so the stored values are not concerned.
    "integer": "a browser holds whole numbers exactly only up to 9,007,199,254,740,991, so "
    "this may not be the number typed; type a smaller one, or store it from a CSV file (an "
    "upload keeps every digit)",
    "decimal": "a browser holds numbers exactly only to 15 significant digits, so this may not "
    "be the number typed; type at most 15 digits, or store it from a CSV file (an upload keeps "
    "every digit)",
}

_AS_IS: Final = frozenset({int, float, bool, Decimal, type(None)})
"""What the grid sends that the validator reads as it is (``_from_editor``'s fast path)."""


def _check_unique(
    spec: DatasetSpec,
    shown: _Columns,
    kept: Sequence[tuple[int, int]],
    edits: Mapping[int, Mapping[str, Value]],
    inserts: Sequence[tuple[str, Mapping[str, Value]]],
    problems: list[EditProblem],
) -> None:
    """A unique column may not end up with one value twice among the window's rows: the
    ``kept`` committed rows ``(position, row_id)`` with their edited values where they have
    them, else their shown ones, then the inserts. A clash is put on the cell edited (or the
    row added), never on a row the state did not touch: untouched cells are seen first."""
    for c in spec.columns:
        if not c.unique:
            continue
        seen: dict[Any, str] = {}
        cells = shown.cells[c.name]
        untouched: list[tuple[str, Value]] = []
        edited: list[tuple[str, Value]] = []
        for p, i in kept:
            mine = edits.get(i, {})
            if c.name in mine:
                edited.append((_where(i), mine[c.name]))
            else:
                untouched.append((_where(i), plain(cells[p])))
        rows = untouched + edited + [(where, v[c.name]) for where, v in inserts]
        for where, value in rows:
            if value is None:
                continue
            key = _unique_key(value)
            if key in seen:
                problems.append(
                    EditProblem(
                        where,
                        c.label,
                        _shown(value),
                        f"the value is already in {seen[key]}; this column must be unique",
                    )
                )
            else:
                seen[key] = where


def _unique_key(value: Value) -> Any:
    return (type(value).__name__, value.normalize() if isinstance(value, Decimal) else value)


class _Columns:
    """A frame's cells by column, read out once (a cell at a time through pandas costs more than
    the rest of a diff); ``row()`` gives one row as plain values, ``position`` each row id's
    position."""

    def __init__(self, frame: pd.DataFrame, spec: DatasetSpec) -> None:
        self.names = spec.names
        self.cells = {name: frame[name].tolist() for name in self.names}
        self.position = {int(i): p for p, i in enumerate(frame.index.tolist())}

    def row(self, position: int) -> dict[str, Value]:
        return {name: plain(self.cells[name][position]) for name in self.names}


def plain(value: object) -> Value:
    """A frame cell as a plain typed value: ``None``, str, int, Decimal, bool, date, datetime."""
    kind = type(value)
    if kind is str or kind is int or kind is Decimal or kind is bool or kind is date:
        return value  # type: ignore[return-value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        moment = value.to_pydatetime()
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str | int | Decimal | bool | date):
        return value
    return str(value)


def same_value(a: Value, b: Value) -> bool:
    """Equal as values of one column: ``1.50`` and ``1.5`` are the same decimal."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _shown(value: object) -> str:
    """A value as a problem shows it: short, lone surrogates escaped."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, date | datetime) else str(value)
    text = escape_surrogates(text)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------
# Applying and describing a ChangeSet
# ---------------------------------------------------------------------------------------------


def apply_changeset(
    frame: pd.DataFrame, changes: ChangeSet, new_ids: Iterable[int] = ()
) -> pd.DataFrame:
    """``frame`` (indexed by ``_row_id``) after ``changes``: updated cells, deleted rows gone,
    inserts appended under ``new_ids`` (default: after the largest id)."""
    out = frame.copy()
    for u in changes.updates:
        for name, value in u.after.items():
            out.at[u.row_id, name] = _cell(value)
    out = out.drop(index=[d.row_id for d in changes.deletes])
    ids = list(new_ids)
    if changes.inserts:
        start = int(frame.index.max()) + 1 if len(frame) else 1
        numbered = iter(range(start, start + len(changes.inserts)))
        ids = ids or [i.row_id if i.row_id is not None else next(numbered) for i in changes.inserts]
        new = pd.DataFrame(
            [{c: _cell(v) for c, v in i.values.items()} for i in changes.inserts],
            index=pd.Index(ids, name=frame.index.name),
        ).reindex(columns=out.columns)
        out = pd.concat([out, new.astype(out.dtypes.to_dict())])
    return out


@dataclass(frozen=True)
class CellChange:
    row_id: int
    column: str
    before: Value
    after: Value


def cell_changes(changes: ChangeSet, spec: DatasetSpec) -> list[CellChange]:
    """One line per changed cell, in row then column order, labelled by the column's label."""
    labels = {c.name: c.label for c in spec.columns}
    return [
        CellChange(u.row_id, labels.get(name, name), u.before[name], u.after[name])
        for u in changes.updates
        for name in u.after
    ]


def show_change(value: Value) -> str:
    """A value in a before -> after view: ``∅`` for no value, ``""`` for an empty text."""
    return "∅" if value is None else show_value(value) or '""'


def show_value(value: Value) -> str:
    """A typed value as the review tables show it (empty for a missing value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # to the microsecond when it has a fraction of a second
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if moment.microsecond else "") + " UTC")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # as written: 0.0000001, not str()'s 1E-7
    return str(value)
