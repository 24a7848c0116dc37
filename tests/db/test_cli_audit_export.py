"""``portal audit export``: the Audit page's export from the command line, written as it is read
(no size limit), to a file written whole or not at all or to standard output, filtered like the
page, and recorded as an export event by the operator."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from audit.events import record_event
from portal import trail_views
from portal.cli import main
from portal.db import session_scope
from portal.errors import ValidationError
from portal.trail_views import TrailFilter
from tests.db.test_trail_views import event_rows
from tests.trail_seed import Trail, seed_trail

pytestmark = pytest.mark.db


@pytest.fixture
def trail(fresh_db) -> Trail:  # type: ignore[no-untyped-def]
    return seed_trail(fresh_db)


def export(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["audit", "export", *args])
    return result.exit_code, result.stdout, result.stderr


def rows_of(data: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.removeprefix("\ufeff"), newline="")))


def test_a_file_holds_what_the_audit_page_exports(trail: Trail, tmp_path: Path) -> None:
    out = tmp_path / "trail.csv"
    code, _, said = export("--rows", "-o", str(out))
    assert code == 0, said
    with session_scope() as s:
        page = trail_views.export_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(), include_rows=True
        )
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # for spreadsheets, as the page's
    assert rows_of(out.read_text("utf-8")) == rows_of(page.data.decode("utf-8"))
    assert f"{page.rows:,} changesets exported to {out}" in said
    cli, by_page = event_rows(trail.db, "export")
    assert cli["actor_username"].startswith("cli:")
    assert cli["detail"] == by_page["detail"]
    assert not list(tmp_path.glob(".*partial"))


def test_filters_and_json_on_standard_output(trail: Trail) -> None:
    code, out, said = export("--what", "events", "--format", "json", "--kind", "sign_in")
    assert code == 0, said
    assert json.loads(out) == []  # the seed signs nobody in
    code, out, said = export("--format", "json", "--dataset", str(trail.people), "--rows")
    assert code == 0, said
    changesets = json.loads(out)
    assert {c["dataset_id"] for c in changesets} == {trail.people}
    assert [c["seq"] for c in changesets] == sorted((c["seq"] for c in changesets), reverse=True)
    assert any(c["row_changes"] for c in changesets)


def test_a_refused_export_writes_no_file_and_records_nothing(trail: Trail, tmp_path: Path) -> None:
    out = tmp_path / "trail.csv"
    code, _, said = export("--since", "2030-01-02", "--until", "2030-01-01", "-o", str(out))
    assert code == 1
    assert "Error:" in said
    assert not out.exists()
    assert not list(tmp_path.iterdir())
    assert event_rows(trail.db, "export") == []


def test_an_export_to_standard_output_closed_part_way_is_recorded(trail: Trail) -> None:
    """`portal audit export | head`: the rows head read have left the portal, so the export is
    recorded (as cut short), though it stopped; nothing else is said about the closed pipe."""
    with Session(trail.db.app) as s, s.begin():
        for i in range(1_500):  # far more than a pipe holds
            record_event(
                session=s, kind="audit_view", actor_username="amy", detail={"n": "x" * 80, "i": i}
            )
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "audit", "export", "--what", "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.read(200)
    proc.stdout.close()  # as head does once it has its lines
    _, said = proc.communicate(timeout=120)
    assert first.startswith(b"event_id,occurred_at,kind,actor,target,detail")
    assert proc.returncode == 1
    assert b"Traceback" not in said
    [recorded] = event_rows(trail.db, "export")
    assert recorded["actor_username"].startswith("cli:")
    assert recorded["detail"]["what"] == "audit events"
    assert recorded["detail"]["rows"] is None  # how many reached the reader is not known
    assert "Broken pipe" in recorded["detail"]["cut_short"]


def test_a_file_that_cannot_be_put_in_place_says_the_export_was_recorded(
    trail: Trail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export is committed before its file replaces the target; if that last step fails (a
    file of another user's in a sticky /tmp, say) the message must not say nothing was recorded."""

    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "replace", refuse)
    out = tmp_path / "trail.csv"
    code, _, said = export("-o", str(out))
    assert code == 1
    assert "Traceback" not in said
    assert f"Cannot put the export in place as {out}: Operation not permitted" in said
    assert "no export was recorded" not in said
    assert "The export was recorded" in said
    assert len(event_rows(trail.db, "export")) == 1
    assert not out.exists()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("what", "kind"), [("changesets", "edits"), ("changesets", "sign_in"), ("events", "edit")]
)
def test_a_kind_the_list_has_not_is_refused_not_exported_empty(
    trail: Trail, what: str, kind: str
) -> None:
    """The page offers only the list's own kinds; a mistyped kind, or one of the other list,
    would otherwise export an empty file and record it, as if nothing of that kind happened."""
    code, out, said = export("--what", what, "--kind", kind)
    assert code == 2
    assert out == ""
    assert f"{kind!r} is not a kind of {what}" in said
    assert ("upload, edit, revert" if what == "changesets" else "sign_in, sign_in_failed") in said
    assert event_rows(trail.db, "export") == []


def test_the_page_s_text_filter_exports_the_same_rows(trail: Trail) -> None:
    """The Audit page filters on text too (reasons and values; an event's details); the
    command exports what a text-filtered page exports, and records the text it filtered on."""
    code, out, said = export("--format", "json", "--text", "ZEBRA")
    assert code == 0, said
    with session_scope() as s:
        page = trail_views.export_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(text="ZEBRA"), fmt="json"
        )
    assert json.loads(out) == json.loads(page.data)
    assert [c["seq"] for c in json.loads(out)] == [trail.seqs["bob note"]]
    cli, _ = event_rows(trail.db, "export")
    assert cli["detail"]["filter"]["text"] == "ZEBRA"


def test_an_actor_is_found_in_any_case_and_one_not_in_the_log_is_said(trail: Trail) -> None:
    # Usernames are kept lower-case (the sign-in form lower-cases them): "Ann" is ann's.
    code, out, said = export("--format", "json", "--actor", trail.ann.username.upper())
    assert code == 0, said
    assert {c["actor"] for c in json.loads(out)} == {trail.ann.username}
    assert "no changesets" not in said.lower()
    code, out, said = export("--format", "json", "--actor", "nobody-here")
    assert code == 0, said
    assert json.loads(out) == []
    assert "No changesets or events by “nobody-here” are in the audit log" in said


def test_the_last_day_a_date_can_name_is_an_end_not_a_traceback(trail: Trail) -> None:
    """``--until 9999-12-31`` ("up to and including that day") has no midnight after it in
    Python: the export stopped with an OverflowError; it now runs with no end, and the first
    day a date can name is a start like any other."""
    code, everything, said = export("--format", "json")
    assert code == 0, said
    code, out, said = export("--format", "json", "--since", "0001-01-01", "--until", "9999-12-31")
    assert code == 0, said
    assert json.loads(out) == json.loads(everything)
    assert len(json.loads(out)) == len(trail.seqs)
    assert [r["detail"]["filter"]["until"] for r in event_rows(trail.db, "export")] == [None, None]


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_actor_is_refused_not_taken_for_everyone(trail: Trail, blank: str) -> None:
    """``--actor ""`` (an unset shell variable, say) was said to be in no changeset or event,
    and then every changeset was exported and recorded as unfiltered; it is now refused, and
    nothing is exported or recorded."""
    code, out, said = export("--format", "json", "--actor", blank)
    assert code == 2
    assert out == ""
    assert "--actor" in said
    assert "give a username" in said
    assert event_rows(trail.db, "export") == []


def test_a_dataset_id_no_dataset_has_is_said_with_the_ids_there_are(trail: Trail) -> None:
    """``--dataset 9999`` exported an empty file with nothing said, as if that dataset had had
    no changes; as for an actor not in the log, it is now said, with the ids to choose from
    (no page shows a dataset's id)."""
    code, out, said = export("--format", "json", "--dataset", "9999")
    assert code == 0, said
    assert json.loads(out) == []
    assert "No dataset has id 9999" in said
    assert f"{trail.people} “People”" in said
    assert f"{trail.stock} “Stock”" in said
    code, out, said = export("--format", "json", "--dataset", str(trail.stock))
    assert code == 0, said
    assert json.loads(out)
    assert "No dataset" not in said


def test_an_export_to_standard_output_stopped_by_the_database_is_recorded(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text search past its time limit on a later page (or a connection lost) stopped an
    export to standard output after the earlier pages had gone out (`> file`, a pipe), and
    nothing was recorded: audit data left the portal unseen. It is now recorded as cut short,
    with why; an export refused before anything went out still records nothing."""
    from audit import search

    real = search.search_changesets
    calls = []

    def times_out_on_the_second_page(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["after"])
        if len(calls) > 1:
            raise ValidationError("The text search ran longer than 20s and was stopped.")
        return real(**kwargs)

    monkeypatch.setattr("portal.trail_views.EXPORT_CHUNK", 2)
    monkeypatch.setattr(search, "search_changesets", times_out_on_the_second_page)
    code, out, said = export("--text", "e")
    assert code == 1
    assert "The text search ran longer than 20s" in said
    assert "Traceback" not in said
    assert len(rows_of(out)) == 3  # the header and the first page's two changesets went out
    [recorded] = event_rows(trail.db, "export")
    assert recorded["actor_username"].startswith("cli:")
    assert recorded["detail"]["rows"] is None
    assert "The text search ran longer than 20s" in recorded["detail"]["cut_short"]
    assert recorded["detail"]["filter"]["text"] == "e"

    code, out, said = export("--since", "2030-01-02", "--until", "2030-01-01")
    assert (code, out) == (1, "")
    assert len(event_rows(trail.db, "export")) == 1


def test_an_empty_output_name_is_refused_not_a_traceback(trail: Trail, tmp_path: Path) -> None:
    """``-o ""`` (an unset shell variable, say) stopped with a ValueError traceback from the
    partial file's name; it is now refused, saying what to give, and nothing is recorded."""
    result = CliRunner().invoke(main, ["audit", "export", "-o", ""])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "give a file to write, or '-' for standard output" in result.stderr
    assert event_rows(trail.db, "export") == []


def test_an_actor_matching_several_usernames_in_other_cases_is_refused_naming_them(
    trail: Trail,
) -> None:
    """Usernames of the portal are lower-case, but an out-of-band change is by a database
    role, which may be written in capitals. ``--actor`` matching two such names in other cases
    was said to be in no changeset or event at all, and an empty export was recorded; it is
    now refused, naming both, and nothing is exported or recorded."""
    role = trail.ann.username.upper()
    with Session(trail.db.app) as s, s.begin():
        record_event(session=s, kind="sign_in", actor_username=role)
    code, out, said = export("--format", "json", "--actor", trail.ann.username.title())
    assert code == 2
    assert out == ""
    assert f"“{role}”, “{trail.ann.username}”" in said
    assert "No changesets or events" not in said
    assert event_rows(trail.db, "export") == []
    code, out, said = export("--format", "json", "--actor", trail.ann.username)
    assert code == 0, said
    assert {c["actor"] for c in json.loads(out)} == {trail.ann.username}
