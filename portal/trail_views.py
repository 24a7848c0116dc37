"""The Audit and History pages' domain side: who may read what, frames to show, exports, and the
events that record views and exports. No Streamlit here; the pages render what this returns.

    search_trail()        a page of changesets or events (admins), recording the view
    changeset()           one changeset's header (admins, or anyone for a dataset's history)
    change_frames()       a page of a changeset's row changes as frames to show
    bulk_page()           a page of a bulk load's rows, replayed from its stored stream
    activity_frame()      row changes per day by actor or dataset, every day of the range
    export_trail()        the filtered trail as formula-safe CSV or JSON, recorded as an export
    record_cut_short_export()  an export to a stream that stopped after some of it was out
    chain_status()        the same checks as ``portal audit verify``, recorded as a view
    dataset_history()     a page of one dataset's changesets (every role)
    as_of()               a dataset exactly as it stood right after a changeset
    export_as_of()        that state as a formula-safe CSV, recorded as an export
    row_versions_frame()  every version of one row, with who, when and why
    kind_label()          a changeset's or event's kind in words (``Failed sign-in``)
    changeset_kind()      a changeset's, a restore told from a revert (``Restore``)
    changeset_what()      what a changeset did, in a few words (``all rows replaced``)
    action_label(), reason_label()  an event's action or reason in words
    target_label()        an event's target in words (``People (dataset 3)``)
    events_frame()        a page of events as the Audit page shows them, in words
    who()                 who made a change: display name and username (``Ann A (ann)``)
    detail_line()         an event's details as one line in words (the exports keep the JSON)

Which views are recorded (``audit_view`` events). Streamlit reruns the page on every click, so
recording each run would bury the log in noise; recording nothing would let an admin read the
trail unseen. The Audit page records one event per sign-in for each distinct filter and list
(changesets or events) it shows, one for each changeset opened in detail, and one for each chain
verification; paging through the same result is not recorded again. The page keeps which views
the sign-in has recorded in its session state and asks for ``record=True`` the first time; the
event is written in the same transaction as the read it describes. Every export is recorded.
History views by non-admins are ordinary dataset reads and are not recorded; their exports are.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TextIO

import pandas as pd
from pandas.io.formats.style import Styler
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from audit import reconcile, search
from audit.chain import ChainHead, VerifyResult, read_head, verify
from audit.event_chain import EventHead, EventVerifyResult, read_event_head, verify_events
from audit.events import record_event
from audit.reconcile import DatasetDrift
from audit.search import (
    ActivityBy,
    ChangesetDetail,
    ChangesetKey,
    ChangesetSummary,
    EventKey,
    EventSummary,
    Page,
    RowChangeView,
    TrailFilter,
    day_after,
    day_start,
)
from audit.trail import RowImage, bulk_rows_slice, dataset_state, removed_columns, row_versions
from portal import rule_changes
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
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.models import Changeset, Dataset, Event, RowChange, User
from portal.spec import DatasetSpec, logged_datetime
from portal.wording import agreeing, all_of, counted

__all__ = [
    "ChangesetDetail",
    "ChangesetKey",
    "ChangesetSummary",
    "EventKey",
    "EventSummary",
    "Page",
    "TrailFilter",
    "day_after",
    "day_start",
]

TrailList = Literal["changesets", "events"]
ExportFormat = Literal["csv", "json"]
PAGE_SIZE = search.PAGE_SIZE  # the pages' page of changesets or events
EXPORT_CHUNK: Final = 1000
MAX_BULK_PAGE: Final = 1000
BEFORE_STYLE: Final = "background-color: rgba(255, 75, 75, 0.25)"
AFTER_STYLE: Final = "background-color: rgba(33, 195, 84, 0.25)"


def _require_admin(actor: Actor) -> None:
    if not actor.can("admin"):
        raise PermissionDenied("Only admins can read the audit trail.")


def _require_viewer(actor: Actor) -> None:
    if not actor.can("viewer"):
        raise PermissionDenied("Only signed-in people with a role can read dataset history.")


def when(moment: datetime | None) -> str:
    """A timestamp as the pages show it: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def who(display_name: str, username: str) -> str:
    """Who made a change, as the trail's tables show it: the display name and, since two people
    may share one, the username (``Ann A (ann)``); the username alone where they are the same
    (a database user writing out of band)."""
    return username if display_name == username else f"{display_name} ({username})"


def cell_text(value: Any) -> str:
    """A value of a row image as text: as the upload would read it back; no value is ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def whole_text(value: Any) -> str | None:
    """A value in a whole row shown as a table: ``cell_text``, but no value stays ``None`` (a
    missing cell, as the Datasets page shows one), so it never looks like an empty text."""
    return None if value is None else cell_text(value)


def detail_text(detail: Mapping[str, Any]) -> str:
    """An event's details as its CSV export writes them: JSON, keys sorted (``false``,
    ``null``, as the JSON export writes them). The Audit page shows ``detail_line``."""
    return json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)


NO_VALUE: Final = "—"


def detail_line(
    detail: Mapping[str, Any],
    *,
    kind: str | None = None,
    target: str | None = None,
    names: TrailNames | None = None,
) -> str:
    """An event's details as one line to read: ``failed attempts: 3 · reason: wrong password``.

    Keys sorted (as ``detail_text``), underscores read as spaces; no value is ``—``, an empty
    text ``""``; a truth reads ``true`` or ``false``; a nested mapping or list reads compactly
    in braces or brackets, a ``{"before": …, "after": …}`` pair as ``before → after``; line
    breaks inside a text read as spaces; a recorded moment (``locked_until``) reads as ``when``
    writes one. Codes read in words: an ``action`` and a ``reason`` by
    ``action_label`` and ``reason_label``, a ``filter`` by its parts that are set (``filter:
    actor ann, kind Edit``; ``filter: none``). The checks an ``audit_view`` of ``kind`` and
    ``target`` records read as sentences ("Both datasets match their audit log, cell by cell";
    "Both chains intact · …"). ``names``: the datasets and changesets they name by id. The
    exports keep the exact JSON (``detail_text``); so does the text search.
    """
    names = names or TrailNames()
    if kind == "audit_view":
        readers = {"audit:datasets": _drift_check_line, "audit:verify": _chain_check_line}
        reader = readers.get(target or "")
        line = reader(detail, names) if reader else None
        if line is not None:
            return line
        if _target_id(target, "changeset") is not None and set(detail) == {"changeset_id", "seq"}:
            return f"changeset #{detail['seq']} (id {detail['changeset_id']}) opened"
    return " · ".join(
        f"{_detail_key(k)}: {_top_value(str(k), v, names)}" for k, v in _sorted_items(detail)
    )


def _top_value(key: str, value: Any, names: TrailNames) -> str:
    if key == "action" and isinstance(value, str):
        return action_label(value)
    if key == "reason" and isinstance(value, str):
        return reason_label(value)
    if key == "filter" and (value is None or isinstance(value, Mapping)):
        return _filter_text(value or {}, names)
    if isinstance(value, str) and _STAMP.fullmatch(value):
        return when(datetime.fromisoformat(value))
    return _detail_value(value)


_STAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?[+-][0-9]{2}:[0-9]{2}"
)
"""A moment as the portal records it in an event's detail (``isoformat`` with its offset,
``locked_until``): the pages show it as ``when`` does."""


_FILTER_ORDER: Final = ("dataset_id", "actor", "kind", "since", "until", "text")


def _filter_text(trail_filter: Mapping[str, Any], names: TrailNames) -> str:
    """A recorded filter's parts that are set, in the page's order: ``actor ann, kind Edit``."""
    order = {k: n for n, k in enumerate(_FILTER_ORDER)}
    parts = []
    for key, value in sorted(trail_filter.items(), key=lambda i: (order.get(i[0], 99), i[0])):
        if value is None or value == "" or value == [] or value == {}:
            continue
        if key == "dataset_id":
            known = names.datasets.get(value) if isinstance(value, int) else None
            parts.append(f"dataset {_one_line(known)}" if known else names.dataset(value))
        elif key == "kind" and isinstance(value, str):
            parts.append(f"kind {kind_label(value)}")
        elif key in ("since", "until") and isinstance(value, str):
            parts.append(f"{'since' if key == 'since' else 'before'} {_day_or_moment(value)}")
        elif key == "text" and isinstance(value, str):
            parts.append(f"text “{_one_line(value)}”")
        else:
            parts.append(f"{_detail_key(key)} {_detail_value(value)}")
    return ", ".join(parts) or "none"


def _day_or_moment(moment: str) -> str:
    """A recorded ISO moment: its day if it is midnight UTC (the page's filters are days)."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return _one_line(moment)
    if parsed.tzinfo is None:
        return _one_line(moment)
    parsed = parsed.astimezone(UTC)
    return parsed.date().isoformat() if parsed.time() == datetime.min.time() else when(parsed)


def _drift_check_line(detail: Mapping[str, Any], names: TrailNames) -> str | None:
    """A check of every dataset against the log, as ``record_drift_check`` recorded it."""
    count, differing = detail.get("datasets"), detail.get("differing")
    miscounted, problem = detail.get("miscounted", []), detail.get("problem")
    if not (isinstance(count, int) and _ids(differing) and _ids(miscounted)):
        return None
    parts = []
    if problem is not None:
        parts.append(f"The check stopped: {_detail_value(problem)}")
    elif differing:
        n = len(differing)
        parts.append(
            f"{counted(n, 'dataset')} of {count:,} {agreeing(n, 'differs', 'differ')} from "
            f"{agreeing(n, 'its', 'their')} audit log: "
            + ", ".join(names.dataset(i) for i in differing)
        )
    else:
        parts.append(all_datasets_match(count))
    if miscounted:
        counts = agreeing(len(miscounted), "count", "counts")
        parts.append(
            f"stored row {counts} to correct: " + ", ".join(names.dataset(i) for i in miscounted)
        )
    return " · ".join(parts)


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, int) for i in value)


def _chain_check_line(detail: Mapping[str, Any], names: TrailNames) -> str | None:
    """A check of both hash chains, as ``chain_status`` recorded it."""
    changesets, events = detail.get("changesets"), detail.get("events")
    if not (isinstance(changesets, int) and isinstance(events, int) and "ok" in detail):
        return None
    if detail["ok"] is True:
        verdict = "Both chains intact"
    else:
        broken = [
            f"{chain} chain broken at {what}#{detail[key]}"
            for chain, what, key in (
                ("changeset", "", "failed_seq"),
                ("event", "event ", "failed_event_seq"),
            )
            if isinstance(detail.get(key), int)
        ]
        verdict = "; ".join(broken).capitalize() if broken else "A chain is broken"
    heads = [
        f"{counted(n, noun)}, head {_detail_value(detail.get(key))}"
        for n, noun, key in ((changesets, "changeset", "head"), (events, "event", "event_head"))
    ]
    return " · ".join([verdict, *heads])


def _sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return sorted(mapping.items(), key=lambda item: str(item[0]))


def _detail_key(key: Any) -> str:
    return _one_line(str(key)).replace("_", " ")


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _detail_value(value: Any) -> str:
    if value is None:
        return NO_VALUE
    if isinstance(value, str):
        return _one_line(value) if value else '""'
    if isinstance(value, Mapping):
        if value.keys() == {"before", "after"}:
            return f"{_detail_value(value['before'])} → {_detail_value(value['after'])}"
        inner = ", ".join(f"{_detail_key(k)}: {_detail_value(v)}" for k, v in _sorted_items(value))
        return f"{{{inner}}}"
    if isinstance(value, list | tuple):
        return f"[{', '.join(_detail_value(v) for v in value)}]"
    return _one_line(cell_text(value))


def change_text(value: Any) -> str:
    """A value in a before -> after view: ``∅`` for no value, ``""`` for an empty text (written
    from outside the portal, say), so a change between the two never reads as ``∅ → ∅``."""
    if value is None:
        return "∅"
    return cell_text(value) or '""'


def setup_lines(detail: Mapping[str, Any]) -> list[str]:
    """What a ``dataset`` or ``schema`` changeset did, in words, from its detail: the dataset's
    creation (its name and columns), each setting or column rule changed, before → after.
    Empty for any other detail (the Seal and details view keeps the JSON). An upload that
    created its dataset says so too.
    """
    created = detail.get("created")
    if isinstance(created, Mapping):
        return setup_lines(created)
    action = detail.get("action")
    if action == "create":
        try:
            labels = [c.label for c in DatasetSpec.from_json(detail["spec"]).columns]
        except (KeyError, TypeError, AttributeError, ValidationError):  # not a spec
            labels = []
        lines = [f"Created “{detail.get('name', NO_VALUE)}”"]
        if labels:
            lines.append(f"{counted(len(labels), 'column')}: {', '.join(labels)}")
        if "reason_required" in detail:
            lines.append(f"A reason for every change: {_required_word(detail['reason_required'])}")
        return lines
    if action == "rules":  # a schema changeset
        changes = detail.get("changes")
        if not isinstance(changes, list):
            return []
        return [rule_changes.change_text(c) for c in changes if isinstance(c, Mapping)]
    if action in ("add_column", "remove_column"):  # a schema changeset
        return _column_lines(detail)
    if action != "settings":
        return []
    words = {"name": "Name", "description": "Description", "reason_required": None}
    lines = []
    for key, word in words.items():
        change = detail.get(key)
        if not isinstance(change, Mapping) or change.keys() != {"before", "after"}:
            continue
        if word is None:
            before, after = (_required_word(change[k]) for k in ("before", "after"))
            lines.append(f"A reason for every change: {before} → {after}")
        else:
            before, after = (_quoted(change[k]) for k in ("before", "after"))
            lines.append(f"{word}: {before} → {after}")
    return lines


def _column_lines(detail: Mapping[str, Any]) -> list[str]:
    column = detail.get("column")
    if not isinstance(column, Mapping):
        return []
    rules = [_required_word(column.get("required"))]
    if isinstance(column.get("options"), list):
        rules.append("options " + " | ".join(map(str, column["options"])))
    what = "added" if detail.get("action") == "add_column" else "removed"
    lines = [
        f"Column {what}: {_quoted(column.get('label'))} ({column.get('type')}, {', '.join(rules)})"
    ]
    rows, fill = detail.get("rows"), detail.get("fill")
    if what == "added" and isinstance(rows, int) and rows > 0:
        value = NO_VALUE if fill is None else _quoted(cell_text(fill))
        lines.append(f"The {counted(rows, 'row')} it then had got: {value}")
    with_value = detail.get("rows_with_value")
    if what == "removed" and isinstance(with_value, int):
        lines.append(
            f"Its values in {counted(with_value, 'row')} left the table (the log keeps them)"
            if with_value
            else "It held no values"
        )
    return lines


def _required_word(required: Any) -> str:
    return "required" if required else "optional"


def _quoted(text: Any) -> str:
    return f"“{_one_line(str(text))}”" if text else "(none)"


# ---------------------------------------------------------------------------------------------
# Choices and labels
# ---------------------------------------------------------------------------------------------


def actors(*, session: Session, actor: Actor) -> dict[str, str]:
    """Everyone who appears in the audit trail, for the Audit page's filter: each username and
    how the filter names it: as the lists do (``who``), with the display name of an account
    that still exists, so a person is found by either name; else the username alone (a deleted
    account, or a database role that wrote around the portal). Sorted by that name.

    Raises:
        PermissionDenied: the actor is not an admin.
    """
    _require_admin(actor)
    usernames = search.actors(session=session)
    shown = dict(
        session.execute(
            select(User.username, User.display_name).where(User.username.in_(usernames))
        ).all()
    )
    labels = {u: who(shown.get(u) or u, u) for u in usernames}
    return dict(sorted(labels.items(), key=lambda item: (item[1].casefold(), item[0])))


def kinds(trail_list: TrailList) -> tuple[str, ...]:
    changeset_kinds, event_kinds = search.kinds()
    return changeset_kinds if trail_list == "changesets" else event_kinds


KIND_LABELS: Final[Mapping[str, str]] = {
    # changesets (portal.models.CHANGESET_KINDS)
    "upload": "Upload",
    "edit": "Edit",
    "revert": "Revert",
    "schema": "Schema change",
    "dataset": "Dataset set-up",  # created, or a setting changed
    "out_of_band": "⚠ OUT OF BAND",  # written around the portal: loud on purpose
    # events (portal.models.EVENT_KINDS)
    "sign_in": "Signed in",
    "sign_in_failed": "Failed sign-in",
    "lock_out": "Locked out",
    "sign_out": "Signed out",
    "user_admin": "User account changed",
    "export": "Exported",
    "audit_view": "Audit viewed",
}
"""A changeset's or event's kind as the Audit and History pages show it; ``kind_label`` reads
any other."""


def kind_label(kind: str) -> str:
    """A changeset's or event's kind in words (``sign_in_failed`` -> ``Failed sign-in``); a kind
    without a label reads as its words (``new_kind`` -> ``New kind``), so a kind added to the
    log before its label never stops the page."""
    return KIND_LABELS.get(kind) or kind.replace("_", " ").strip().capitalize() or NO_VALUE


def changeset_kind(c: ChangesetSummary) -> str:
    """A changeset's kind in words, as the lists and its own view show it: a row restored to an
    earlier version (a ``revert`` whose detail says ``restores``) reads ``Restore``."""
    if c.kind == "revert" and isinstance(c.facts.get("restores"), Mapping):
        return "Restore"
    return kind_label(c.kind)


_SETTING_WORDS: Final = {
    "name": "renamed",
    "description": "description changed",
}
_UPLOAD_WORDS: Final = {"append": "rows added", "replace": "all rows replaced"}
_RESTORES: Final = {"row_id", "version", "seq"}
_SCHEMA_WORDS: Final = {"add_column": "column {} added", "remove_column": "column {} removed"}


def changeset_what(c: ChangesetSummary) -> str:
    """What a changeset did, in a few words, from its ``facts``, for the lists beside its kind
    and counts: ``all rows replaced``, ``column “Price” added``, ``renamed``, ``reverts #12``,
    ``row 5 back to version 2, made by #7``, ``“Qty” and “Price” changed``.
    Empty for an edit that changed no cell (it only added or deleted rows: its counts say so),
    or for any detail these words do not cover (the changeset's own view says more)."""
    facts = c.facts
    action = facts.get("action")
    if c.kind == "upload":
        return (
            "new dataset" if facts.get("created") else _UPLOAD_WORDS.get(str(facts.get("mode")), "")
        )
    if c.kind == "revert" and facts.get("reverts") is not None:
        return f"reverts #{facts['reverts']}"
    restores = facts.get("restores")
    if c.kind == "revert" and isinstance(restores, Mapping) and restores.keys() >= _RESTORES:
        return "row {row_id} back to version {version}, made by #{seq}".format_map(restores)
    if c.kind == "schema" and action in _SCHEMA_WORDS:
        return _SCHEMA_WORDS[action].format(_quoted(facts.get("column")))
    if c.kind == "schema" and action == "rules":
        return "column rules changed"
    columns = facts.get("columns")
    if c.kind == "edit" and isinstance(columns, list) and columns:
        return edited_columns([str(label) for label in columns])
    if c.kind == "dataset" and action == "create":
        return "created"
    if c.kind == "dataset" and action == "settings":
        words = [words for key, words in _SETTING_WORDS.items() if facts.get(key)]
        reason = facts.get("reason_required_after")
        if isinstance(reason, bool):
            words.append("reasons now required" if reason else "reasons now optional")
        return "; ".join(words)
    return ""


EDITED_COLUMNS_NAMED: Final = 3
"""How many of an edit's changed columns its "What" names before "and N more"."""


def edited_columns(labels: Sequence[str]) -> str:
    """``“Qty” and “Price” changed``; past ``EDITED_COLUMNS_NAMED`` columns, ``“A”, “B”, “C”
    and 4 more changed``."""
    named = [_quoted(label) for label in labels[:EDITED_COLUMNS_NAMED]]
    rest = len(labels) - len(named)
    if rest:
        return f"{', '.join(named)} and {rest:,} more changed"
    if len(named) == 1:
        return f"{named[0]} changed"
    return f"{', '.join(named[:-1])} and {named[-1]} changed"


ACTION_LABELS: Final[Mapping[str, str]] = {
    # user_admin events: an admin's (portal.users) and one's own (portal.signin)
    "create": "created the account",
    "set_role": "changed the role",
    "enable": "enabled the account",
    "disable": "disabled the account",
    "reset_password": "reset the password",
    "unlock": "unlocked the account",
    "change_own_password": "changed own password",
}
"""An event's ``action`` as the Audit page shows it; ``action_label`` reads any other."""

REASON_LABELS: Final[Mapping[str, str]] = {
    # sign_in_failed events (portal.signin, portal.auth)
    "bad_password": "wrong password",
    "unknown_user": "no such account",
    "locked": "account locked",
    "disabled": "account disabled",
    "bad_current_password": "wrong current password",
    "bad_cookie": "sign-in cookie not valid (forged, malformed or expired)",
    "revoked_cookie": "sign-in cookie no longer valid (signed out, new password or account closed)",
}
"""An event's ``reason`` as the Audit page shows it; ``reason_label`` reads any other."""


def action_label(action: str) -> str:
    """An event's action in words (``change_own_password`` -> ``changed own password``); one
    without a label reads as its words (``new_action`` -> ``new action``)."""
    return ACTION_LABELS.get(action) or _code_words(action)


def reason_label(reason: str) -> str:
    """An event's reason in words (``bad_current_password`` -> ``wrong current password``); one
    without a label reads as its words (``new_reason`` -> ``new reason``)."""
    return REASON_LABELS.get(reason) or _code_words(reason)


def _code_words(code: str) -> str:
    return _one_line(code).replace("_", " ").strip() or NO_VALUE


TARGET_LABELS: Final[Mapping[str, str]] = {
    "audit": "Audit trail",  # a list of it viewed, or exported
    "audit:verify": "Audit log verification",
    "audit:datasets": "Check of every dataset against the log",
}
"""The targets an ``audit_view`` or ``export`` event records in words; ``dataset:<id>`` and
``changeset:<id>`` read by ``target_label``."""

NAMED_TARGET_KINDS: Final = frozenset({"audit_view", "export"})
"""The event kinds whose target the portal writes in its own words (``dataset:3``). The others'
is a person: a username, or for a failed sign-in whatever was typed, which is shown as typed
(someone could type "dataset:3" at the sign-in form)."""


@dataclass(frozen=True, eq=False)
class TrailNames:
    """What events name by id, in words: datasets by id (their names now), changesets by id
    (their ``seq``). An id not here reads as itself (a dataset removed since, say)."""

    datasets: Mapping[int, str] = field(default_factory=dict)
    changesets: Mapping[int, int] = field(default_factory=dict)

    def dataset(self, dataset_id: Any) -> str:
        """``People (dataset 3)``; ``dataset 3`` if unknown."""
        name = self.datasets.get(dataset_id) if isinstance(dataset_id, int) else None
        if name is None:
            return f"dataset {_detail_value(dataset_id)}"
        return f"{_one_line(name)} (dataset {dataset_id})"

    def changeset(self, changeset_id: int) -> str:
        """``Changeset #7``; ``changeset id 12`` if unknown."""
        seq = self.changesets.get(changeset_id)
        return f"Changeset #{seq}" if seq is not None else f"changeset id {changeset_id}"


def target_label(kind: str, target: str | None, names: TrailNames | None = None) -> str:
    """An event's target in words: ``dataset:3`` -> ``People (dataset 3)``, ``changeset:12`` ->
    ``Changeset #7``, ``audit:verify`` -> ``Audit log verification``; a person (a sign-in's,
    a user admin's) as recorded; no target ``""``. Only an ``audit_view`` or ``export``
    event's target is read so (``NAMED_TARGET_KINDS``); anything else reads as recorded."""
    if not target:
        return ""
    if kind not in NAMED_TARGET_KINDS:
        return _one_line(target)
    names = names or TrailNames()
    if target in TARGET_LABELS:
        return TARGET_LABELS[target]
    if (dataset_id := _target_id(target, "dataset")) is not None:
        return names.dataset(dataset_id)
    if (changeset_id := _target_id(target, "changeset")) is not None:
        return names.changeset(changeset_id)
    return _one_line(target)


def _target_id(target: str | None, prefix: str) -> int | None:
    head, _, tail = (target or "").partition(":")
    whole = head == prefix and tail.isascii() and tail.isdigit() and len(tail) <= 18  # a bigint
    return int(tail) if whole else None


def trail_names(*, session: Session, events: Iterable[EventSummary]) -> TrailNames:
    """The datasets and changesets ``events`` name by id (targets, the ids a check or a filter
    recorded), read in two queries."""
    dataset_ids: set[int] = set()
    changeset_ids: set[int] = set()
    for e in events:
        if e.kind not in NAMED_TARGET_KINDS:
            continue
        if (dataset_id := _target_id(e.target, "dataset")) is not None:
            dataset_ids.add(dataset_id)
        if (changeset_id := _target_id(e.target, "changeset")) is not None:
            changeset_ids.add(changeset_id)
        for key in ("differing", "miscounted"):
            if _ids(e.detail.get(key)):
                dataset_ids.update(e.detail[key])
        recorded = e.detail.get("filter")
        if isinstance(recorded, Mapping) and isinstance(recorded.get("dataset_id"), int):
            dataset_ids.add(recorded["dataset_id"])
    datasets: dict[int, str] = {}
    changesets: dict[int, int] = {}
    if dataset_ids:
        found = session.execute(
            select(Dataset.id, Dataset.name).where(Dataset.id.in_(sorted(dataset_ids)))
        )
        datasets.update((i, n) for i, n in found)
    if changeset_ids:
        seqs = session.execute(
            select(Changeset.id, Changeset.seq).where(Changeset.id.in_(sorted(changeset_ids)))
        )
        changesets.update((i, q) for i, q in seqs if q is not None)
    return TrailNames(datasets, changesets)


def events_frame(*, session: Session, actor: Actor, events: Iterable[EventSummary]) -> pd.DataFrame:
    """A page of events as the Audit page shows them: When, Kind, Who, Target and Detail, in
    words (``kind_label``, ``target_label``, ``detail_line``).

    Raises:
        PermissionDenied: the actor is not an admin.
    """
    _require_admin(actor)
    events = list(events)
    names = trail_names(session=session, events=events)
    # A failed sign-in's username is whatever was typed: shown as typed, not as an account.
    people = _people(session, {e.actor_username for e in events if _by_account(e)})
    return pd.DataFrame(
        [
            {
                "When": when(e.occurred_at),
                "Kind": kind_label(e.kind),
                "Who": (people.get(e.actor_username or "") if _by_account(e) else None)
                or e.actor_username
                or NOBODY_SIGNED_IN,
                "Target": target_label(e.kind, e.target, names),
                "Detail": detail_line(e.detail, kind=e.kind, target=e.target, names=names),
            }
            for e in events
        ],
        columns=["When", "Kind", "Who", "Target", "Detail"],
    )


NOBODY_SIGNED_IN: Final = "(nobody signed in)"
"""An event's Who when no one was: a failed sign-in of a name no account has, say."""


def _by_account(event: EventSummary) -> bool:
    """Whether the event's actor is an account's username: not a failed sign-in's (whatever
    was typed at the form, an account's name or not, shown as typed)."""
    return event.kind != "sign_in_failed" and bool(event.actor_username)


def _people(session: Session, usernames: Collection[str | None]) -> dict[str, str]:
    """Each username of an account as the trail's tables name people (``who``: "Ann A (ann)",
    by the account's display name now; events keep no name of their own)."""
    wanted = sorted(u for u in usernames if u)
    if not wanted:
        return {}
    rows = session.execute(
        select(User.username, User.display_name).where(User.username.in_(wanted))
    ).all()
    return {r.username: who(r.display_name, r.username) for r in rows}


def column_labels(*, session: Session, dataset_id: int | None) -> dict[str, str]:
    """Physical column name -> its label in the dataset's current spec, then the columns
    removed from it (empty if unknown)."""
    if dataset_id is None:
        return {}
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        return {}
    return _labels(session, dataset_id, dataset_spec(dataset))


def _labels(session: Session, dataset_id: int, spec: DatasetSpec) -> dict[str, str]:
    """``column_labels`` of the dataset whose spec is ``spec``."""
    labels = {c.name: c.label for c in spec.columns}
    for name, column in removed_columns(session, dataset_id).items():
        if name not in labels and isinstance(column.get("label"), str):
            labels[name] = f"{column['label']} (removed)"
    return labels


def datetime_columns(*, session: Session, dataset_id: int | None) -> frozenset[str]:
    """The physical names of the dataset's date-and-time columns (empty if unknown)."""
    dataset = None if dataset_id is None else session.get(Dataset, dataset_id)
    return frozenset() if dataset is None else _datetime_names(dataset_spec(dataset))


def _datetime_names(spec: DatasetSpec) -> frozenset[str]:
    return frozenset(c.name for c in spec.columns if c.type == "datetime")


def utc_text(value: Any) -> Any:
    """A date and time from the log (a text) as the Datasets page's export writes it: in UTC,
    a space between date and time. The log holds it as the writer's session printed it
    (``2024-03-03T10:00:00+05:30`` from a psql in another time zone; ``spec.logged_datetime``
    reads it). Anything else as it is."""
    moment = logged_datetime(value) if isinstance(value, str) else None
    return value if moment is None else value_text(moment)


def utc_image(image: RowImage | None, names: Collection[str]) -> RowImage | None:
    """``image`` with the values of its date-and-time columns (``names``) in UTC (``utc_text``)."""
    if not image or not names:
        return image
    return {k: utc_text(v) if k in names else v for k, v in image.items()}


# ---------------------------------------------------------------------------------------------
# The Audit page
# ---------------------------------------------------------------------------------------------


def search_trail(
    *,
    session: Session,
    actor: Actor,
    trail_filter: TrailFilter,
    trail_list: TrailList = "changesets",
    after: ChangesetKey | EventKey | None = None,
    limit: int = search.PAGE_SIZE,
    record: bool = False,
) -> Page[Any, Any]:
    """A page of the trail, newest first; with ``record`` an ``audit_view`` event too.

    Raises:
        PermissionDenied: the actor is not an admin.
        ValidationError: a bad page size, a date range that ends before it starts, or a
            free-text search that ran too long.
    """
    _require_admin(actor)
    _check_range(trail_filter)
    page: Page[Any, Any]
    if trail_list == "changesets":
        key = after if isinstance(after, ChangesetKey) else None
        page = search.search_changesets(
            session=session, trail_filter=trail_filter, after=key, limit=limit
        )
    else:
        event_key = after if isinstance(after, EventKey) else None
        page = search.search_events(
            session=session, trail_filter=trail_filter, after=event_key, limit=limit
        )
    if record:
        record_event(
            session=session,
            kind="audit_view",
            actor_username=actor.username,
            target="audit",
            detail={"list": trail_list, "filter": trail_filter.to_json()},
        )
    return page


def _check_range(trail_filter: TrailFilter) -> None:
    f = trail_filter
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise ValidationError("The date range ends before it starts; choose the dates again.")


def changeset(
    *, session: Session, actor: Actor, changeset_id: int, record: bool = False
) -> ChangesetDetail:
    """One sealed changeset's header. Admins may open any; others only one of a dataset (on
    the History page), and without its client info (the address and browser it came from:
    audit detail, for admins). With ``record`` an ``audit_view`` event names it.

    Raises:
        PermissionDenied: a non-admin asked for a changeset of no dataset.
        NotFound: no such sealed changeset.
    """
    _require_viewer(actor)
    detail = search.changeset_detail(session=session, changeset_id=changeset_id)
    _check_open(actor, detail)
    if record:
        record_event(
            session=session,
            kind="audit_view",
            actor_username=actor.username,
            target=f"changeset:{changeset_id}",
            detail={"changeset_id": changeset_id, "seq": detail.summary.seq},
        )
    return detail if actor.can("admin") else replace(detail, client_info={})


@dataclass(frozen=True)
class RevertedBy:
    """A sealed ``revert`` changeset that reverted another: its number, who and when, and the
    numbers of the reverts that reverted it in turn (what it put back was changed back)."""

    seq: int
    who: str
    committed_at: datetime
    reverted_by: tuple[int, ...] = ()
    complete: bool = True
    """It left nothing alone: no cell or row had changed since the changeset it reverted."""


def left_to_revert(reverts: Sequence[RevertedBy]) -> RevertedBy | None:
    """A revert (of those ``reverted_by`` found) that put back all a changeset did and was not
    reverted in turn: then nothing of that changeset is left to revert. None if there is none."""
    return next((r for r in reverts if r.complete and not r.reverted_by), None)


def reverted_by(*, session: Session, changeset_id: int) -> list[RevertedBy]:
    """The reverts of a changeset, oldest first (a revert may leave cells changed since, and
    be reverted itself, so there may be several), each with the reverts of it."""
    reverts = _reverts_of(session, [changeset_id])
    again = _reverts_of(session, [r.id for r in reverts])
    return [
        RevertedBy(
            r.seq,
            who(r.actor_display_name, r.actor_username),
            r.committed_at,
            tuple(a.seq for a in again if a.reverts == r.id),
            complete=not r.skipped,
        )
        for r in reverts
    ]


def _reverts_of(session: Session, changeset_ids: list[int]) -> list[Any]:
    """The sealed reverts of any of ``changeset_ids`` (their id, seq, actor, time and the id
    they revert, ``reverts``), oldest first."""
    if not changeset_ids:
        return []
    target = Changeset.detail["reverts"]["changeset_id"].as_integer()
    return list(
        session.execute(
            select(
                Changeset.id,
                Changeset.seq,
                Changeset.actor_display_name,
                Changeset.actor_username,
                Changeset.committed_at,
                target.label("reverts"),
                Changeset.detail["skipped_count"].as_integer().label("skipped"),
            )
            .where(
                Changeset.kind == "revert",
                Changeset.seq.is_not(None),
                target.in_(changeset_ids),
            )
            .order_by(Changeset.seq)
        ).all()
    )


def _check_open(actor: Actor, detail: ChangesetDetail) -> None:
    _require_viewer(actor)
    if detail.summary.dataset_id is None and not actor.can("admin"):
        raise PermissionDenied("Only admins can open changesets that belong to no dataset.")


@dataclass(frozen=True, eq=False)
class ChangeFrames:
    """A page of a changeset's row changes, ready to show.

    ``updates`` pairs a *before* and an *after* line per updated row, holding only the cells
    the row changed, highlighted; ``inserted``/``deleted`` hold whole rows.
    """

    updates: Styler | None
    inserted: pd.DataFrame | None
    deleted: pd.DataFrame | None
    count: int
    next_key: int | None


def change_frames(
    *,
    session: Session,
    actor: Actor,
    detail: ChangesetDetail,
    op: str,
    after_id: int | None = None,
    limit: int = search.PAGE_SIZE,
) -> ChangeFrames:
    """A page of the changeset's row changes of one ``op`` (insert, update, delete).

    ``detail`` is the changeset as ``changeset`` read it: its counts are not read again, and
    the first page starts at the op's first row change rather than reading past the others.

    Raises:
        PermissionDenied: as ``changeset``.
        ValidationError: an unknown ``op`` or a bad page size.
    """
    if op not in ("insert", "update", "delete"):
        raise ValidationError("Choose inserted, updated or deleted rows.")
    _check_open(actor, detail)
    labels = column_labels(session=session, dataset_id=detail.summary.dataset_id)
    times = datetime_columns(session=session, dataset_id=detail.summary.dataset_id)
    first = detail.first_ids.get(op)
    page: Page[RowChangeView, int] = Page([], None)
    if first is not None:
        page = search.row_changes(
            session=session,
            changeset_id=detail.summary.id,
            op=op,
            after_id=first - 1 if after_id is None else after_id,
            limit=limit,
        )
    if op == "update":
        changes = [
            replace(c, before=utc_image(c.before, times), after=utc_image(c.after, times))
            for c in page.items
        ]
        return ChangeFrames(
            update_styler(changes, labels), None, None, len(page.items), page.next_key
        )
    images = {
        c.row_id: utc_image(c.after if op == "insert" else c.before, times) or {}
        for c in page.items
    }
    frame = rows_frame(images, labels)
    if op == "insert":
        return ChangeFrames(None, frame, None, len(page.items), page.next_key)
    return ChangeFrames(None, None, frame, len(page.items), page.next_key)


def _ordered_columns(keys: Iterable[str], labels: Mapping[str, str]) -> list[str]:
    present = set(keys)
    known = [name for name in labels if name in present]
    return known + sorted(present - set(known))


def frame_names(labels: Iterable[str], own: Iterable[str]) -> list[str]:
    """Frame column names for a dataset's column labels in a frame that adds columns of its
    own (``own``: "Row id", "When"…): each label as it is, unless that name is taken (by such a
    column or an earlier label), then with " (column)" appended until it is free. A dataset may
    well have a column labelled "Row id" or "When"; it must neither replace the frame's own
    column nor be replaced by it."""
    taken = set(own)
    names: list[str] = []
    for label in labels:
        name = label
        while name in taken:
            name += " (column)"
        taken.add(name)
        names.append(name)
    return names


def update_styler(changes: list[RowChangeView], labels: Mapping[str, str]) -> Styler:
    """Updated rows as *before* / *after* line pairs with each changed cell highlighted; a blank
    cell is one that row did not change; ``∅`` is no value and ``""`` an empty text
    (``change_text``)."""
    columns = _ordered_columns((k for c in changes for k in (c.after or {})), labels)
    own = ("Row id", "State")
    names = dict(zip(columns, frame_names((labels.get(n, n) for n in columns), own), strict=True))
    records: list[dict[str, Any]] = []
    for c in changes:
        for state, image in (("before", c.before or {}), ("after", c.after or {})):
            line: dict[str, Any] = {"Row id": c.row_id, "State": state}
            for name in columns:
                if name in image:
                    line[names[name]] = change_text(image[name])
                else:
                    line[names[name]] = ""
            records.append(line)
    shown = [*own, *names.values()]
    frame = pd.DataFrame.from_records(records, columns=shown)

    def highlight(row: pd.Series[Any]) -> list[str]:
        style = BEFORE_STYLE if row["State"] == "before" else AFTER_STYLE
        return ["" if i < 2 or row.iloc[i] == "" else style for i in range(len(row))]

    return frame.style.apply(highlight, axis=1)


def rows_frame(images: Mapping[int, RowImage], labels: Mapping[str, str]) -> pd.DataFrame:
    """Whole rows by ``_row_id``: Row id, then the columns (labels, see ``frame_names``) as
    text (``whole_text``: no value is a missing cell, an empty text an empty one)."""
    return _rows_frame(images, labels)[0]


def _rows_frame(
    images: Mapping[int, RowImage], labels: Mapping[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """``rows_frame`` and the dataset's labels of its columns after "Row id", in order."""
    columns = _ordered_columns((k for image in images.values() for k in image), labels)
    if not columns:
        columns = list(labels)
    shown = [labels.get(n, n) for n in columns]
    data = {
        "Row id": pd.array(list(images), dtype="int64"),
        **{
            label: pd.array(
                [whole_text(image.get(name)) for image in images.values()], dtype="string"
            )
            for name, label in zip(columns, frame_names(shown, ("Row id",)), strict=True)
        },
    }
    return pd.DataFrame(data), shown


def bulk_page(
    *,
    session: Session,
    actor: Actor,
    detail: ChangesetDetail,
    bulk_load_id: int,
    offset: int,
    limit: int = search.PAGE_SIZE,
) -> pd.DataFrame:
    """Rows ``offset`` .. ``offset + limit - 1`` of one bulk load of the changeset (``detail``,
    as ``changeset`` read it).

    Raises:
        PermissionDenied: as ``changeset``.
        NotFound: the bulk load is not the changeset's.
        ValidationError: a bad page size.
        AuditError: the stored rows no longer match their SHA-256.
    """
    if not 1 <= limit <= MAX_BULK_PAGE:
        raise ValidationError(f"Choose a page size between 1 and {MAX_BULK_PAGE}.")
    _check_open(actor, detail)
    if bulk_load_id not in {b.id for b in detail.bulk_loads}:
        raise NotFound(f"Changeset {detail.summary.id} has no bulk load {bulk_load_id}.")
    labels = column_labels(session=session, dataset_id=detail.summary.dataset_id)
    times = datetime_columns(session=session, dataset_id=detail.summary.dataset_id)
    images = bulk_rows_slice(
        session=session, bulk_load_id=bulk_load_id, offset=max(0, offset), limit=limit
    )
    return rows_frame({k: utc_image(v, times) or {} for k, v in sorted(images.items())}, labels)


def activity_frame(
    *, session: Session, actor: Actor, trail_filter: TrailFilter, by: ActivityBy = "actor"
) -> pd.DataFrame:
    """Row changes per UTC day and actor or dataset, one line each: columns ``day``, ``by``
    (``"actor"`` or ``"dataset"``) and ``rows changed``, for a chart of ``rows changed`` by
    ``day`` coloured by ``by``. Actors and datasets are values here, never column names, so
    none can take the name of another column (a user or dataset named "day").

    Every day of the filter's range is there (``days_of``), a day without changes once, at 0,
    so the chart's axis spans the whole range and one day is one day's width. People read as
    the trail's tables name them (``who``: ``Ann A (ann)``, by their latest display name). No
    change at all in the range: no line.

    Raises:
        PermissionDenied: the actor is not an admin.
        ValidationError: a date range that ends before it starts.
    """
    _require_admin(actor)
    _check_range(trail_filter)
    points = search.activity(session=session, trail_filter=trail_filter, by=by)
    return _activity_frame(session, points, by, trail_filter)


DATASET_ACTIVITY_DAYS: Final = 90


def dataset_activity_frame(
    *, session: Session, actor: Actor, dataset_id: int, days: int = DATASET_ACTIVITY_DAYS
) -> pd.DataFrame:
    """One dataset's row changes per UTC day and person over its last ``days`` days, today
    included, for the History page's chart (any role reads a dataset's history): the columns
    of ``activity_frame`` by ``"actor"``, every one of those days there. Someone writing
    outside the portal is there as the database user, as in the log.

    Raises:
        NotFound: no such dataset.
    """
    _require_viewer(actor)
    get_dataset(session=session, dataset_id=dataset_id)
    today = datetime.now(UTC).date()
    trail_filter = TrailFilter(
        dataset_id=dataset_id,
        since=day_start(today - timedelta(days=days - 1)),
        until=day_after(today),
    )
    points = search.activity(session=session, trail_filter=trail_filter)
    return _activity_frame(session, points, "actor", trail_filter)


def days_of(trail_filter: TrailFilter, points: Iterable[date] = ()) -> list[date]:
    """Every UTC day a chart of ``trail_filter`` covers, in order: from its ``since`` (inclusive)
    to its ``until`` (exclusive); an open end reaches the first or last of ``points``."""
    seen = sorted(points)
    first = trail_filter.since.astimezone(UTC).date() if trail_filter.since else None
    last = (
        (trail_filter.until.astimezone(UTC) - timedelta(microseconds=1)).date()
        if trail_filter.until
        else None
    )
    first = first or (seen[0] if seen else None)
    last = last or (seen[-1] if seen else None)
    if first is None or last is None:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _activity_frame(
    session: Session, points: list[search.ActivityPoint], by: ActivityBy, trail_filter: TrailFilter
) -> pd.DataFrame:
    # Each day as text (2026-12-02): a chart draws a date-time in the browser's time zone, so
    # west of UTC each UTC day's bar would stand on the evening before. As text, each day is
    # one band of the axis: a day without changes is there at 0 (under the first series' name,
    # once), or a month's chart with one busy day drew that day the whole width.
    if by == "actor":
        shown = search.display_names(session=session, usernames={p.key for p in points})
        points = [replace(p, key=who(shown.get(p.key, p.key), p.key)) for p in points]
    lines = [(p.day, p.key, p.changes) for p in points]
    if lines:
        busy = {p.day for p in points}
        first_key = min(p.key for p in points)
        lines += [(d, first_key, 0) for d in days_of(trail_filter, busy) if d not in busy]
        lines.sort(key=lambda line: (line[0], line[1]))
    return pd.DataFrame(
        {
            "day": pd.array([d.isoformat() for d, _, _ in lines], dtype="string"),
            by: pd.array([k for _, k, _ in lines], dtype="string"),
            "rows changed": pd.array([n for _, _, n in lines], dtype="int64"),
        }
    )


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Export:
    """A prepared download and the ``export`` event that records it."""

    data: bytes
    file_name: str
    mime: str
    rows: int
    event_id: int


@dataclass(frozen=True)
class TrailExportKey:
    """What a prepared export of the trail was asked for (the Audit page keeps it with the
    file): the list, its filter, and whether each row change is included. A file prepared for
    an equal key still serves, in whichever format it was prepared (the file names its own)."""

    trail_list: TrailList
    trail_filter: TrailFilter
    include_rows: bool


_CHANGESET_FIELDS = (
    "seq",
    "changeset_id",
    "committed_at",
    "kind",
    "what",
    "details",  # a set-up or column change's lines, as its own view lists them (setup_lines)
    "out_of_band",
    "dataset_id",
    "dataset",
    "actor",
    "actor_display_name",
    "reason",
    "inserted",
    "updated",
    "deleted",
)
_ROW_FIELDS = ("row_id", "op", "before", "after")
_EVENT_FIELDS = ("event_id", "occurred_at", "kind", "actor", "target", "detail")


def _changeset_values(c: ChangesetSummary, details: Any) -> list[Any]:
    return [
        c.seq,
        c.id,
        c.committed_at.astimezone(UTC).isoformat(),
        c.kind,
        changeset_what(c),
        details,
        c.out_of_band,
        c.dataset_id,
        c.dataset_name,
        c.actor_username,
        c.actor_display_name,
        c.reason,
        c.inserted,
        c.updated,
        c.deleted,
    ]


def _all_pages(
    session: Session, trail_filter: TrailFilter, trail_list: TrailList
) -> Iterator[list[Any]]:
    after: Any = None
    while True:
        page: Page[Any, Any]
        if trail_list == "changesets":
            page = search.search_changesets(
                session=session, trail_filter=trail_filter, after=after, limit=EXPORT_CHUNK
            )
        else:
            page = search.search_events(
                session=session, trail_filter=trail_filter, after=after, limit=EXPORT_CHUNK
            )
        if page.items:
            yield page.items
        if page.next_key is None:
            return
        after = page.next_key


_DETAILED_KINDS: Final = ("dataset", "schema", "upload")
"""The kinds whose detail ``setup_lines`` puts in words."""


def _setup_details(session: Session, items: Sequence[ChangesetSummary]) -> dict[int, list[str]]:
    """Each of ``items``' ``setup_lines``, by changeset id (read for the kinds that have any)."""
    ids = [c.id for c in items if c.kind in _DETAILED_KINDS]
    if not ids:
        return {}
    rows = session.execute(select(Changeset.id, Changeset.detail).where(Changeset.id.in_(ids)))
    return {i: setup_lines(detail or {}) for i, detail in rows}


ROW_CHANGE_BATCH = 20_000
"""At most about this many row changes are held in memory at once by an export with rows: a
changeset with more is read alone, as a stream."""


def _row_change_columns() -> tuple[Any, ...]:
    return (
        RowChange.row_id,
        RowChange.op,
        cast(RowChange.before, Text),
        cast(RowChange.after, Text),
    )


def _with_row_changes(
    session: Session, items: list[ChangesetSummary]
) -> Iterator[tuple[ChangesetSummary, Iterator[tuple[Any, ...]]]]:
    """Each changeset of ``items``, in order, with its row changes as (row_id, op, before jsonb
    text, after jsonb text), in capture order. Consume each changeset's rows before the next.

    Changesets are read together while their sealed counts stay under ``ROW_CHANGE_BATCH``; a
    larger one is streamed alone (a server-side cursor), so one huge changeset — a replace of
    millions of rows — never sits in memory whole, and a size limit stops it early.
    """
    batch: list[ChangesetSummary] = []
    held = 0
    for c in [*items, None]:
        size = 0 if c is None else c.inserted + c.updated + c.deleted
        if batch and (c is None or held + size > ROW_CHANGE_BATCH):
            by_changeset: dict[int, list[tuple[Any, ...]]] = {b.id: [] for b in batch}
            rows = session.execute(
                select(RowChange.changeset_id, *_row_change_columns())
                .where(RowChange.changeset_id.in_(list(by_changeset)))
                .order_by(RowChange.changeset_id, RowChange.id)
            )
            for r in rows:
                by_changeset[r[0]].append(tuple(r[1:]))
            for b in batch:
                yield b, iter(by_changeset[b.id])
            batch, held = [], 0
        if c is None:
            return
        if size > ROW_CHANGE_BATCH:
            stream = session.execute(
                select(*_row_change_columns())
                .where(RowChange.changeset_id == c.id)
                .order_by(RowChange.id)
                .execution_options(yield_per=2_000)
            )
            yield c, (tuple(r) for r in stream)
            continue
        batch.append(c)
        held += size


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralise(str(value))


def export_trail(
    *,
    session: Session,
    actor: Actor,
    trail_filter: TrailFilter,
    trail_list: TrailList = "changesets",
    fmt: ExportFormat = "csv",
    include_rows: bool = False,
    max_mb: int | None = None,
) -> Export:
    """``write_trail`` into a download held in memory: at most ``max_mb`` (default: the upload
    limit, as every download), CSV as UTF-8 with a byte-order mark for spreadsheets.

    Raises:
        as ``write_trail``.
    """
    buffer = io.StringIO()
    count, event_id = write_trail(
        session=session,
        actor=actor,
        trail_filter=trail_filter,
        out=buffer,
        trail_list=trail_list,
        fmt=fmt,
        include_rows=include_rows,
        max_mb=max_mb or get_settings().max_upload_mb,
    )
    data = buffer.getvalue().encode("utf-8-sig" if fmt == "csv" else "utf-8")
    mime = "text/csv" if fmt == "csv" else "application/json"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Export(data, f"audit-{trail_list}-{stamp}.{fmt}", mime, count, event_id)


def write_trail(
    *,
    session: Session,
    actor: Actor,
    trail_filter: TrailFilter,
    out: TextIO,
    trail_list: TrailList = "changesets",
    fmt: ExportFormat = "csv",
    include_rows: bool = False,
    max_mb: int | None = None,
) -> tuple[int, int]:
    """Write every changeset (or event) matching the filter, newest first, to ``out`` as CSV
    (every cell formula-safe) or JSON, and record an ``export`` event of who, what and how
    many; returns how many were written and the event's id.

    With ``include_rows`` (changesets only) each captured row change is included: in CSV one
    line per row change (``before``/``after`` as JSON text; a changeset without captured row
    changes keeps one line), in JSON a ``row_changes`` list per changeset. Bulk-loaded rows are
    not expanded; ``inserted`` counts them. Past ``max_mb`` written (``None``: no limit, for a
    file on disk) it stops, and nothing is recorded.

    Raises:
        PermissionDenied: the actor is not an admin.
        ValidationError: as ``search_trail``, an unknown format, or more than ``max_mb``.
    """
    _require_admin(actor)
    _check_range(trail_filter)
    if fmt not in ("csv", "json"):
        raise ValidationError("Export as csv or json.")
    with_rows = include_rows and trail_list == "changesets"
    sink = _Written(out, max_mb)
    write = _trail_csv if fmt == "csv" else _trail_json
    count = write(session, trail_filter, trail_list, with_rows, sink)
    return count, _record_export(session, actor, trail_filter, trail_list, fmt, with_rows, count)


def record_cut_short_export(
    *,
    session: Session,
    actor: Actor,
    trail_filter: TrailFilter,
    out_problem: str,
    trail_list: TrailList = "changesets",
    fmt: ExportFormat = "csv",
    include_rows: bool = False,
) -> int:
    """Record an export to a stream that stopped part-way once some of it had left the portal
    (standard output closed by ``| head``, say): what was asked and why it stopped
    (``out_problem``), with ``rows`` unknown (``None``). ``write_trail``'s transaction rolled
    back with the error, so this needs a transaction of its own. Returns the event's id.

    Raises:
        PermissionDenied: the actor is not an admin.
    """
    _require_admin(actor)
    with_rows = include_rows and trail_list == "changesets"
    return _record_export(
        session, actor, trail_filter, trail_list, fmt, with_rows, None, cut_short=out_problem
    )


def _record_export(
    session: Session,
    actor: Actor,
    trail_filter: TrailFilter,
    trail_list: TrailList,
    fmt: ExportFormat,
    with_rows: bool,
    rows: int | None,
    **more: Any,
) -> int:
    return record_event(
        session=session,
        kind="export",
        actor_username=actor.username,
        target=(
            f"dataset:{trail_filter.dataset_id}" if trail_filter.dataset_id is not None else "audit"
        ),
        detail={
            "what": f"audit {trail_list}",
            "format": fmt,
            "filter": trail_filter.to_json(),
            "include_rows": with_rows,
            "rows": rows,
            **more,
        },
    )


class _Written:
    """A text stream that counts what it is given, for ``check_download_size``."""

    def __init__(self, out: TextIO, max_mb: int | None) -> None:
        self.out, self.max_mb, self.size = out, max_mb, 0

    def write(self, text: str) -> int:
        self.size += len(text)  # characters: about bytes, a bound not an exact size
        return self.out.write(text)

    def check(self, rows: int) -> None:
        if self.max_mb is not None:
            check_download_size(self.size, rows, self.max_mb)


def _trail_csv(
    session: Session,
    trail_filter: TrailFilter,
    trail_list: TrailList,
    with_rows: bool,
    out: _Written,
) -> int:
    writer = csv.writer(out)
    if trail_list == "events":
        writer.writerow(_EVENT_FIELDS)
    else:
        writer.writerow([*_CHANGESET_FIELDS, *(_ROW_FIELDS if with_rows else ())])
    count = 0
    for items in _all_pages(session, trail_filter, trail_list):
        count += len(items)
        if trail_list == "events":
            for e in items:
                writer.writerow(
                    neutralise_row(
                        [
                            str(e.id),
                            e.occurred_at.astimezone(UTC).isoformat(),
                            e.kind,
                            e.actor_username or "",
                            e.target or "",
                            detail_text(e.detail),
                        ]
                    )
                )
            out.check(count)
            continue
        details = {i: "; ".join(lines) for i, lines in _setup_details(session, items).items()}
        if not with_rows:
            writer.writerows(
                [_csv_text(v) for v in _changeset_values(c, details.get(c.id, ""))] for c in items
            )
            out.check(count)
            continue
        for c, changes in _with_row_changes(session, items):
            values = [_csv_text(v) for v in _changeset_values(c, details.get(c.id, ""))]
            written = 0
            for row_id, op, before, after in changes:
                writer.writerow(values + [_csv_text(v) for v in (row_id, op, before, after)])
                written += 1
                if written % 1_000 == 0:
                    out.check(count)
            if not written:
                writer.writerow(values + [""] * len(_ROW_FIELDS))
        out.check(count)
    return count


def _trail_json(
    session: Session,
    trail_filter: TrailFilter,
    trail_list: TrailList,
    with_rows: bool,
    out: _Written,
) -> int:
    """A JSON array; row images are embedded as PostgreSQL printed them (exact decimals)."""
    count = 0
    separator = "[\n"
    for items in _all_pages(session, trail_filter, trail_list):
        count += len(items)
        if trail_list == "events":
            for e in items:
                out.write(separator)
                separator = ",\n"
                out.write(
                    json.dumps(
                        dict(
                            zip(
                                _EVENT_FIELDS,
                                [
                                    e.id,
                                    e.occurred_at.astimezone(UTC).isoformat(),
                                    e.kind,
                                    e.actor_username,
                                    e.target,
                                    e.detail,
                                ],
                                strict=True,
                            )
                        ),
                        ensure_ascii=False,
                        default=str,
                    )
                )
            out.check(count)
            continue
        listed = _setup_details(session, items)
        pairs = _with_row_changes(session, items) if with_rows else ((c, iter(())) for c in items)
        for c, changes in pairs:
            values = _changeset_values(c, listed.get(c.id, []))
            head = json.dumps(
                dict(zip(_CHANGESET_FIELDS, values, strict=True)),
                ensure_ascii=False,
            )
            out.write(separator)
            separator = ",\n"
            if not with_rows:
                out.write(head)
                continue
            out.write(head[:-1] + ', "row_changes": [')
            for written, (row_id, op, before, after) in enumerate(changes, start=1):
                out.write(
                    f'{", " if written > 1 else ""}{{"row_id": {row_id}, "op": {json.dumps(op)}, '
                    f'"before": {before or "null"}, "after": {after or "null"}}}'
                )
                if written % 1_000 == 0:
                    out.check(count)
            out.write("]}")
        out.check(count)
    out.write("[\n\n]\n" if separator == "[\n" else "\n]\n")
    return count


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------


def chain_heads(*, session: Session, actor: Actor) -> tuple[ChainHead, EventHead]:
    """The heads of the changesets' chain and of the events' chain, as ``portal audit head``
    prints them.

    Raises:
        PermissionDenied: the actor is not an admin.
    """
    _require_admin(actor)
    return read_head(session=session), read_event_head(session=session)


@dataclass(frozen=True)
class ChainStatus:
    """Both hash chains checked: the changesets' and the events'. ``recorded_seq``: the event
    that then recorded the check, the first one it does not cover (``None`` if not known)."""

    changesets: VerifyResult
    events: EventVerifyResult
    recorded_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.changesets.ok and self.events.ok


def chain_status(*, session: Session, actor: Actor) -> ChainStatus:
    """Recompute both hash chains, exactly as ``portal audit verify`` does, and record that
    they were checked (and the outcome) as an ``audit_view`` event, after the checks: that
    event is the events' chain's next one, past the head the check reports (``recorded_seq``).

    Raises:
        PermissionDenied: the actor is not an admin.
    """
    _require_admin(actor)
    result = ChainStatus(verify(session=session), verify_events(session=session))
    event_id = record_event(
        session=session,
        kind="audit_view",
        actor_username=actor.username,
        target="audit:verify",
        detail={
            "ok": result.ok,
            "changesets": result.changesets.changesets,
            "head": result.changesets.head.hash,
            "failed_seq": result.changesets.failed_seq,
            "events": result.events.count,
            "event_head": result.events.head.hash,
            "failed_event_seq": result.events.failed_seq,
        },
    )
    # The chaining trigger gave it its seq on insert, under the head's lock held until commit.
    recorded = session.scalar(select(Event.seq).where(Event.id == event_id))
    return replace(result, recorded_seq=recorded)


def dataset_drift(
    *, session: Session, actor: Actor, progress: Callable[[str], None] | None = None
) -> list[DatasetDrift]:
    """Every dataset compared with the state its audit log rebuilds, as ``portal audit verify
    --data`` does; ``progress`` hears of each dataset as it starts. The check reads one
    snapshot, so it must be the first work of ``session``'s transaction; record it afterwards,
    in a transaction of its own, with ``record_drift_check``.

    Raises:
        PermissionDenied: the actor is not an admin.
        AuditError: a bulk load's stored stream no longer matches its SHA-256.
    """
    _require_admin(actor)
    return reconcile.check_datasets(
        session=session,
        progress=None if progress is None else lambda d: progress(d.name),
    )


def all_datasets_match(count: int) -> str:
    """What a check of ``count`` datasets against the log that found nothing says, without a
    full stop: "Both datasets match their audit log, cell by cell" ("The dataset matches its
    …", "All 3 datasets match their …"); with no dataset, that there was none to check."""
    if count <= 0:
        return "There were no datasets to check"
    matches = agreeing(count, "matches its", "match their")
    return f"{all_of(count, 'dataset', capital=True)} {matches} audit log, cell by cell"


def record_drift_check(
    *, session: Session, actor: Actor, drifts: list[DatasetDrift], problem: str | None = None
) -> None:
    """Record that the datasets were checked against the log, and the outcome; ``problem``:
    the ``AuditError`` that stopped the check (a bulk load's stored rows no longer match their
    SHA-256), which is recorded as a failed check."""
    _require_admin(actor)
    detail: dict[str, Any] = {
        "ok": problem is None and all(d.ok for d in drifts),
        "datasets": len(drifts),
        "differing": [d.dataset_id for d in drifts if not d.ok],
    }
    miscounted = [d.dataset_id for d in drifts if d.count_note]
    if miscounted:  # only when there are some: the events recorded before keep their shape
        detail["miscounted"] = miscounted
    if problem is not None:
        detail["problem"] = problem
    record_event(
        session=session,
        kind="audit_view",
        actor_username=actor.username,
        target="audit:datasets",
        detail=detail,
    )


# ---------------------------------------------------------------------------------------------
# The History page
# ---------------------------------------------------------------------------------------------


def dataset_history(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    after: ChangesetKey | None = None,
    limit: int = search.PAGE_SIZE,
) -> Page[ChangesetSummary, ChangesetKey]:
    """A page of the dataset's sealed changesets, newest first (every role).

    Raises:
        PermissionDenied: the actor has no role.
        NotFound: no such dataset.
        ValidationError: a bad page size.
    """
    _require_viewer(actor)
    get_dataset(session=session, dataset_id=dataset_id)
    return search.search_changesets(
        session=session, trail_filter=TrailFilter(dataset_id=dataset_id), after=after, limit=limit
    )


@dataclass(frozen=True, eq=False)
class AsOf:
    """A dataset's rows right after changeset ``seq``, as text, by ``_row_id``."""

    dataset_id: int
    dataset_name: str
    seq: int
    committed_at: datetime
    frame: pd.DataFrame  # "Row id", then one column per label (see ``frame_names``)
    labels: tuple[str, ...] = ()  # the labels of the frame's columns after "Row id", as given
    numbers: frozenset[str] = frozenset()  # the frame's columns of numbers (shown right-aligned)

    @property
    def rows(self) -> int:
        return len(self.frame)


MAX_AS_OF_ROWS: Final = 500_000
"""Rows ``as_of`` rebuilds at most: the whole table is held in the server's memory (about a
kilobyte a row), and any role may ask for it."""


def as_of(
    *, session: Session, actor: Actor, dataset_id: int, seq: int, max_rows: int = MAX_AS_OF_ROWS
) -> AsOf:
    """The dataset exactly as it stood right after its changeset ``seq``, rebuilt from the
    audit log alone (``audit.trail.dataset_state``), if it then had at most ``max_rows`` rows
    (counted from the sealed changesets' counts first).

    Raises:
        PermissionDenied: the actor has no role.
        NotFound: no such dataset, or ``seq`` is not one of its sealed changesets.
        ValidationError: more rows than ``max_rows``.
        AuditError: a bulk load's stored rows no longer match their SHA-256.
    """
    _require_viewer(actor)
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    committed_at = session.scalar(
        select(Changeset.committed_at).where(
            Changeset.seq == seq, Changeset.dataset_id == dataset_id
        )
    )
    if committed_at is None:
        raise NotFound(f"Dataset {dataset.name!r} has no changeset #{seq}.")
    rows_then = session.execute(
        select(func.coalesce(func.sum(Changeset.inserted - Changeset.deleted), 0)).where(
            Changeset.dataset_id == dataset_id, Changeset.seq <= seq
        )
    ).scalar_one()
    if rows_then > max_rows:
        raise ValidationError(
            f"“{dataset.name}” had {rows_then:,} rows right after #{seq}; the portal rebuilds at "
            f"most {max_rows:,} rows at a time here (each takes memory on the server). A row's "
            "versions are under Row history, and an admin can check the whole table against "
            "the log with `portal audit verify --data`."
        )
    state = dataset_state(session=session, dataset_id=dataset_id, as_of_seq=seq, exact=True)
    spec = dataset_spec(dataset)
    times = _datetime_names(spec)
    labels = _labels(session, dataset_id, spec)
    frame, shown = _rows_frame(
        {k: utc_image(v, times) or {} for k, v in sorted(state.items())}, labels
    )
    numeric = {c.label for c in spec.columns if c.type in ("integer", "decimal")}
    numbers = frozenset(
        name for name, label in zip(frame.columns[1:], shown, strict=True) if label in numeric
    )
    return AsOf(dataset.id, dataset.name, seq, committed_at, frame, tuple(shown), numbers)


AS_OF_TOO_LARGE: Final = (
    "the table as of a changeset cannot be filtered, so read it on the History page, page by "
    "page, and any one row's versions under Row history"
)


def export_as_of(
    *, session: Session, actor: Actor, dataset_id: int, seq: int, max_mb: int | None = None
) -> Export:
    """The dataset as of changeset ``seq`` as a formula-safe CSV (UTF-8 with a BOM; header:
    the column labels, without the row id, like the Datasets page's download), recorded as an
    ``export`` event. At most ``max_mb`` (default: the upload limit, as the Datasets page's).

    Raises:
        as ``as_of``; ValidationError: a file larger than ``max_mb``.
    """
    limit = max_mb or get_settings().max_upload_mb
    state = as_of(session=session, actor=actor, dataset_id=dataset_id, seq=seq)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(neutralise_row(state.labels))
    rows = state.frame.iloc[:, 1:].itertuples(index=False, name=None)
    for n, values in enumerate(rows, start=1):
        writer.writerow(neutralise_row("" if v is pd.NA else str(v) for v in values))
        if n % 1_000 == 0:  # characters, about bytes: a bound, not an exact size
            check_download_size(buffer.tell(), n, limit, advice=AS_OF_TOO_LARGE)
    data = buffer.getvalue().encode("utf-8-sig")
    check_download_size(len(data), state.rows, limit, advice=AS_OF_TOO_LARGE)
    event_id = record_event(
        session=session,
        kind="export",
        actor_username=actor.username,
        target=f"dataset:{dataset_id}",
        detail={
            "dataset_id": dataset_id,
            "dataset": state.dataset_name,
            "format": "csv",
            "as_of_seq": seq,
            "rows": state.rows,
        },
    )
    return Export(
        data,
        f"{file_stem(state.dataset_name)}-as-of-{seq}.csv",
        "text/csv",
        state.rows,
        event_id,
    )


_ROW_OPS: Final = {"add_column": "column added", "remove_column": "column removed"}
"""A row version's change in words, where its code is not one."""


def row_versions_frame(
    *, session: Session, actor: Actor, dataset_id: int, row_id: int
) -> pd.DataFrame:
    """Every version of one row, oldest first: the changeset (#seq, when, who, kind, why), the
    operation, the cells it changed (``label: before → after``) and the whole row after it.

    Raises:
        PermissionDenied: the actor has no role.
        NotFound: no such dataset, or the row never existed in it.
        AuditError: the bulk load that inserted the row no longer matches its SHA-256.
    """
    _require_viewer(actor)
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    labels = _labels(session, dataset_id, spec)
    times = _datetime_names(spec)
    versions = row_versions(session=session, dataset_id=dataset_id, row_id=row_id)
    if not versions:
        raise NotFound(f"Row {row_id} has never existed in dataset “{dataset.name}”.")
    names = _ordered_columns((k for v in versions for k in (v.row or {})), labels)
    own = ("Version", "Changeset", "When", "Who", "Kind", "Why", "Change", "Changed cells")
    shown = dict(zip(names, frame_names((labels.get(n, n) for n in names), own), strict=True))
    records = []
    for n, v in enumerate(versions, start=1):
        c = v.change
        changed = "; ".join(
            f"{labels.get(k, k)}: {change_text(b)} → {change_text(a)}"
            for k, (b, a) in v.changed.items()
            if c.op in ("update", "add_column", "remove_column")
            for b, a in [(utc_text(b), utc_text(a)) if k in times else (b, a)]
        )
        row = utc_image(v.row, times)
        record = {
            "Version": n,
            "Changeset": f"#{c.seq}",
            "When": when(c.committed_at),
            "Who": who(c.actor_display_name, c.actor_username),
            "Kind": kind_label(c.kind),
            "Why": c.reason,
            "Change": _ROW_OPS.get(c.op, c.op) if c.bulk_load_id is None else "bulk insert",
            "Changed cells": changed,
        }
        for name in names:
            record[shown[name]] = whole_text(row.get(name)) if row else ""
        records.append(record)
    return pd.DataFrame.from_records(records).astype({"Version": "int64"})
