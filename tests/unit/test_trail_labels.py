"""The Audit page's words for the log: every changeset and event kind has a label (a kind
without one still reads), an event's details read as one line, not as JSON, and a dataset's
set-up and settings changes read as sentences."""

from __future__ import annotations

import json

import pytest

from audit import search
from portal.models import CHANGESET_KINDS, EVENT_KINDS
from portal.trail_views import (
    KIND_LABELS,
    all_datasets_match,
    detail_line,
    detail_text,
    kind_label,
    setup_lines,
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
        'filter: {actor: —, kind: out_of_band, text: ""} · list: changesets · miscounted: [] · '
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
