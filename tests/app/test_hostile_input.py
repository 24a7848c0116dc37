"""Hostile input anywhere a browser can send it — a crafted link, a NUL character in any text
box — gets a clear message, writes nothing and never shows a traceback."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from portal.actor import Actor
from portal.db import NUL_REFUSED
from portal.ui.markdown import md_text
from tests.app.conftest import app_test, show_app, sign_in, signed_in, texts
from tests.app.test_edit_page import button, edit_page, set_state, table
from tests.conftest import DatabaseHandle
from tests.db.test_writes import CSV, SPEC
from tests.factories import make_user, upload_dataset

pytestmark = pytest.mark.app

UPLOAD = b"Name,Qty\nann,1\nbob,2\n"


@pytest.fixture
def dataset(fresh_db: DatabaseHandle) -> int:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    return upload_dataset(Actor(name, "E", "editor"), CSV, spec=SPEC, name="People")


def refused_nul(at: AppTest) -> bool:
    """The run ended without an exception, saying what was wrong."""
    assert not at.exception
    # As Markdown source: pages show messages escaped (md_text), the sign-in form as they are
    # (it has no data of anyone's to quote).
    said = (NUL_REFUSED, md_text(NUL_REFUSED))
    return any(message in e.value for e in at.error for message in said)


@pytest.mark.parametrize(
    ("page", "param", "value"),
    [
        ("pages/4_edit.py", "dataset", "²"),  # str.isdigit() says yes, int() says no
        ("pages/4_edit.py", "dataset", "1" * 5000),  # past int()'s 4,300 digits
        ("pages/5_history.py", "dataset", "²"),
        ("pages/5_history.py", "row", "²"),
        ("pages/5_history.py", "row", "1" * 5000),
    ],
)
def test_a_crafted_link_is_ignored(
    fresh_db: DatabaseHandle, dataset: int, page: str, param: str, value: str
) -> None:
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.query_params["dataset"] = str(dataset)
    at.query_params[param] = value
    at.switch_page(page).run()
    assert not at.exception
    if param == "dataset" and page.endswith("history.py"):
        assert "which does not exist" in texts(at)
    if param == "row":  # the dataset opens, the row history does not
        assert "Every version of row" not in texts(at)


def test_a_nul_in_the_sign_in_name_is_refused(fresh_db: DatabaseHandle) -> None:
    at = sign_in(app_test().run(), "ann\x00", "whatever password 123")
    assert refused_nul(at)


def test_a_nul_in_the_datasets_filter_is_refused(fresh_db: DatabaseHandle, dataset: int) -> None:
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.switch_page("pages/3_datasets.py").run()
    at.selectbox(key="datasets.open").select(dataset).run()
    at.selectbox(key=f"datasets.{dataset}.filter.column").select("name").run()
    at.text_input(key=f"datasets.{dataset}.filter.value").input("a\x00b").run()
    assert refused_nul(at)


def test_a_nul_in_the_edit_filter_is_refused_and_can_be_reset(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at.text_input(key=f"edit.{dataset}.view.fval").input("a\x00b")
    button(at, "Apply").click().run()
    assert refused_nul(at)
    assert refused_nul(at.run())  # the filter stays until it is reset
    button(at, "Reset filters and sort").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[f"edit.{dataset}.window"].read.rows


def test_a_nul_in_the_commit_reason_is_refused_and_nothing_written(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    before = table(fresh_db, dataset)
    at = set_state(edit_page(fresh_db, "editor", dataset), {"edited_rows": {0: {"qty": 11}}})
    at.text_input(key=f"edit.{dataset}.reason").input("re\x00count").run()
    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert refused_nul(at)
    assert table(fresh_db, dataset) == before


def test_a_nul_in_the_audit_search_is_refused(fresh_db: DatabaseHandle, dataset: int) -> None:
    at, _ = signed_in(fresh_db, "admin")
    show_app(at)
    at.switch_page("pages/7_audit.py").run()
    at.text_input(key="audit.text").input("a\x00b").run()
    assert refused_nul(at)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # A display name is checked for every control character first, this one among them.
        (
            "display_name",
            "New\x00bie",
            "The display name has an invisible or control character (U+0000, character 4)",
        ),
        # So is an email address.
        (
            "email",
            "new\x00bie@example.org",
            "The email address has an invisible or control character (U+0000, character 4)",
        ),
    ],
)
def test_a_nul_in_a_new_user_s_name_or_email_is_refused(
    fresh_db: DatabaseHandle, field: str, value: str, message: str
) -> None:
    at, _ = signed_in(fresh_db, "admin")
    show_app(at)
    at.switch_page("pages/9_users.py").run()
    for key, typed in [
        ("username", "newbie"),
        (field, value),
        ("password", "a long enough password 1"),
        ("confirm", "a long enough password 1"),
    ]:
        at.text_input(key=f"users.add.{key}").input(typed)
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert any(md_text(message) in e.value for e in at.error)
    with fresh_db.app.connect() as conn:
        assert not conn.scalar(text("SELECT count(*) FROM portal.users WHERE username = 'newbie'"))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        # A name is checked for every control character first, this one among them.
        ("Dataset name", "The name has an invisible or control character (U+0000, character 2)"),
        ("Reason (kept in the audit log)", NUL_REFUSED),
    ],
)
def test_a_nul_in_an_upload_s_name_or_reason_is_refused(
    fresh_db: DatabaseHandle, field: str, message: str
) -> None:
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.file_uploader[0].set_value(("rows.csv", UPLOAD, "text/csv"))
    at.run()
    [box] = [t for t in at.text_input if t.label == field]
    box.input("x\x00y").run()
    [go] = [b for b in at.button if b.label == "Create the dataset"]
    if field == "Dataset name":  # said under the field at once, and Create waits
        assert go.disabled
    else:
        go.click().run()
    assert not at.exception
    assert any(md_text(message) in e.value for e in at.error), [e.value for e in at.error]
    with fresh_db.app.connect() as conn:
        assert not conn.scalar(text("SELECT count(*) FROM portal.datasets"))
