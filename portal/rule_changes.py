"""Changing a dataset's column rules after its creation (DESIGN §4: "Changing a spec later is
itself an audited change").

What may change: each column's label, required, unique, min, max, max length, pattern, options
and default. What may not: the columns themselves — their number, order, physical names, types,
decimal scale or date format — since that would rewrite stored values (upload the table again
into a new dataset instead).

The table's constraints follow the spec, as ``spec.ddl_table`` writes them: a rule changed is
its constraint dropped and added again. Before anything is changed, the rows are checked against
every rule that is new or stricter: rows that break one are named (the first few, with their
values), and nothing is changed — the person corrects them on the Edit page, or keeps the rule
looser. The change is a ``schema`` changeset whose detail lists each rule before and after and
holds the new spec, so the spec in force after every changeset can be read from the log alone.
The spec's version moves on: a commit prepared on the old rules is refused (``writes.commit``),
and its rows are checked again under the new ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    MetaData,
    Table,
    UniqueConstraint,
    func,
    not_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.orm import Session
from sqlalchemy.schema import AddConstraint, DropConstraint

from audit.capture import qualified_table
from audit.changesets import close_changeset
from portal import spec as specs
from portal.actor import Actor
from portal.datasets import (
    ChangedMeanwhile,
    admin_reason,
    check_labels,
    check_patterns_compile,
    dataset_spec,
    get_dataset,
    open_dataset_changeset,
)
from portal.errors import ValidationError
from portal.models import Dataset
from portal.spec import DatasetSpec, column_json
from portal.wording import agreeing, counted

CHANGEABLE: Final = (
    "label",
    "required",
    "unique",
    "min",
    "max",
    "max_length",
    "regex",
    "options",
    "default",
)
"""The parts of a column that may change, in the order the changes are listed."""
FIXED: Final = {"name": "physical name", "type": "type", "scale": "scale", "format": "date format"}
"""The parts that may not, and what a message calls them."""
RULE_WORDS: Final = {
    "label": "label",
    "required": "required",
    "unique": "unique",
    "min": "min",
    "max": "max",
    "max_length": "max length",
    "regex": "pattern",
    "options": "options",
    "default": "default",
}
SAMPLE_ROWS: Final = 5
"""How many breaking rows a refusal names per rule."""


class RulesBroken(ValidationError):
    """Rows break new or stricter rules: ``problems`` has a line per rule, naming them."""

    INTRO: Final = (
        "Rows of the dataset break the new rules, so nothing was changed. Correct them on the "
        "Edit page first, or keep the rule as it was:"
    )

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join([self.INTRO, *(f"- {p}" for p in self.problems)]))


@dataclass(frozen=True)
class RuleChange:
    """One part of one column, before and after (JSON values, as the spec stores them)."""

    column: str  # physical name
    label: str  # the column's label before the change
    rule: str  # one of CHANGEABLE
    before: Any
    after: Any

    def as_detail(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "label": self.label,
            "rule": self.rule,
            "before": self.before,
            "after": self.after,
        }


def rule_changes(old: DatasetSpec, new: DatasetSpec) -> list[RuleChange]:
    """Every changed part of every column, in table order then ``CHANGEABLE`` order.

    Raises:
        ValidationError: the columns themselves differ (number, order, physical name, type,
            scale, date format); the message names the column and says what to do instead.
    """
    if [c.name for c in new.columns] != [c.name for c in old.columns]:
        raise ValidationError(
            "The columns themselves cannot change here, only their rules: reload the page to "
            "start from the dataset's columns. Nothing was changed."
        )
    changes: list[RuleChange] = []
    for was, now in zip(old.columns, new.columns, strict=True):
        was_json, now_json = column_json(was), column_json(now)
        for part, word in FIXED.items():
            if was_json.get(part) != now_json.get(part):
                raise ValidationError(
                    f"Column “{was.label}”: its {word} cannot change here (it would rewrite the "
                    "values stored); upload the table into a new dataset instead. Nothing was "
                    "changed."
                )
        changes.extend(
            RuleChange(was.name, was.label, rule, was_json.get(rule), now_json.get(rule))
            for rule in CHANGEABLE
            if was_json.get(rule) != now_json.get(rule)
        )
    return changes


def change_text(change: RuleChange | Mapping[str, Any]) -> str:
    """A change in words: ``Qty · max: 10 → 20``; a tick reads yes or no, no value (none)."""
    c = change.as_detail() if isinstance(change, RuleChange) else change
    word = RULE_WORDS.get(str(c.get("rule")), str(c.get("rule")))
    return (
        f"{c.get('label')} · {word}: {_value_text(c.get('before'))} → {_value_text(c.get('after'))}"
    )


def _value_text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)
    return str(value)


def change_rules(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    spec: DatasetSpec,
    expected_version: int,
    reason: str,
) -> int:
    """Give the dataset the rules of ``spec`` (its columns unchanged), as one ``schema``
    changeset; returns its id.

    The dataset is locked first (a commit under way finishes before, one that follows waits and
    then finds the spec moved on); then every new or stricter rule is checked against the rows
    and, only if none breaks one, the table's constraints are changed to match.

    Raises:
        PermissionDenied: the actor is not an admin.
        NotFound: no such dataset.
        ChangedMeanwhile: the rules changed since ``expected_version`` was read.
        ValidationError: no reason, or one over ``MAX_REASON_CHARS``; the columns themselves
            differ; a label with an invisible character; a pattern PostgreSQL cannot compile
            or the two regex engines would read differently; or nothing to change.
        RulesBroken: rows break a new or stricter rule (named, with their values).
        Nothing is written.
    """
    reason = admin_reason(
        actor,
        reason,
        may_not="Only admins can change a dataset's column rules.",
        say_why="Say why you are changing the rules; nothing was changed.",
    )
    dataset, old = locked_spec(session, dataset_id, expected_version)
    changes = rule_changes(old, spec)
    if not changes:
        raise ValidationError(
            f"These are the rules of “{dataset.name}” already; nothing to change."
        )
    check_labels(spec, "type the label again without it")
    patterned = {c.column for c in changes if c.rule == "regex" and c.after is not None}
    if patterned:  # the new patterns only: one kept from before is its table's already
        new_patterns = DatasetSpec(tuple(c for c in spec.columns if c.name in patterned))
        specs.check_new_patterns(new_patterns)
        check_patterns_compile(session, new_patterns)
    new = DatasetSpec(spec.columns, version=old.version + 1)
    before = specs.ddl_table(old, dataset.table_name, MetaData())
    after = specs.ddl_table(new, dataset.table_name, MetaData())
    plan = ConstraintPlan.of(session, before, after)
    problems = plan.broken_rules(session, after, {c.name: c.label for c in new.columns})
    if problems:
        raise RulesBroken(problems)
    changeset = open_schema_changeset(
        session,
        actor,
        dataset,
        reason,
        {"action": "rules", "changes": [c.as_detail() for c in changes]},
        new,
    )
    plan.apply(session, qualified_table(session, dataset.table_name))
    return close_schema_changeset(session, dataset, new, changeset)


def locked_spec(
    session: Session, dataset_id: int, expected_version: int
) -> tuple[Dataset, DatasetSpec]:
    """The dataset, locked for a change of its spec, and its spec.

    Raises:
        NotFound: no such dataset.
        ChangedMeanwhile: the spec changed since ``expected_version`` was read.
    """
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    if dataset.spec_version != expected_version:
        raise ChangedMeanwhile(
            f"Someone changed the columns of “{dataset.name}” or their rules since you loaded "
            "the page. Nothing was changed; look at them as they are now and decide again."
        )
    return dataset, dataset_spec(dataset)


def open_schema_changeset(
    session: Session,
    actor: Actor,
    dataset: Dataset,
    reason: str,
    detail: dict[str, Any],
    new: DatasetSpec,
) -> int:
    """Open the ``schema`` changeset that gives ``dataset`` the spec ``new``: ``detail`` and
    the spec's versions before and after, and the new spec itself (the spec in force after any
    changeset is read from the log alone)."""
    return open_dataset_changeset(
        session=session,
        actor=actor,
        dataset=dataset,
        kind="schema",
        reason=reason,
        detail={
            **detail,
            "spec_version": {"before": dataset.spec_version, "after": dataset.spec_version + 1},
            "spec": new.to_json(),
        },
    )


def close_schema_changeset(
    session: Session, dataset: Dataset, new: DatasetSpec, changeset_id: int
) -> int:
    """Store ``new`` as the dataset's spec, its version moved on, and close the changeset;
    returns its id."""
    dataset.spec = new.to_json()
    dataset.spec_version += 1
    dataset.updated_at = func.now()
    session.flush()
    close_changeset(session=session, changeset_id=changeset_id)
    return changeset_id


@dataclass(frozen=True)
class ConstraintPlan:
    """The constraints to drop and add, and the columns whose NOT NULL changes, to take a
    dataset's table from one spec's rules (``before``) to another's (``after``); a column only
    ``after`` has (added) gets its rules, already in the table."""

    drop: Sequence[CheckConstraint | UniqueConstraint]
    add: Sequence[CheckConstraint | UniqueConstraint]
    not_null: dict[str, bool]  # column -> required now

    @classmethod
    def of(cls, session: Session, before: Table, after: Table) -> ConstraintPlan:
        dialect = session.get_bind().dialect

        def rules(table: Table) -> dict[str, tuple[str, CheckConstraint | UniqueConstraint]]:
            found: dict[str, tuple[str, CheckConstraint | UniqueConstraint]] = {}
            for c in table.constraints:
                if isinstance(c, CheckConstraint):
                    sql = str(
                        c.sqltext.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
                    )
                    found[str(c.name)] = (sql, c)
                elif isinstance(c, UniqueConstraint):
                    found[str(c.name)] = ("unique", c)
            return found

        was, now = rules(before), rules(after)
        return cls(
            drop=[c for name, (sql, c) in was.items() if now.get(name, ("",))[0] != sql],
            add=[c for name, (sql, c) in now.items() if was.get(name, ("",))[0] != sql],
            not_null={
                column.name: not column.nullable
                for column in after.columns
                # An added column is created nullable.
                if column.nullable
                != (column.name not in before.c or before.c[column.name].nullable)
            },
        )

    def broken_rules(self, session: Session, table: Table, labels: dict[str, str]) -> list[str]:
        """A line for each new or stricter rule that rows break."""
        problems = []
        for column, required in self.not_null.items():
            if required:
                problems += _breaking(
                    session, table, labels, column, "required", table.c[column].is_(None)
                )
        for constraint in self.add:
            column, rule = str(constraint.info["column"]), str(constraint.info["rule"])
            if isinstance(constraint, CheckConstraint):
                problems += _breaking(
                    session,
                    table,
                    labels,
                    column,
                    RULE_WORDS.get(_ENFORCES.get(rule, rule), rule),
                    not_(constraint.sqltext),
                )
            else:
                problems += _duplicates(session, table, labels[column], table.c[column])
        return problems

    def apply(self, session: Session, qualified: str) -> None:
        for constraint in self.drop:
            session.execute(DropConstraint(constraint, if_exists=True))
        preparer = session.get_bind().dialect.identifier_preparer
        for column, required in self.not_null.items():
            action = "SET NOT NULL" if required else "DROP NOT NULL"
            session.execute(
                text(f"ALTER TABLE {qualified} ALTER COLUMN {preparer.quote(column)} {action}")
            )
        for constraint in self.add:
            session.execute(AddConstraint(constraint))


_ENFORCES: Final = {
    "filled": "required",
    "min": "min",
    "max": "max",
    "len": "max_length",
    "re": "regex",
    "in": "options",
}
"""The spec rule each CHECK of ``spec.ddl_table`` enforces (its ``info["rule"]``), for words."""


def _breaking(
    session: Session, table: Table, labels: dict[str, str], column: str, rule: str, broken: Any
) -> list[str]:
    row_id, value = table.c["_row_id"], table.c[column]
    found = session.execute(
        select(row_id, value, func.count().over().label("n"))
        .where(broken)
        .order_by(row_id)
        .limit(SAMPLE_ROWS)
    ).all()
    if not found:
        return []
    n = found[0].n
    rows = ", ".join(f"{r[0]} ({_shown(r[1])})" for r in found)
    more = f", and {n - len(found):,} more" if n > len(found) else ""
    return [
        f"“{labels[column]}”, {rule}: {counted(n, 'row')} {agreeing(n, 'breaks', 'break')} it — "
        f"row {rows}{more}"
    ]


def _duplicates(session: Session, table: Table, label: str, value: Column[Any]) -> list[str]:
    row_id = table.c["_row_id"]
    found = session.execute(
        # The first rows of each repeated value only: one value may be in millions of rows.
        select(
            value,
            func.array_agg(aggregate_order_by(row_id, row_id), type_=ARRAY(BigInteger))[
                1:SAMPLE_ROWS
            ],
        )
        .where(value.is_not(None))
        .group_by(value)
        .having(func.count() > 1)
        .limit(SAMPLE_ROWS)
    ).all()
    if not found:
        return []
    shown = "; ".join(f"{_shown(v)} in rows {', '.join(map(str, ids))}" for v, ids in found)
    return [f"“{label}”, unique: values appear in more than one row — {shown}"]


def _shown(value: Any) -> str:
    if value is None:
        return "no value"
    return f"“{value}”" if isinstance(value, str) else str(value)
