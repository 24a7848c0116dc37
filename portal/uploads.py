"""The upload flow between the page and the database: check a file, propose or apply a spec,
and import it — into a new dataset, or appended to / replacing an existing one's rows.

Nothing is written unless the whole file passed; then the original file, the dataset (if new)
and the rows land in one transaction with their changesets.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from audit.changesets import number_after_commit
from portal import csv_import, datasets
from portal.actor import Actor
from portal.config import get_settings
from portal.csv_import import ParsedCSV
from portal.db import session_scope
from portal.errors import ValidationError
from portal.models import Changeset, Upload
from portal.spec import (
    COLUMN_TYPES,
    OPTION_SEPARATOR,
    ROW_ID,
    CellError,
    DatasetSpec,
    ValidationResult,
    as_grid_text,
    browser_rounds,
    check_new_patterns,
    dataset_table,
    infer_spec,
    validate,
)
from portal.wording import counted


@dataclass(frozen=True)
class NewDataset:
    name: str
    description: str = ""
    reason_required: bool = True
    """Whether every later edit and upload into it needs a reason (a revert always does)."""


@dataclass(frozen=True)
class ExistingDataset:
    dataset_id: int
    mode: Literal["append", "replace"] = "append"
    expected_rows: int | None = None
    """For a replace: the row count its confirmation said it deletes; another count when the
    dataset is locked (rows added or deleted meanwhile) refuses it, nothing written."""


@dataclass(frozen=True)
class ImportOutcome:
    """What an upload stored; ``seq`` is None when the changeset's number could not be read
    right after its COMMIT (the rows are in all the same)."""

    dataset_id: int
    dataset_name: str
    changeset_id: int
    seq: int | None
    rows: int
    mode: str


def read_file(
    data: bytes, *, encoding: str | None = None, delimiter: str | None = None
) -> ParsedCSV:
    """The checked, parsed file (size limit from PORTAL_MAX_UPLOAD_MB).

    Raises:
        EncodingNotConfirmed: not UTF-8; carries the proposed encoding to confirm.
        ImportRefused: anything else wrong with the file.
    """
    max_bytes = get_settings().max_upload_mb * 1024 * 1024
    return csv_import.read_upload(data, max_bytes=max_bytes, encoding=encoding, delimiter=delimiter)


def propose_spec(
    parsed: ParsedCSV, *, decimal_comma: bool = False
) -> tuple[DatasetSpec, list[str]]:
    columns = {label: parsed.frame[label] for label in parsed.header}
    return infer_spec(
        parsed.header,
        columns,
        decimal_comma=decimal_comma,
        comma_separated=parsed.dialect.delimiter == ",",
    )


def check(
    parsed: ParsedCSV, spec: DatasetSpec, *, decimal_comma: bool = False, max_errors: int = 10_000
) -> ValidationResult:
    """Every cell against the spec (the first ``max_errors`` errors listed, all counted)."""
    return validate(
        spec,
        parsed.frame,
        decimal_comma=decimal_comma,
        line_numbers=parsed.line_numbers,
        max_errors=max_errors,
    )


def name_problem(name: str) -> str | None:
    """``datasets.name_problem`` in a session of its own, for the Upload page's name field."""
    with session_scope() as session:
        return datasets.name_problem(session=session, name=name)


CLASH_CHUNK = 5_000
"""Values of a unique column looked up in the dataset per query."""


def with_dataset_clashes(
    result: ValidationResult, parsed: ParsedCSV, spec: DatasetSpec, dataset_id: int
) -> ValidationResult:
    """``result`` with, for a file to be added to a dataset, every value of a unique column that
    a row of the dataset holds already (an error of rule ``unique`` at the file's line, naming
    that row): the table would refuse the file for it at the first one, and the person should
    see them all in the report before storing, not one per try. The table's constraint stays
    the last word (a row added meanwhile)."""
    unique = [c for c in spec.columns if c.unique]
    if not unique or result.typed.empty:
        return result
    clashes: list[CellError] = []
    with session_scope() as session:
        dataset = datasets.get_dataset(session=session, dataset_id=dataset_id)
        table = dataset_table(spec, dataset.table_name)
        for column in unique:
            values = result.typed[column.name].tolist()
            present = [v for v in values if v is not None and v is not pd.NA]
            held: dict[Any, int] = {}
            for start in range(0, len(present), CLASH_CHUNK):
                chunk = present[start : start + CLASH_CHUNK]
                held |= dict(
                    session.execute(
                        select(table.c[column.name], func.min(table.c[ROW_ID]))
                        .where(table.c[column.name].in_(chunk))
                        .group_by(table.c[column.name])
                    ).all()
                )
            for position, value in enumerate(values):
                if value is None or value is pd.NA or value not in held:
                    continue
                clashes.append(
                    CellError(
                        int(parsed.line_numbers[position]),
                        column.label,
                        str(value),
                        "unique",
                        f"“{value}” is in the dataset already (row {held[value]:,}), and values "
                        f"of “{column.label}” must be unique: change it in the file, or that "
                        "row on the Edit page.",
                    )
                )
    if not clashes:
        return result
    errors = sorted([*result.errors, *clashes], key=lambda e: e.row)
    return ValidationResult(result.typed, errors, result.error_count + len(clashes))


def preview_rows(
    result: ValidationResult, spec: DatasetSpec, rows: int
) -> tuple[pd.DataFrame, list[str]]:
    """The first ``rows`` typed rows as the page shows them before storing, and the physical
    names of the columns turned into text there: a browser's grid shows numbers as 64-bit
    floats, so a whole number past 2**53 or a decimal of more than 15 digits would show rounded
    (9223372036854775807 as 9223372036854776000), and date-times to the second, so a fraction
    of a second would not show; not as it will be stored."""
    frame = result.typed.head(rows).copy()
    as_text: list[str] = []
    for column in spec.columns:
        if column.type not in ("integer", "decimal", "datetime"):
            continue
        values = frame[column.name].tolist()
        if column.type == "datetime":
            rounds = any(isinstance(v, datetime) and v.microsecond for v in values)
        else:
            rounds = browser_rounds(column, values)
        if not rounds:
            continue
        frame[column.name] = as_grid_text(values)
        as_text.append(column.name)
    return frame, as_text


def errors_by_rule(result: ValidationResult) -> dict[str, int]:
    """How many listed errors each rule produced, most frequent first."""
    return dict(Counter(e.rule for e in result.errors).most_common())


def spec_rows(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The spec as editable rows of plain values (bounds as text, options joined by ``|``)."""
    return [
        {
            "label": c.label,
            "type": c.type,
            "format": c.format,  # a date's only (ColumnSpec refuses it elsewhere)
            "scale": c.scale,
            "required": c.required,
            "unique": c.unique,
            "min": _bound_text(c.min),
            "max": _bound_text(c.max),
            "max_length": c.max_length,
            "regex": c.regex or "",
            "options": f" {OPTION_SEPARATOR} ".join(c.options or ()),
        }
        for c in spec.columns
    ]


def _bound_text(bound: object) -> str:
    """A min or max as the rules grid shows it: a decimal written out (``str`` would write
    0.0000001 as 1E-7, which the grid does not read back)."""
    if bound is None:
        return ""
    return format(bound, "f") if isinstance(bound, Decimal) else str(bound)


def spec_from_rows(rows: Sequence[Mapping[str, Any]], *, base: DatasetSpec) -> DatasetSpec:
    """Apply edited ``spec_rows`` to ``base`` (same columns, same order, same physical names).

    Raises:
        ValidationError: a row breaks a rule, or has a pattern the two regex engines would read
            differently (``spec.check_new_patterns``); the message names the column and what
            to fix.
    """
    if len(rows) != len(base.columns):
        raise ValidationError(
            "Every column of the file needs its row in the spec; "
            "reload the file to start the spec again."
        )
    columns = []
    for row, original in zip(rows, base.columns, strict=True):
        # A cell the grid sends empty is None or, read through pandas, NaN (which is truthy:
        # bool(NaN) ticked a box, str(NaN) named a column "nan"): _blank_to_none reads both.
        kind = str(_blank_to_none(row.get("type")) or original.type)
        if kind not in COLUMN_TYPES:
            raise ValidationError(
                f"Column “{original.label}”: choose a type among {', '.join(COLUMN_TYPES)}."
            )
        given_options = str(_blank_to_none(row.get("options")) or "")
        options = [o.strip() for o in given_options.split(OPTION_SEPARATOR)]
        columns.append(
            replace(
                original,
                label=str(_blank_to_none(row.get("label")) or original.label),
                type=kind,
                required=_ticked(row.get("required")),
                unique=_ticked(row.get("unique")),
                min=_blank_to_none(row.get("min")),
                max=_blank_to_none(row.get("max")),
                max_length=_int_or_none(row.get("max_length"), original.label),
                regex=_blank_to_none(row.get("regex")),
                options=tuple(o for o in options if o) or None,
                scale=_int_or_none(
                    row.get("scale", original.scale), original.label, "decimal places"
                )
                if kind == "decimal"
                else None,
                format=_blank_to_none(row.get("format", original.format))
                if kind == "date"
                else None,
            )
        )
    spec = DatasetSpec(columns=tuple(columns), version=base.version)
    check_new_patterns(spec)
    return spec


def _ticked(value: Any) -> bool:
    """A tick box of the rules grid: ticked only by a true boolean (not by an empty cell, read
    as NaN, nor by a forged text such as "false")."""
    return isinstance(value, bool | np.bool_) and bool(value)


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if value != value:  # NaN from the grid
            return None
    except TypeError:  # pragma: no cover - unordered types
        pass
    return value.strip() if isinstance(value, str) else value


def _int_or_none(value: Any, label: str, rule: str = "max length") -> int | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity from the browser
        whole = None
    if whole is None or isinstance(value, bool) or (isinstance(value, float) and whole != value):
        raise ValidationError(f"Column “{label}”: {rule} must be a whole number.")
    return whole


def default_reason(target: NewDataset | ExistingDataset, mode: str, filename: str) -> str:
    """What an upload's changeset gives as its reason when the person gave none (a dataset
    that does not require one): what the upload did, in words."""
    if isinstance(target, NewDataset):
        return f"created from {filename}"
    return f"rows replaced with {filename}" if mode == "replace" else f"rows added from {filename}"


def import_file(
    *,
    actor: Actor,
    filename: str,
    data: bytes,
    parsed: ParsedCSV,
    spec: DatasetSpec,
    result: ValidationResult,
    target: NewDataset | ExistingDataset,
    reason: str = "",
    progress: Callable[[str], object] = lambda _step: None,
) -> ImportOutcome:
    """Store the file and its rows, with their changesets, in one transaction.

    Raises:
        ValidationError: the file did not pass, the name is taken, the file's name holds a NUL,
            a replace's dataset no longer has the ``expected_rows`` its confirmation said,
            no reason for a dataset that needs one or a longer one than
            ``datasets.MAX_REASON_CHARS``, or the rows break a rule only the database sees;
            nothing is written.
        PermissionDenied, NotFound: as ``portal.datasets``.
    """
    if not result.ok:
        raise ValidationError(
            f"The file has {result.error_count} invalid cells; fix them and upload it again."
        )
    datasets.check_reason_length(reason)
    if "\x00" in filename:  # a forged form can send one; the audit log's JSON cannot hold it
        raise ValidationError(
            "The file's name contains a NUL character (\\x00), which the audit log cannot "
            "store: rename the file and upload it again. Nothing was written."
        )
    report = {
        "rows": parsed.row_count,
        "encoding": parsed.encoding,
        "delimiter": parsed.dialect.name,
        "errors": 0,
    }
    digest = hashlib.sha256(data).hexdigest()
    source = {"filename": filename, "size": len(data), "sha256": digest}
    # The original is compressed in a thread while the rows load (zlib releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool, session_scope() as session:
        compressed = pool.submit(zlib.compress, data, 1)
        mode: Literal["append", "replace"] = "append"
        if isinstance(target, NewDataset):
            progress(f"Creating the table for “{target.name}” with its rules and audit capture")
            dataset = datasets.create_dataset(
                session=session,
                actor=actor,
                name=target.name,
                spec=spec,
                description=target.description,
                own_changeset=False,
                reason_required=target.reason_required,
            )
        else:
            # Locked before its setting is checked: an admin's change of it, or a commit
            # changing its row count, under way now is waited for and seen.
            dataset = datasets.get_dataset(
                session=session, dataset_id=target.dataset_id, for_update=True
            )
            mode = target.mode
            if (
                mode == "replace"
                and target.expected_rows is not None
                and dataset.row_count != target.expected_rows
            ):
                now = counted(dataset.row_count, "row")
                raise ValidationError(
                    f"“{dataset.name}” has {now} now, not the {target.expected_rows:,} this "
                    "confirmation said: it was changed meanwhile. "
                    "Nothing was written; check the count and confirm again."
                )
            if dataset.reason_required and not reason.strip():
                doing = "replacing the rows of" if mode == "replace" else "adding rows to"
                raise ValidationError(
                    f"Say why you are {doing} “{dataset.name}”: this dataset needs a reason for "
                    "every change. Nothing was written."
                )
        rows_before = dataset.row_count
        verb = "Replacing the rows with" if mode == "replace" else "Loading"
        rows = counted(parsed.row_count, "row")
        progress(f"{verb} {rows} (COPY, recorded as one bulk load)")
        counts = datasets.load_rows(
            session=session,
            actor=actor,
            dataset_id=dataset.id,
            typed=result.typed,
            mode=mode,
            source=source,
            reason=reason or default_reason(target, mode, filename),
            created=isinstance(target, NewDataset),
            line_numbers=parsed.line_numbers,
        )
        progress(f"Keeping the original file ({len(data):,} bytes) in the audit log")
        datasets.record_upload(
            session=session,
            actor=actor,
            filename=filename,
            data=data,
            mime_type=parsed.mime,
            encoding=parsed.encoding,
            report=report,
            dataset_id=dataset.id,
            changeset_id=counts.changeset_id,
            sha256=digest,
            compressed=compressed.result(),
        )
        # As autovacuum would, only once a tenth of the table is new: a few rows appended to a
        # large table leave its statistics as good as they were.
        if mode == "replace" or parsed.row_count * 10 >= rows_before:
            progress("Gathering the table's statistics, so filters and commits use its indexes")
            datasets.gather_statistics(session=session, table_name=dataset.table_name)
        dataset_id, dataset_name = dataset.id, dataset.name
        progress("Sealing the changeset into the audit hash chain")
    seq = number_after_commit(counts.changeset_id)  # the rows are in whatever this read meets
    return ImportOutcome(dataset_id, dataset_name, counts.changeset_id, seq, parsed.row_count, mode)


def dataset_choices() -> list[tuple[int, str]]:
    """``(id, name)`` of every dataset, for the target picker."""
    with session_scope() as session:
        return datasets.dataset_names(session=session)


def dataset_spec(dataset_id: int) -> DatasetSpec:
    with session_scope() as session:
        return datasets.dataset_spec(datasets.get_dataset(session=session, dataset_id=dataset_id))


def row_count(dataset_id: int) -> int:
    """How many rows the dataset has now: what replacing its rows deletes."""
    with session_scope() as session:
        return datasets.get_dataset(session=session, dataset_id=dataset_id).row_count


@dataclass(frozen=True)
class EarlierCopy:
    """An earlier upload of the very same bytes into a dataset: its changeset's number, who
    and when, and how many rows it added."""

    seq: int
    actor_display_name: str
    actor_username: str
    committed_at: datetime
    rows: int


def earlier_copies(dataset_id: int, sha256: str) -> list[EarlierCopy]:
    """The sealed uploads into the dataset of a file with this ``sha256``, oldest first (for
    the Upload page to say an append would add those rows again)."""
    with session_scope() as session:
        rows = session.execute(
            select(
                Changeset.seq,
                Changeset.actor_display_name,
                Changeset.actor_username,
                Changeset.committed_at,
                Changeset.inserted,
            )
            .join(Upload, Upload.changeset_id == Changeset.id)
            .where(
                Upload.dataset_id == dataset_id,
                Upload.sha256 == sha256,
                Changeset.seq.is_not(None),
            )
            .order_by(Changeset.seq)
        ).all()
    return [
        EarlierCopy(seq, name, username, at, inserted)
        for seq, name, username, at, inserted in rows
        if seq is not None and at is not None  # sealed: both set
    ]


def reason_required(dataset_id: int) -> bool:
    """Whether changes to the dataset need a reason (``import_file`` refuses one without)."""
    with session_scope() as session:
        return datasets.get_dataset(session=session, dataset_id=dataset_id).reason_required
