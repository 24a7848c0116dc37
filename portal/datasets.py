"""Datasets: a name, a schema spec, and a real typed table ``data.<table_name>`` built from it.

Creating a dataset creates its table and installs audit capture in the same transaction, so no
row can ever reach it unrecorded. Rows arrive by upload (``load_rows``: append, or replace the
contents) as audited bulk loads; the original file is kept in ``audit.upload``.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import MetaData, Text, func, literal, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from audit.bulk import Jsonb, binary_copy, bulk_insert, reserve_row_ids
from audit.capture import install_capture, qualified_table
from audit.changesets import ChangesetCounts, close_changeset, open_changeset
from portal import spec as specs
from portal.actor import Actor
from portal.csv_import import copy_stream_chunks
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.models import Dataset
from portal.names import hidden_character

LoadMode = Literal["append", "replace"]
MAX_NAME_CHARS = 120
MAX_DESCRIPTION_CHARS = 2_000
MAX_REASON_CHARS: Final = 2_000
"""The longest reason a change may give (an edit, a revert, an upload, a setting)."""
LABEL_WHITESPACE = frozenset("\t\n\r")
"""Controls a column label may hold: a spreadsheet header cell can break its text over lines."""


class ChangedMeanwhile(ValidationError):
    """A dataset's setting changed since the person read it: nothing was written; they look
    again at what it is now."""


def check_reason_length(reason: str) -> None:
    """Raises: ValidationError: ``reason`` is longer than ``MAX_REASON_CHARS``."""
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationError(
            f"The reason is {len(reason):,} characters; use at most {MAX_REASON_CHARS:,}."
        )


def admin_reason(actor: Actor, reason: str, *, may_not: str, say_why: str) -> str:
    """``reason`` stripped, for a change to a dataset itself that only admins make.

    Raises:
        PermissionDenied: the actor is not an admin (``may_not`` says what they may not do).
        ValidationError: no reason (``say_why`` asks for one), or one over
            ``MAX_REASON_CHARS``.
    """
    if not actor.can("admin"):
        raise PermissionDenied(may_not)
    reason = reason.strip()
    if not reason:
        raise ValidationError(say_why)
    check_reason_length(reason)
    return reason


def open_dataset_changeset(
    *,
    session: Session,
    actor: Actor,
    dataset: Dataset,
    kind: str,
    reason: str,
    detail: dict[str, Any] | None,
    client_info: dict[str, Any] | None = None,
    correlation_id: uuid.UUID | None = None,
) -> int:
    """Open the changeset of ``actor``'s change to ``dataset`` in the session's transaction
    (``audit.changesets.open_changeset``)."""
    return open_changeset(
        session=session,
        kind=kind,
        dataset_id=dataset.id,
        actor_username=actor.username,
        actor_display_name=actor.display_name,
        reason=reason,
        detail=detail,
        client_info=client_info,
        correlation_id=correlation_id,
    )


def _require_editor(actor: Actor) -> None:
    if not actor.can("editor"):
        raise PermissionDenied("Only editors and admins can create datasets or load rows.")


def dataset_names(*, session: Session) -> list[tuple[int, str]]:
    """``(id, name)`` of every dataset, by name (``portal.browse`` has the full listing)."""
    rows = session.execute(select(Dataset.id, Dataset.name).order_by(func.lower(Dataset.name)))
    return [(row.id, row.name) for row in rows]


def get_dataset(*, session: Session, dataset_id: int, for_update: bool = False) -> Dataset:
    """``for_update``: locked, and read afresh even if the session read it before (what it
    read then may have changed while it waited for the lock).

    Raises: NotFound."""
    stmt = select(Dataset).where(Dataset.id == dataset_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    dataset = session.scalars(stmt).one_or_none()
    if dataset is None:
        raise NotFound(f"There is no dataset with id {dataset_id}; it may have been removed.")
    return dataset


@dataclass(frozen=True)
class Recount:
    """A dataset's stored row count before and after ``recount_rows``."""

    dataset_id: int
    name: str
    was: int
    rows: int

    def summary(self) -> str:
        head = f"dataset {self.dataset_id} “{self.name}”"
        if self.was == self.rows:
            return f"{head}: {self.rows:,} rows, as its stored count said; nothing was changed"
        return f"{head}: stored row count {self.was:,} corrected to {self.rows:,}"


def recount_rows(*, session: Session, dataset_id: int) -> Recount:
    """Set the dataset's stored ``row_count`` to the rows its table holds, in the session's
    transaction; what it was and is.

    The count drifts only through writes the portal never saw counted: a write made with
    triggers off, or one made outside the portal before migration 0016 counted them. The
    dataset is locked ``FOR UPDATE`` before the table is counted: a commit under way (which
    holds it ``FOR KEY SHARE`` until it adds its own inserts less deletes) is waited for and
    counted, and a write outside the portal committing meanwhile adds its own as it is sealed,
    after this transaction. The count is the dataset's bookkeeping, not its data: nothing goes
    into the audit log.

    Raises:
        NotFound: no such dataset.
    """
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    table = qualified_table(session, dataset.table_name)
    rows = count_rows(session, table)
    was = dataset.row_count
    if rows != was:
        dataset.row_count = rows
        session.flush()
    return Recount(dataset.id, dataset.name, was, rows)


def count_rows(session: Session, table: str) -> int:
    """The rows the table ``table`` (quoted and qualified, ``audit.capture.qualified_table``)
    holds, counted."""
    return int(session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def dataset_spec(dataset: Dataset) -> specs.DatasetSpec:
    return specs.DatasetSpec.from_json(dataset.spec)


def _free_table_name(session: Session, name: str) -> str:
    """A table name no dataset or table has, reserved for this transaction.

    Different names can share one (``sales 2024``, ``sales-2024``, or ``sales`` taken twice
    over and ``sales 2``), and the per-name lock of ``create_dataset`` does not make their
    creations take turns: each candidate is locked before it is looked up, so a second
    creation waits for the first and then sees its table, instead of failing on it.
    """
    # The same safe-identifier rules as column names, shortened to leave room for a suffix.
    base = f"ds_{specs.physical_names([name])[0][:40].rstrip('_')}"
    candidate, n = base, 1
    while True:
        session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext("portal.dataset_table:" + candidate)))
        )
        in_use = session.scalar(
            text(
                "SELECT EXISTS (SELECT FROM portal.datasets WHERE table_name = :t)"
                " OR EXISTS (SELECT FROM pg_tables WHERE schemaname = 'data' AND tablename = :t)"
            ),
            {"t": candidate},
        )
        if not in_use:
            return candidate
        n += 1
        candidate = f"{base}_{n}"


def _clean_name(name: str) -> str:
    """``name`` as a dataset is named: spaces collapsed, composed (NFC: "é" typed and "e" + a
    combining accent, from a macOS file name, are one name on screen, so one name here).

    Raises:
        ValidationError: empty, longer than ``MAX_NAME_CHARS``, or with an invisible character.
    """
    clean = unicodedata.normalize("NFC", " ".join(name.split()))
    if not clean:
        raise ValidationError("Give the dataset a name.")
    if len(clean) > MAX_NAME_CHARS:
        raise ValidationError(f"The name is {len(clean)} characters; use at most {MAX_NAME_CHARS}.")
    hidden = hidden_character(clean)
    if hidden is not None:
        raise ValidationError(
            f"The name has an invisible or control character ({hidden[1]}, character "
            f"{hidden[0]}), so it could look like another name: type it again without it."
        )
    return clean


def check_labels(spec: specs.DatasetSpec, fix: str) -> None:
    """Raises: ValidationError: a column label holds an invisible or control character (but
    the line breaks of ``LABEL_WHITESPACE``), so it could look like another; ``fix`` says what
    to do."""
    for number, column in enumerate(spec.columns, start=1):
        hidden = hidden_character(column.label, LABEL_WHITESPACE)
        if hidden is not None:
            shown = "".join(ch if ch.isprintable() else " " for ch in column.label).strip()
            raise ValidationError(
                f"Column {number} (“{shown}”) has an invisible or control character in its "
                f"label ({hidden[1]}, character {hidden[0]}), so it could look like another "
                f"column: {fix}."
            )


def name_problem(*, session: Session, name: str) -> str | None:
    """What is wrong with ``name`` for a new dataset, said before anything is tried (as
    ``create_dataset`` would refuse it, which stays the last word: a name taken meanwhile);
    None if nothing."""
    try:
        clean = _clean_name(name)
    except ValidationError as exc:
        return str(exc)
    if (taken := _name_taken(session, clean)) is not None:
        return _taken_message(taken)
    return None


def _name_taken(session: Session, clean: str, *, dataset_id: int | None = None) -> str | None:
    """The name of the dataset (other than ``dataset_id``) that has ``clean`` as its name, in
    any case, or None: lower-cased by PostgreSQL on both sides, as Python's str.lower() differs
    from it (a final Σ, İ), so a name taken already could pass and fail on the unique
    constraint."""
    taken = select(Dataset.name).where(
        func.lower(Dataset.name) == func.lower(literal(clean, Text()))
    )
    if dataset_id is not None:
        taken = taken.where(Dataset.id != dataset_id)
    name: str | None = session.scalar(taken.limit(1))
    return name


def _taken_message(taken: str) -> str:
    return (
        f"A dataset named “{taken}” exists already (names are compared ignoring case); "
        "choose another name."
    )


def _check_description(description: str) -> None:
    """Raises: ValidationError: longer than ``MAX_DESCRIPTION_CHARS``."""
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(
            f"The description is {len(description):,} characters; use at most "
            f"{MAX_DESCRIPTION_CHARS:,}."
        )


def _claim_name(session: Session, clean: str, *, dataset_id: int | None = None) -> None:
    """Take ``clean`` for a dataset (``dataset_id``: an existing one, which may keep its own
    name in another case) until the transaction ends.

    Two transactions claiming one name (lower-cased by PostgreSQL) take turns here, so the
    second is told, not refused by the unique constraint.

    Raises:
        ValidationError: another dataset has the name, in any case.
    """
    folded = func.lower(literal(clean, Text()))
    session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(literal("portal.dataset_name:") + folded)))
    )
    if (taken := _name_taken(session, clean, dataset_id=dataset_id)) is not None:
        raise ValidationError(_taken_message(taken))


def create_dataset(
    *,
    session: Session,
    actor: Actor,
    name: str,
    spec: specs.DatasetSpec,
    description: str = "",
    reason_required: bool = True,
    reason: str = "",
    own_changeset: bool = True,
) -> Dataset:
    """Create the dataset, its table (types and constraints from ``spec``) and its capture
    triggers, recorded as a changeset of kind ``dataset`` holding the spec — or, with
    ``own_changeset=False``, by the upload changeset that follows in the same transaction
    (``load_rows(created=...)``), so creating a dataset from a file is one changeset.

    Raises:
        PermissionDenied: the actor is a viewer.
        ValidationError: the name is empty, too long, taken or holds an invisible character, a
            column label holds one, the description is too long, the spec has no columns, or a
            pattern is one the two regex engines would read differently
            (``spec.check_new_patterns``) or PostgreSQL cannot compile.
    """
    _require_editor(actor)
    clean = _clean_name(name)
    check_labels(spec, "remove it from the file's header, or rename the column, and upload again")
    _check_description(description)
    _claim_name(session, clean)
    if not spec.columns:
        raise ValidationError("A dataset needs at least one column.")
    specs.check_new_patterns(spec)
    check_patterns_compile(session, spec)
    table_name = _free_table_name(session, clean)
    dataset = Dataset(
        name=clean,
        table_name=table_name,
        description=description.strip(),
        owner=actor.username,
        spec=spec.to_json(),
        reason_required=reason_required,
    )
    session.add(dataset)
    session.flush()
    specs.ddl_table(spec, table_name, MetaData()).create(session.connection())
    install_capture(session=session, table_name=table_name, dataset_id=dataset.id)
    if not own_changeset:
        return dataset
    changeset = open_dataset_changeset(
        session=session,
        actor=actor,
        dataset=dataset,
        kind="dataset",
        reason=reason or f"created dataset {clean}",
        detail=creation_detail(dataset),
    )
    close_changeset(session=session, changeset_id=changeset)
    return dataset


def check_patterns_compile(session: Session, spec: specs.DatasetSpec) -> None:
    """Each pattern compiled by PostgreSQL, whose CHECK will use it: ``check_new_patterns``
    refuses syntax the two regex engines read differently, this whatever else PostgreSQL refuses
    (it compiles a CHECK's pattern only at the first row it checks, mid-load).

    Raises:
        ValidationError: a pattern PostgreSQL cannot compile.
    """
    for c in spec.columns:
        if c.regex is None:
            continue
        try:
            with session.begin_nested():
                session.execute(select(literal("").op("~")(literal(c.regex, Text()))))
        except DBAPIError as exc:
            detail = str(getattr(exc.orig, "pgerror", "") or exc.orig).strip().splitlines()[0]
            raise ValidationError(
                f"The pattern {c.regex!r} of column {c.label!r} is not one PostgreSQL accepts "
                f"({detail.removeprefix('ERROR:').strip()}); write it another way."
            ) from None


def creation_detail(dataset: Dataset) -> dict[str, Any]:
    """What a changeset records of a dataset's creation: its name, table, spec and whether its
    changes need a reason."""
    return {
        "action": "create",
        "name": dataset.name,
        "table": dataset.table_name,
        "spec": dataset.spec,
        "reason_required": dataset.reason_required,
    }


def set_reason_required(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    required: bool,
    expected: bool,
    reason: str,
) -> int:
    """Whether every edit of the dataset and upload into it needs a reason (a revert always
    does); the change of setting is itself a ``dataset`` changeset, with who, when, why and
    the value before and after in its detail. Returns the changeset's id.

    ``expected`` is the setting the admin saw: if someone changed it since, nothing is
    written, as for ``users.set_role``.

    Raises:
        PermissionDenied: the actor is not an admin.
        NotFound: no such dataset.
        ValidationError: no reason or a longer one than ``MAX_REASON_CHARS``, or the setting
            already as asked.
        ChangedMeanwhile: the setting changed since it was read.
    """
    reason = admin_reason(
        actor,
        reason,
        may_not="Only admins can change whether a dataset's changes need a reason.",
        say_why="Say why you are changing this setting; nothing was written.",
    )
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    now = "required" if dataset.reason_required else "optional"
    if dataset.reason_required != expected:
        raise ChangedMeanwhile(
            f"Someone changed this setting of “{dataset.name}” since you loaded the page: a "
            f"reason is now {now}. Nothing was written; look again and decide."
        )
    if dataset.reason_required == required:
        raise ValidationError(f"A reason is {now} for “{dataset.name}” already; nothing to change.")
    changeset = open_dataset_changeset(
        session=session,
        actor=actor,
        dataset=dataset,
        kind="dataset",
        reason=reason,
        detail={"action": "settings", "reason_required": {"before": expected, "after": required}},
    )
    dataset.reason_required = required
    session.flush()
    close_changeset(session=session, changeset_id=changeset)
    return changeset


def describe_dataset(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    name: str,
    description: str,
    expected: tuple[str, str],
    reason: str,
) -> int:
    """Rename the dataset and/or change its description; the change is itself a ``dataset``
    changeset, with who, when, why and each value before and after in its detail. Returns the
    changeset's id. Its table keeps its name: the rows, their history and every link to the
    dataset (by id) stay as they were.

    ``expected`` is the ``(name, description)`` the admin saw: if someone changed either since,
    nothing is written, as for ``set_reason_required``.

    Raises:
        PermissionDenied: the actor is not an admin.
        NotFound: no such dataset.
        ValidationError: no reason or a longer one than ``MAX_REASON_CHARS``; a name that is
            empty, too long, holds an invisible character or is another dataset's; a
            description longer than ``MAX_DESCRIPTION_CHARS``; or nothing to change.
        ChangedMeanwhile: the name or description changed since they were read.
    """
    reason = admin_reason(
        actor,
        reason,
        may_not="Only admins can rename a dataset or change its description.",
        say_why="Say why you are making this change; nothing was written.",
    )
    clean, described = _clean_name(name), description.strip()
    _check_description(described)
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    if (dataset.name, dataset.description) != expected:
        raise ChangedMeanwhile(
            f"Someone renamed “{expected[0]}” or changed its description since you loaded the "
            f"page: it is now “{dataset.name}”. Nothing was written; look again and decide."
        )
    changed = {
        key: {"before": before, "after": after}
        for key, before, after in (
            ("name", dataset.name, clean),
            ("description", dataset.description, described),
        )
        if before != after
    }
    if not changed:
        raise ValidationError(
            f"“{dataset.name}” has that name and description already; nothing to change."
        )
    if "name" in changed:
        _claim_name(session, clean, dataset_id=dataset.id)
    changeset = open_dataset_changeset(
        session=session,
        actor=actor,
        dataset=dataset,
        kind="dataset",
        reason=reason,
        detail={"action": "settings", **changed},
    )
    dataset.name, dataset.description = clean, described
    session.flush()
    close_changeset(session=session, changeset_id=changeset)
    return changeset


QUICK_STATISTICS_TARGET: Final = 10
"""``default_statistics_target`` of ``gather_statistics``: 3,000 sampled rows instead of
30,000 (on 1,000,000 rows 0.03 s instead of 0.35 s)."""


def gather_statistics(*, session: Session, table_name: str) -> None:
    """A quick ``ANALYZE`` of the dataset's table, in the caller's transaction (its own inserts
    count as rows, its own deletes do not).

    Called after a bulk load: until a table has statistics, PostgreSQL plans as if it knew
    nothing of it, and a commit's ``_row_id = ANY(…)`` row lock reads the whole table instead
    of its primary key (on 100,000 rows about 15 ms instead of 2.5 ms, growing with the table)
    until autovacuum gets round to it. Its row count is what matters, so a small sample does:
    autovacuum analyses the table again in full soon after, since the load's rows count as
    changed since this analysis once the transaction commits.
    """
    previous = session.scalar(text("SELECT current_setting('default_statistics_target')"))
    session.execute(
        text("SELECT set_config('default_statistics_target', :v, true)"),
        {"v": str(QUICK_STATISTICS_TARGET)},
    )
    session.execute(text(f"ANALYZE {qualified_table(session, table_name)}"))
    session.execute(
        text("SELECT set_config('default_statistics_target', :v, true)"), {"v": previous}
    )


def record_upload(
    *,
    session: Session,
    actor: Actor,
    filename: str,
    data: bytes,
    mime_type: str,
    encoding: str | None,
    report: dict[str, Any],
    sha256: str,
    compressed: bytes,
    dataset_id: int | None = None,
    changeset_id: int | None = None,
) -> None:
    """Keep the uploaded file (``data``; ``compressed``: it zlib-ed, ``sha256``: its digest)
    with its verdicts.

    Sent with a binary COPY: a large file travels as raw bytes, not a hex literal.

    Raises:
        PermissionDenied: the actor is a viewer.
    """
    _require_editor(actor)
    binary_copy(
        session,
        "audit.upload",
        [
            "changeset_id",
            "dataset_id",
            "actor_username",
            "filename",
            "size_bytes",
            "sha256",
            "mime_type",
            "encoding",
            "compression",
            "content",
            "report",
        ],
        [
            (
                changeset_id,
                dataset_id,
                actor.username,
                filename,
                len(data),
                sha256,
                mime_type,
                encoding,
                "zlib",
                compressed,
                Jsonb(json.dumps(report)),
            )
        ],
    )


def load_rows(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    typed: pd.DataFrame,
    mode: LoadMode = "append",
    source: dict[str, Any] | None = None,
    reason: str = "",
    created: bool = False,
    line_numbers: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> ChangesetCounts:
    """Append ``typed`` (validated against the dataset's spec) to the dataset, or replace its
    rows with it, as one changeset of kind ``upload`` (which also records the dataset's
    creation when ``created``, and ``source``: the uploaded file's name, size and SHA-256, so
    the hash chain covers the original file kept in ``audit.upload``).

    Raises:
        PermissionDenied: the actor is a viewer.
        NotFound: no such dataset.
        ValidationError: the rows break a rule only the database can see (a unique value that
            exists already, named by its line in the file from ``line_numbers``, one per row
            of ``typed``); nothing is written.
    """
    _require_editor(actor)
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    spec = dataset_spec(dataset)
    table = qualified_table(session, dataset.table_name)
    changeset = open_dataset_changeset(
        session=session,
        actor=actor,
        dataset=dataset,
        kind="upload",
        reason=reason,
        detail={
            "mode": mode,
            "file": source,
            "rows": len(typed),
            **({"created": creation_detail(dataset)} if created else {}),
        },
    )
    try:
        if mode == "replace":
            session.execute(text(f"DELETE FROM {table}"))
        if len(typed):
            first = reserve_row_ids(
                session=session, table_name=dataset.table_name, count=len(typed)
            )
            bulk_insert(
                session=session,
                changeset_id=changeset,
                table_name=dataset.table_name,
                columns=[c.name for c in spec.columns],
                csv_bytes=copy_stream_chunks(typed, spec, first),
            )
    except IntegrityError as exc:
        raise ValidationError(
            _integrity_message(exc, spec, dataset.table_name, typed, line_numbers)
        ) from exc
    except DBAPIError as exc:
        if not too_long_for_an_index(exc.orig):
            raise
        longest = _longest_text(spec, typed)
        raise ValidationError(
            too_long_for_index_message("a row of the file", *longest, again="upload the file again")
        ) from exc
    counts = close_changeset(session=session, changeset_id=changeset)
    # What the portal just did (a write made outside the portal is counted as its changeset is
    # sealed: migration 0016).
    dataset.row_count = (0 if mode == "replace" else dataset.row_count) + counts.inserted
    dataset.updated_at = datetime.now(UTC)
    session.flush()
    return counts


MAX_INDEXED_BYTES: Final = 2704
"""The most a btree entry may take (PostgreSQL's, for its 8 KiB pages): a value over it that does
not compress cannot go into a column's on-demand index (``portal.indexes``)."""


def too_long_for_an_index(error: object) -> bool:
    """Whether a driver error is a value too long for an index (SQLSTATE 54000)."""
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or ""
    return getattr(error, "pgcode", None) == "54000" and "index row" in message


def too_long_for_index_message(where: str, column: str, size: int, *, again: str) -> str:
    how_long = f" ({size:,} bytes)" if size else ""
    return (
        f"The database refused {where}, column “{column}”: its value{how_long} is too long for"
        " the column's index, which keeps sorting and filtering this dataset fast and takes at"
        f" most about {MAX_INDEXED_BYTES:,} bytes. Nothing was written; shorten the value (or"
        f" keep long text in a column nobody sorts or filters by) and {again}."
    )


def _longest_text(spec: specs.DatasetSpec, typed: pd.DataFrame) -> tuple[str, int]:
    """The label of the text column holding the longest value (in UTF-8 bytes), and its size."""
    found = ("a column", 0)
    for c in spec.columns:
        if c.type not in ("text", "category") or c.name not in typed:
            continue
        size = max((len(v.encode()) for v in typed[c.name] if isinstance(v, str)), default=0)
        if size > found[1]:
            found = (c.label, size)
    return found


def guarded_columns(spec: specs.DatasetSpec, table_name: str) -> dict[str, str]:
    """The table's constraints, as ``ddl_table`` names them, and the column (physical name)
    each guards: to say which column a constraint violation is about."""
    table = specs.dataset_table(spec, table_name)
    return {
        str(con.name): col.name
        for con in table.constraints
        if isinstance(con, ColumnCollectionConstraint)
        for col in con.columns
        if col.name in spec.names
    }


def _line_holding(
    name: str,
    wanted: specs.Value,
    typed: pd.DataFrame,
    line_numbers: Sequence[int] | npt.NDArray[np.int64] | None,
) -> int | None:
    """The line of the file whose value in column ``name`` is ``wanted``, if ``line_numbers``
    are known."""
    if line_numbers is None or name not in typed:
        return None
    for position, value in enumerate(typed[name].tolist()):
        if value is not None and value is not pd.NA and value == wanted:
            return int(line_numbers[position])
    return None


def _integrity_message(
    exc: IntegrityError,
    spec: specs.DatasetSpec,
    table_name: str,
    typed: pd.DataFrame,
    line_numbers: Sequence[int] | npt.NDArray[np.int64] | None,
) -> str:
    orig: Any = exc.orig
    diag = getattr(orig, "diag", None)
    detail = getattr(diag, "message_detail", None) or ""
    constraint = getattr(diag, "constraint_name", None) or ""
    labels = {c.name: c.label for c in spec.columns}
    guarded = guarded_columns(spec, table_name).get(constraint)
    column = labels[guarded] if guarded else None
    taken = specs.taken_value(spec, guarded, detail) if guarded else None
    if column and taken and guarded:
        # A file's values of a unique column are checked among themselves: the value names the
        # row of the file that clashes, with a row already in the dataset.
        value, wanted = taken
        line = _line_holding(guarded, wanted, typed, line_numbers)
        row = "that row" if line is None else f"line {line:,}"
        return (
            f"The file's “{value}” in column “{column}” is already in the dataset, whose values "
            f"there must be unique. Nothing was written. Change or remove {row} of the file (or "
            "the dataset's row) and upload again."
        )
    checked = specs.check_rule(spec, constraint)
    if checked is not None:  # a value the validator took and the table's CHECK did not
        return (
            f"The database refused a row of the file, column “{checked[0].label}”: a value "
            f"breaks the rule “{checked[1]}” as PostgreSQL checks it. Nothing was written. Fix "
            "that value in the file and upload again."
        )
    what = f"column {column!r}" if column else "a rule of the dataset"
    return (
        f"The rows break {what} in the database: {detail or str(orig).splitlines()[0]} "
        "Nothing was written. Fix the file (or the existing rows) and upload again."
    )
