"""The Audit page's words for the log: every changeset and event kind, and every action and
reason an event records, has a label (one without still reads); an event's target reads as what
it names; its details read as one line, not as JSON, the checks an admin ran as sentences; a
dataset's set-up and settings changes read as sentences."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from audit import search
from portal.models import CHANGESET_KINDS, EVENT_KINDS
from portal.trail_views import (
    ACTION_LABELS,
    KIND_LABELS,
    REASON_LABELS,
    TrailNames,
    action_label,
    all_datasets_match,
    detail_line,
    detail_text,
    kind_label,
    reason_label,
    setup_lines,
    target_label,
    who,
)


@pytest.mark.parametrize("kind", sorted({*CHANGESET_KINDS, *EVENT_KINDS, *sum(search.kinds(), ())}))
def test_every_kind_has_a_label(kind: str) -> None:
    assert kind in KIND_LABELS
    assert kind_label(kind) == KIND_LABELS[kind]
    assert "_" not in kind_label(kind)


def test_labels_are_distinct_and_no_stale_kind_is_labelled() -> None:
    assert len(set(KIND_LABELS.values())) == len(KIND_LABELS)
    assert set(KIND_LABELS) == {*CHANGESET_KINDS, *EVENT_KINDS}


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("sign_in_failed", "Failed sign-in"),
        ("audit_view", "Audit viewed"),
        ("out_of_band", "⚠ OUT OF BAND"),
        ("edit", "Edit"),
    ],
)
def test_kinds_read_in_words(kind: str, label: str) -> None:
    assert kind_label(kind) == label


@pytest.mark.parametrize(
    ("kind", "label"),
    [("password_reset", "Password reset"), ("x", "X"), ("", "—"), ("_", "—")],
)
def test_a_kind_without_a_label_still_reads(kind: str, label: str) -> None:
    assert kind_label(kind) == label


def test_details_read_as_one_line_with_keys_in_order() -> None:
    assert detail_line({"role": "editor", "attempts": 3}) == "attempts: 3 · role: editor"
    assert detail_line({"b": 1, "a": 2}) == detail_line({"a": 2, "b": 1})


def test_a_recorded_moment_reads_as_the_when_column_does() -> None:
    """ "locked until: 2026-12-05T10:33:01.653090+00:00" stood beside When's readable times."""
    assert detail_line({"locked_until": "2026-12-05T10:33:01.653090+00:00"}) == (
        "locked until: 2026-12-05 10:33:01 UTC"
    )
    assert detail_line({"until": "2026-12-05T12:33:01+02:00"}) == "until: 2026-12-05 10:33:01 UTC"
    assert detail_line({"text": "2026-12-05"}) == "text: 2026-12-05"  # a date is no moment


def test_empty_details_read_as_nothing() -> None:
    assert detail_line({}) == ""


def test_no_value_truths_numbers_and_empty_texts() -> None:
    assert (
        detail_line({"rows": None, "ok": False, "unknown_user": True, "n": 2.5, "text": ""})
        == 'n: 2.5 · ok: false · rows: — · text: "" · unknown user: true'
    )


def test_nested_values_read_compactly() -> None:
    detail = {
        "list": "changesets",
        "filter": {"kind": "out_of_band", "actor": None, "text": ""},
        "differing": [3, 5],
        "miscounted": [],
        "reason_required": {"before": False, "after": True},
        "deep": {"x": [{"b": 1, "a": None}]},
    }
    assert detail_line(detail) == (
        "deep: {x: [{a: —, b: 1}]} · differing: [3, 5] · "
        "filter: kind ⚠ OUT OF BAND · list: changesets · miscounted: [] · "
        "reason required: false → true"
    )


def test_non_ascii_and_line_breaks_stay_on_one_line() -> None:
    line = detail_line({"name": "Zoë Ångström", "problem": "first\nsecond\r\nthird", "ключ": "√"})
    assert line == "name: Zoë Ångström · problem: first second third · ключ: √"


def test_the_exports_keep_the_json() -> None:
    detail = {"ok": False, "rows": None, "name": "o'hara", "n": 2}
    assert json.loads(detail_text(detail)) == detail
    assert detail_text(detail) == '{"n": 2, "name": "o\'hara", "ok": false, "rows": null}'


def test_who_names_the_username_beside_a_display_name_two_people_may_share() -> None:
    assert who("Ann A", "ann") == "Ann A (ann)"
    assert who("Ann A", "ann.b") == "Ann A (ann.b)"
    assert who("portal_owner", "portal_owner") == "portal_owner"  # out of band


CREATED = {
    "action": "create",
    "name": "People",
    "table": "ds_people",
    "spec": {
        "columns": [
            {"label": "Name", "name": "name", "type": "text"},
            {"label": "Qty", "name": "qty", "type": "integer"},
        ]
    },
    "reason_required": False,
}


@pytest.mark.parametrize(
    ("detail", "lines"),
    [
        (
            CREATED,
            ["Created “People”", "2 columns: Name, Qty", "A reason for every change: optional"],
        ),
        (  # an upload that created its dataset
            {"created": CREATED, "mode": "new"},
            ["Created “People”", "2 columns: Name, Qty", "A reason for every change: optional"],
        ),
        (
            {"action": "settings", "reason_required": {"before": True, "after": False}},
            ["A reason for every change: required → optional"],
        ),
        (
            {
                "action": "settings",
                "name": {"before": "People", "after": "Staff"},
                "description": {"before": "Old\ntext", "after": ""},
            },
            ["Name: “People” → “Staff”", "Description: “Old text” → (none)"],
        ),
        ({"action": "create", "name": "X", "spec": "not a spec"}, ["Created “X”"]),
        (  # a schema changeset: each column rule changed
            {
                "action": "rules",
                "changes": [
                    {"column": "qty", "label": "Qty", "rule": "max", "before": 100, "after": 200},
                    {
                        "column": "qty",
                        "label": "Qty",
                        "rule": "required",
                        "before": False,
                        "after": True,
                    },
                ],
            },
            ["Qty · max: 100 → 200", "Qty · required: no → yes"],
        ),
        ({"action": "rules", "changes": "not a list"}, []),
        ({"mode": "append"}, []),  # an upload into a dataset: its rows say it all
        ({}, []),
    ],
)
def test_a_datasets_set_up_reads_as_sentences(detail: dict[str, object], lines: list[str]) -> None:
    assert setup_lines(detail) == lines


@pytest.mark.parametrize(
    ("count", "sentence"),
    [
        (1, "The dataset matches its audit log, cell by cell"),
        (2, "Both datasets match their audit log, cell by cell"),
        (3, "All 3 datasets match their audit log, cell by cell"),
        (1_500, "All 1,500 datasets match their audit log, cell by cell"),
        (0, "There were no datasets to check"),
    ],
)
def test_a_dataset_check_that_found_nothing_says_so_in_words(count: int, sentence: str) -> None:
    """It said "All 2 datasets match…" and "All 1 datasets match…"."""
    assert all_datasets_match(count) == sentence


# -- actions and reasons ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
RECORDED_KEYS = ("action", "reason")


def recorded_codes() -> dict[str, set[str]]:
    """Every ``action`` and ``reason`` the portal's code records in an event's detail, read
    from its source: the texts in ``record_event(detail={"action": …})`` and, through every
    function that passes one of its parameters on to such a place (``_admin_event(…, action)``,
    ``_record_refusal(…, reason)``, ``_count_failure(reason=…)``, ``_refuse``…), the texts
    its callers give it."""
    trees = [
        ast.parse(path.read_text(encoding="utf-8"))
        for folder in ("portal", "audit")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    params: dict[str, list[str]] = {}
    calls: list[tuple[ast.Call, ast.FunctionDef | None]] = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                params.setdefault(
                    node.name, [a.arg for a in [*node.args.args, *node.args.kwonlyargs]]
                )
                calls += [(c, node) for c in ast.walk(node) if isinstance(c, ast.Call)]
    carries: dict[tuple[str, str], str] = {}  # (function, parameter) -> the key it records
    found: dict[str, set[str]] = {key: set() for key in RECORDED_KEYS}

    def take(key: str, value: ast.expr, inside: ast.FunctionDef | None) -> bool:
        """Note the texts in ``value``; if it is a parameter of ``inside``, that carries ``key``."""
        for leaf in ast.walk(value):
            if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                found[key].add(leaf.value)
        if not (isinstance(value, ast.Name) and inside):
            return False
        if value.id not in params.get(inside.name, []) or (inside.name, value.id) in carries:
            return False
        carries[(inside.name, value.id)] = key
        return True

    def name_of(call: ast.Call) -> str:
        func = call.func
        return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")

    changed = True
    while changed:
        changed = False
        for call, inside in calls:
            name = name_of(call)
            if name == "record_event":
                for kw in call.keywords:
                    if kw.arg == "detail" and isinstance(kw.value, ast.Dict):
                        for k, v in zip(kw.value.keys, kw.value.values, strict=True):
                            if isinstance(k, ast.Constant) and k.value in RECORDED_KEYS:
                                changed |= take(k.value, v, inside)
                continue
            names = params.get(name, [])
            given = [*zip(names, call.args, strict=False)]
            given += [(kw.arg, kw.value) for kw in call.keywords if kw.arg]
            for param, value in given:
                if (name, param) in carries:
                    changed |= take(carries[(name, param)], value, inside)
    return found


def test_the_codes_are_read_from_the_code() -> None:
    codes = recorded_codes()
    assert {"create", "set_role", "enable", "disable", "change_own_password"} <= codes["action"]
    assert {"bad_password", "bad_current_password", "bad_cookie", "locked"} <= codes["reason"]


@pytest.mark.parametrize("action", sorted(recorded_codes()["action"]))
def test_every_action_the_portal_records_has_a_label(action: str) -> None:
    """A new action recorded without a label fails here: add it to ``ACTION_LABELS``."""
    assert action in ACTION_LABELS
    assert action_label(action) == ACTION_LABELS[action]


@pytest.mark.parametrize("reason", sorted(recorded_codes()["reason"]))
def test_every_reason_the_portal_records_has_a_label(reason: str) -> None:
    """A new reason recorded without a label fails here: add it to ``REASON_LABELS``."""
    assert reason in REASON_LABELS
    assert reason_label(reason) == REASON_LABELS[reason]


@pytest.mark.parametrize("labels", [ACTION_LABELS, REASON_LABELS])
def test_action_and_reason_labels_are_words_and_distinct(labels: dict[str, str]) -> None:
    assert len(set(labels.values())) == len(labels)
    assert not any("_" in label for label in labels.values())


def test_an_action_or_reason_without_a_label_still_reads() -> None:
    assert action_label("merge_accounts") == "merge accounts"
    assert reason_label("too_many_tries") == "too many tries"
    assert reason_label("") == action_label("_") == "—"
    assert detail_line({"action": 3, "reason": None}) == "action: 3 · reason: —"  # not texts


def test_actions_and_reasons_read_in_words() -> None:
    assert detail_line({"action": "change_own_password"}) == "action: changed own password"
    assert (
        detail_line({"reason": "bad_current_password", "failed_attempts": 2})
        == "failed attempts: 2 · reason: wrong current password"
    )
    assert (
        detail_line({"action": "set_role", "old_role": "editor", "new_role": "admin"})
        == "action: changed the role · new role: admin · old role: editor"
    )


# -- targets ---------------------------------------------------------------------------------

NAMES = TrailNames(datasets={1: "People", 2: "Stock"}, changesets={12: 7})


@pytest.mark.parametrize(
    ("kind", "target", "label"),
    [
        ("audit_view", "dataset:1", "People (dataset 1)"),
        ("export", "dataset:2", "Stock (dataset 2)"),
        ("export", "dataset:9", "dataset 9"),  # removed since
        ("audit_view", "changeset:12", "Changeset #7"),
        ("audit_view", "changeset:13", "changeset id 13"),
        ("audit_view", "audit:verify", "Audit log verification"),
        ("audit_view", "audit:datasets", "Check of every dataset against the log"),
        ("audit_view", "audit", "Audit trail"),
        ("export", "audit", "Audit trail"),
        ("sign_in", "ann", "ann"),
        ("user_admin", "ann", "ann"),
        # Typed at the sign-in form: shown as typed, never read as what the portal names.
        ("sign_in_failed", "dataset:1", "dataset:1"),
        ("lock_out", "audit:verify", "audit:verify"),
        ("audit_view", "dataset:x", "dataset:x"),
        ("audit_view", "dataset:١", "dataset:١"),  # not an ASCII digit
        ("audit_view", "dataset:", "dataset:"),
        ("audit_view", "dataset:" + "9" * 30, "dataset:" + "9" * 30),  # no id
        ("audit_view", "somewhere:else", "somewhere:else"),
        ("audit_view", "two\nlines", "two lines"),
        ("new_kind", "dataset:1", "dataset:1"),
        ("audit_view", None, ""),
        ("sign_in", "", ""),
    ],
)
def test_targets_read_as_what_they_name(kind: str, target: str | None, label: str) -> None:
    assert target_label(kind, target, NAMES) == label


def test_a_target_without_names_reads_by_its_id() -> None:
    assert target_label("export", "dataset:1") == "dataset 1"
    assert target_label("audit_view", "changeset:12") == "changeset id 12"


# -- the checks and the filters an audit view records ------------------------------------------


def view_line(target: str, detail: dict[str, object]) -> str:
    return detail_line(detail, kind="audit_view", target=target, names=NAMES)


@pytest.mark.parametrize(
    ("detail", "line"),
    [
        (
            {"ok": True, "datasets": 2, "differing": []},
            "Both datasets match their audit log, cell by cell",
        ),
        (
            {"ok": True, "datasets": 1, "differing": []},
            "The dataset matches its audit log, cell by cell",
        ),
        ({"ok": True, "datasets": 0, "differing": []}, "There were no datasets to check"),
        (
            {"ok": False, "datasets": 3, "differing": [2]},
            "1 dataset of 3 differs from its audit log: Stock (dataset 2)",
        ),
        (
            {"ok": False, "datasets": 3, "differing": [1, 9]},
            "2 datasets of 3 differ from their audit log: People (dataset 1), dataset 9",
        ),
        (
            {"ok": True, "datasets": 2, "differing": [], "miscounted": [2]},
            "Both datasets match their audit log, cell by cell · "
            "stored row count to correct: Stock (dataset 2)",
        ),
        (
            {"ok": False, "datasets": 0, "differing": [], "problem": "bulk load 3 altered"},
            "The check stopped: bulk load 3 altered",
        ),
        # Not the shape a check records: read as any detail, never an error.
        ({"ok": True, "datasets": "2", "differing": []}, "datasets: 2 · differing: [] · ok: true"),
        ({"differing": [], "ok": True}, "differing: [] · ok: true"),
    ],
)
def test_a_dataset_check_reads_as_a_sentence(detail: dict[str, object], line: str) -> None:
    assert view_line("audit:datasets", detail) == line


HEAD, EVENT_HEAD = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("detail", "line"),
    [
        (
            {
                "ok": True,
                "changesets": 7,
                "head": HEAD,
                "failed_seq": None,
                "events": 11,
                "event_head": EVENT_HEAD,
                "failed_event_seq": None,
            },
            f"Both chains intact · 7 changesets, head {HEAD} · 11 events, head {EVENT_HEAD}",
        ),
        (
            {
                "ok": False,
                "changesets": 1,
                "head": HEAD,
                "failed_seq": 3,
                "events": 11,
                "event_head": EVENT_HEAD,
                "failed_event_seq": 1,
            },
            "Changeset chain broken at #3; event chain broken at event #1 · "
            f"1 changeset, head {HEAD} · 11 events, head {EVENT_HEAD}",
        ),
        (
            {"ok": False, "changesets": 0, "events": 2, "failed_seq": None},
            "A chain is broken · 0 changesets, head — · 2 events, head —",
        ),
        ({"ok": True}, "ok: true"),
    ],
)
def test_a_chain_check_reads_as_a_sentence(detail: dict[str, object], line: str) -> None:
    assert view_line("audit:verify", detail) == line


def test_a_changeset_opened_reads_by_its_number() -> None:
    assert (
        view_line("changeset:12", {"changeset_id": 12, "seq": 7}) == "changeset #7 (id 12) opened"
    )


def test_a_filter_reads_only_its_parts_that_are_set() -> None:
    """It read "filter: {actor: —, dataset id: —, kind: —, since: —, text: "", until: —}"."""
    empty = {"dataset_id": None, "actor": None, "kind": None, "since": None, "until": None}
    assert (
        view_line("audit", {"list": "changesets", "filter": {**empty, "actor": "ann", "text": ""}})
        == "filter: actor ann · list: changesets"
    )
    assert view_line("audit", {"list": "events", "filter": {**empty, "text": ""}}) == (
        "filter: none · list: events"
    )
    everything = {
        "text": "zebra\ncrossing",
        "until": "2026-01-03T00:00:00+00:00",
        "since": "2026-01-01T00:00:00+00:00",
        "kind": "out_of_band",
        "actor": "ann",
        "dataset_id": 1,
    }
    assert view_line("audit", {"list": "changesets", "filter": everything}) == (
        "filter: dataset People, actor ann, kind ⚠ OUT OF BAND, since 2026-01-01, "
        "before 2026-01-03, text “zebra crossing” · list: changesets"
    )
    odd = {"since": "2026-01-01T12:30:00+02:00", "until": "yesterday", "dataset_id": 9, "x": 1}
    assert detail_line({"filter": odd}) == (
        "filter: dataset 9, since 2026-01-01 10:30:00 UTC, before yesterday, x 1"
    )


def test_an_export_reads_its_filter_in_words() -> None:
    detail = {
        "what": "audit events",
        "format": "csv",
        "filter": {"dataset_id": None, "actor": None, "kind": "sign_in_failed", "text": ""},
        "include_rows": False,
        "rows": 4,
    }
    assert detail_line(detail, kind="export", target="audit", names=NAMES) == (
        "filter: kind Failed sign-in · format: csv · include rows: false · rows: 4 · "
        "what: audit events"
    )
