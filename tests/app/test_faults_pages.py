"""What a person sees when the database fails under the page (AppTest, real PostgreSQL):

- the server stopped mid-session: "The database is unavailable — retrying…", no traceback, and
  every unsaved edit (made before or during the outage) and the typed reason still there when it
  is back, then committed whole;
- the committing backend terminated mid-commit: the dialog says nothing was saved and the edits
  are kept, the audit log has nothing of that attempt, and "Commit" again goes in;
- the database read-only: the commit says so, in words, not a traceback;
- the database gone right after a revert's or an upload's COMMIT: it is said to be in, by its
  changeset id;
- a read failing at exactly the Upload page's lookup of whether the chosen dataset needs a reason
  (its connection terminated, or a privilege missing): the retry notice or the refusal in words,
  not a traceback, and nothing stored;
- a lock held past the role's ``lock_timeout`` (a migration, say) while a page reads: said as
  data locked by other work, not as a change of the person's that collided;
- a database behind this code's schema (the code upgraded, `portal migrate` not run): the Audit
  page, whose tables came later, says so instead of failing;
- no free connection (the connection limit reached): the retry notice, saying so;
- the database refusing the portal's login (a wrong password, say): every page says that an admin
  must fix the portal's database settings, not that it may be restarting, and does not wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from portal import revert
from portal.ui.db_retry import NOTICE
from tests.app.conftest import show_app, signed_in, texts
from tests.app.test_edit_page import PAGE, button, edit_page, grid_key, set_state, table
from tests.app.test_history_revert import button as keyed
from tests.app.test_history_revert import history, seq_of
from tests.app.test_upload_page import into_people
from tests.conftest import DatabaseHandle, _superuser_exec
from tests.db import test_faults, test_revert
from tests.db.test_faults import (
    Restartable,
    Terminator,
    assert_chain_intact,
    editor_in,
    holding,
    login_refused,
    snapshot,
)
from tests.db.test_writes import CSV, SPEC
from tests.factories import dataset_rows, upload_dataset

pytestmark = pytest.mark.app

# The throw-away cluster a test may stop and start, and a database on it.
own_cluster = test_faults.own_cluster
restartable = test_faults.restartable


def people(database: DatabaseHandle) -> int:
    return upload_dataset(editor_in(database), CSV, spec=SPEC, name="People")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def shows_notice(at: AppTest) -> bool:
    return NOTICE in texts(at)


def test_edit_page_rides_out_a_restart_with_every_edit_kept(
    restartable: Restartable, tmp_path: Path
) -> None:
    database = restartable.handle
    dataset = people(database)
    at = edit_page(database, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 11}}, "deleted_rows": [3]})
    at.text_input(key=f"edit.{dataset}.reason").input("recount").run()
    assert metrics(at)["Cells changed"] == "1"
    old_grid = grid_key(at)

    restartable.stop()
    at.run()
    assert not at.exception
    assert shows_notice(at)
    assert not at.data_editor  # nothing of the page but the notice
    # An edit the browser sends while the notice is up reaches the session too.
    at.session_state[old_grid] = {
        "edited_rows": {0: {"qty": 11}, 1: {"note": "during"}},
        "added_rows": [],
        "deleted_rows": [3],
    }
    at.run()
    assert shows_notice(at)
    assert not at.exception

    restartable.start()
    at.run()  # what the notice's own check does once SELECT 1 answers: the page again
    assert not at.exception
    assert not shows_notice(at)
    assert grid_key(at) != old_grid  # drawn again, the unsaved edits on top
    assert metrics(at) == {
        "Cells changed": "2",
        "Rows changed": "2",
        "Rows added": "0",
        "Rows deleted": "1",
    }
    assert at.text_input(key=f"edit.{dataset}.reason").value == "recount"
    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert not at.exception
    assert table(database, dataset) == [
        (1, "ann", 11, Decimal("1.50"), "first"),
        (2, "bob", 2, Decimal("2.00"), "during"),
        (3, "cy", 3, Decimal("3.25"), "third"),
    ]
    assert_chain_intact(database, tmp_path)


def test_every_page_waits_for_the_database_instead_of_failing(restartable: Restartable) -> None:
    at, _ = signed_in(restartable.handle, "admin")
    show_app(at)
    restartable.stop()
    for page in (
        "pages/1_home.py",
        "pages/2_upload.py",
        "pages/3_datasets.py",
        PAGE,
        "pages/5_history.py",
        "pages/7_audit.py",
        "pages/9_users.py",
    ):
        at.switch_page(page).run()
        assert not at.exception, page
        assert shows_notice(at), page
    restartable.start()
    at.switch_page("pages/2_upload.py").run()
    assert not at.exception
    assert not shows_notice(at)
    assert "Upload a CSV file" in texts(at, main_only=True)


def open_commit_dialog(at: AppTest, dataset: int) -> AppTest:
    at = set_state(at, {"edited_rows": {0: {"qty": 11}}, "added_rows": [{"name": "eve"}]})
    at.text_input(key=f"edit.{dataset}.reason").input("recount").run()
    return button(at, "Review and commit…").click().run()


def test_a_commit_cut_off_mid_way_is_reported_and_the_edits_commit_again(
    fresh_db: DatabaseHandle, tmp_path: Path
) -> None:
    dataset = people(fresh_db)
    at = open_commit_dialog(edit_page(fresh_db, "editor", dataset), dataset)
    before = snapshot(fresh_db)
    terminator = Terminator(fresh_db)
    with holding(fresh_db, "SELECT 1 FROM audit.chain_head WHERE id = 1 FOR UPDATE"):
        terminator.start()  # terminates the backend while its COMMIT waits for the chain head
        button(at, "Commit").click().run()
    terminator.join(60)
    assert terminator.terminated
    assert not at.exception
    said = texts(at)  # the dialog's error
    assert "lost during the commit; nothing was saved" in said
    assert "Your edits are kept — commit again" in said
    assert snapshot(fresh_db) == before  # no changeset or row change of that attempt
    assert metrics(at)["Rows added"] == "1"  # the review still lists the edits

    button(at, "Commit").click().run()  # the dialog is still open: commit again
    assert not at.exception
    assert "Committed as changeset" in texts(at, main_only=True)
    assert [r[1:3] for r in table(fresh_db, dataset)] == [
        ("ann", 11),
        ("bob", 2),
        ("cy", 3),
        ("dee", 4),
        ("eve", None),
    ]
    assert snapshot(fresh_db)["changesets"] == before["changesets"] + 1
    assert_chain_intact(fresh_db, tmp_path)


def test_a_read_only_database_is_said_in_words(fresh_db: DatabaseHandle) -> None:
    dataset = people(fresh_db)
    at = open_commit_dialog(edit_page(fresh_db, "editor", dataset), dataset)
    with fresh_db.superuser.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text(f'ALTER DATABASE "{fresh_db.name}" SET default_transaction_read_only = on')
        )
    from portal.db import reset_engine

    reset_engine()
    button(at, "Commit").click().run()
    assert not at.exception
    assert "The database is read-only right now" in texts(at)
    assert [r[1] for r in table(fresh_db, dataset)] == ["ann", "bob", "cy", "dee"]


def test_a_revert_whose_number_cannot_be_read_after_its_commit_is_reported_done(
    restartable: Restartable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The database goes away right after the revert's COMMIT, before the page reads the new
    changeset's number in a session of its own: the person is told the revert went in (and by
    which changeset id), not "nothing was saved"; the dialog is closed, so nothing is written
    twice."""
    database = restartable.handle
    editor = editor_in(database)
    dataset = upload_dataset(editor, test_revert.CSV, spec=test_revert.SPEC, name="People")
    edited = test_revert.edit(editor, dataset, test_revert.MIXED)
    at, _ = history(database, "editor", dataset, edited)
    keyed(at, "history.revert.open").click().run()
    at.text_input(key="history.revert.reason").input("wrong file").run()
    before, edited_seq = snapshot(database), seq_of(database, edited)

    real_revert, written, stopped = revert.revert, [], []

    def reverting(**kwargs: Any) -> revert.RevertResult:
        result = real_revert(**kwargs)
        written.append(result.changeset_id)
        return result

    def drop_after_commit(session: Session) -> None:
        if written and not stopped:  # the revert's own COMMIT has just gone through
            stopped.append(True)
            restartable.stop("immediate")

    monkeypatch.setattr(revert, "revert", reverting)
    event.listen(Session, "after_commit", drop_after_commit)
    try:
        keyed(at, "history.revert.confirm").click().run()
    finally:
        event.remove(Session, "after_commit", drop_after_commit)
    assert not at.exception
    [reverted] = written
    assert not at.error  # not "nothing was saved"
    [success] = at.success
    assert success.value.startswith(f"Reverted #{edited_seq} as changeset id ")
    assert f"changeset id {reverted} (saved; its number could not be read just now" in (
        success.value
    )

    restartable.start()
    at.run()  # what the page's own check does once the database answers
    assert not at.exception
    assert at.success[0].value == success.value  # said again over the page, once
    assert not [b for b in at.button if b.key == "history.revert.confirm"]  # closed
    at.run()
    assert not at.success
    after = snapshot(database)
    assert after["changesets"] == before["changesets"] + 1  # written once
    now = test_revert.table(database, dataset).values()
    assert sorted(now, key=str) == sorted(test_revert.ORIGINAL.values(), key=str)
    assert_chain_intact(database, tmp_path)


def test_an_upload_whose_number_cannot_be_read_after_its_commit_is_reported_stored(
    restartable: Restartable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The database goes away right after the upload's COMMIT, before its changeset's number
    is read in a session of its own: the page said "The file is still here — store it again",
    and doing so would have loaded the rows twice. It now says they are stored, by changeset
    id, and not to store the file again."""
    from portal import datasets
    from tests.app.test_upload_page import into_people

    database = restartable.handle
    at, dataset_id = into_people(database)
    before = snapshot(database)
    real_record, armed, stopped = datasets.record_upload, [], []

    def recording(**kwargs: Any) -> None:
        real_record(**kwargs)
        armed.append(True)  # the last write before the upload's COMMIT

    def drop_after_commit(session: Session) -> None:
        if armed and not stopped:
            stopped.append(True)
            restartable.stop("immediate")

    monkeypatch.setattr(datasets, "record_upload", recording)
    event.listen(Session, "after_commit", drop_after_commit)
    try:
        [store] = [b for b in at.button if b.label == "Append to People"]
        store.click().run()
    finally:
        event.remove(Session, "after_commit", drop_after_commit)
    assert not at.exception
    assert stopped
    assert "store it again" not in texts(at)
    [stored] = [s for s in at.success if s.value.startswith("1 row loaded into")]
    assert stored.value.startswith("1 row loaded into “People” (changeset id ")
    assert "its number could not be read just now" in stored.value
    assert "Do not store the file again." in stored.value

    restartable.start()
    at.run()
    assert not at.exception
    assert stored.value in [s.value for s in at.success]  # said again over the page, once
    assert not [b for b in at.button if b.label == "Append to People"]  # the file is cleared
    assert snapshot(database)["changesets"] == before["changesets"] + 1
    assert dataset_rows(database.app, dataset_id, "name") == [("ann",), ("bob",), ("cy",)]
    assert_chain_intact(database, tmp_path)


def test_a_refused_login_tells_every_page_to_call_an_admin_not_to_wait(
    fresh_db: DatabaseHandle,
) -> None:
    dataset = people(fresh_db)
    at = open_commit_dialog(edit_page(fresh_db, "admin", dataset), dataset)
    with login_refused(fresh_db, "wrong password"):
        button(at, "Commit").click().run()  # the dialog's write
        assert not at.exception
        said = texts(at)
        assert "cannot sign in to its database" in said
        assert "restarting" not in said
        for page in (
            "pages/1_home.py",
            "pages/2_upload.py",
            "pages/3_datasets.py",
            PAGE,
            "pages/5_history.py",
            "pages/7_audit.py",
            "pages/8_account.py",
            "pages/9_users.py",
        ):
            at.switch_page(page).run()
            assert not at.exception, page
            said = texts(at)
            assert "cannot sign in to its database" in said, page
            assert "tell an admin" in said, page
            assert not shows_notice(at), page  # no "retrying…": waiting will not fix it
            assert fresh_db.info.app_password not in said, page
    assert [r[1] for r in table(fresh_db, dataset)] == ["ann", "bob", "cy", "dee"]
    at.switch_page(PAGE).run()  # the password put back: the page works again
    assert not at.exception
    assert "cannot sign in to its database" not in texts(at)


class DatasetReads:
    """Counts the app role's reads of ``portal.datasets`` rows (a restrictive row-level security
    policy calling a counter), and fails the ``fail_at``-th one for real: its backend terminated
    (``pg_terminate_backend`` of itself), or a table it may not read read. Each page read of a
    dataset that way is one row read, as long as only one dataset exists."""

    def __init__(self, database: DatabaseHandle) -> None:
        self.database = database

    def _exec(self, *statements: str) -> None:
        _superuser_exec(self.database.info, self.database.name, *statements)

    def install(self, how: str) -> None:
        fail = {
            "terminated": "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);",
            "privilege missing": "PERFORM * FROM public.fault_forbidden;",
        }[how]
        self._exec(
            "CREATE SEQUENCE public.fault_reads",
            "CREATE TABLE public.fault_at (n bigint)",
            "INSERT INTO public.fault_at VALUES (NULL)",
            "CREATE TABLE public.fault_forbidden (x int)",
            "GRANT USAGE ON SEQUENCE public.fault_reads TO portal_app",
            "GRANT SELECT ON public.fault_at TO portal_app",
            f"""CREATE FUNCTION public.fault_read() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('public.fault_reads') = (SELECT n FROM public.fault_at) THEN
                    {fail}
                END IF;
                RETURN true;
            END $$""",
            "ALTER TABLE portal.datasets ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY fault_all ON portal.datasets USING (true) WITH CHECK (true)",
            "CREATE POLICY fault_read ON portal.datasets AS RESTRICTIVE FOR SELECT"
            " USING (public.fault_read())",
        )

    def count(self) -> int:
        with self.database.superuser.connect() as conn:
            last, called = conn.execute(
                text("SELECT last_value, is_called FROM public.fault_reads")
            ).one()
        return int(last) if called else 0

    def fail_at(self, n: int | None) -> None:
        self._exec(f"UPDATE public.fault_at SET n = {'NULL' if n is None else int(n)}")


@contextmanager
def failing_dataset_reads(database: DatabaseHandle, how: str) -> Iterator[DatasetReads]:
    reads = DatasetReads(database)
    reads.install(how)
    try:
        yield reads
    finally:
        reads._exec(
            "DROP POLICY fault_read ON portal.datasets",
            "DROP POLICY fault_all ON portal.datasets",
            "ALTER TABLE portal.datasets DISABLE ROW LEVEL SECURITY",
        )


@pytest.mark.parametrize("how", ["terminated", "privilege missing"])
def test_the_upload_page_s_reason_lookup_failing_is_shown_not_raised(
    fresh_db: DatabaseHandle, how: str
) -> None:
    at, dataset = into_people(fresh_db)
    assert "The row is valid." in texts(at, main_only=True)
    reason_field = "Reason (kept in the audit log)"
    assert [t.label for t in at.text_input] == [reason_field]
    before = snapshot(fresh_db)
    with failing_dataset_reads(fresh_db, how) as reads:
        at.run()  # a run as it is now: how many dataset reads it makes, the last one the lookup
        per_run = reads.count()
        assert per_run >= 2  # the choices, the spec and the reason lookup read it
        reads.fail_at(2 * per_run)
        at.run()
        assert reads.count() == 2 * per_run
        assert not at.exception
        said = texts(at, main_only=True)
        assert "The row is valid." in said  # past the spec: the failure is the lookup's
        assert [t.label for t in at.text_input] == []  # the page stopped at it
        if how == "terminated":
            assert shows_notice(at)
            assert "nothing was saved" in said
        else:
            assert not shows_notice(at)
            assert "The portal's database account is not allowed to do this" in said
            assert "permission denied for table fault_forbidden" in said
        reads.fail_at(None)
        at.run()  # what the notice's own check does once SELECT 1 answers
    assert not at.exception
    assert [t.label for t in at.text_input] == [reason_field]
    assert snapshot(fresh_db) == before
    assert dataset_rows(fresh_db.app, dataset, "name") == [("ann",), ("bob",)]


def test_a_lock_timeout_while_reading_is_not_called_a_collision_of_your_change(
    fresh_db: DatabaseHandle,
) -> None:
    """Operators set ``lock_timeout`` so that a migration's or a VACUUM FULL's lock cannot stall
    every page; the person who only opened a page changed nothing that could collide."""
    people(fresh_db)
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    _superuser_exec(
        fresh_db.info,
        "postgres",
        f"ALTER ROLE portal_app IN DATABASE \"{fresh_db.name}\" SET lock_timeout = '200ms'",
    )
    from portal.db import reset_engine

    reset_engine()
    try:
        with holding(fresh_db, "LOCK TABLE portal.datasets IN ACCESS EXCLUSIVE MODE"):
            at.switch_page("pages/3_datasets.py").run()
    finally:
        _superuser_exec(
            fresh_db.info,
            "postgres",
            f'ALTER ROLE portal_app IN DATABASE "{fresh_db.name}" RESET lock_timeout',
        )
    assert not at.exception
    said = texts(at, main_only=True)
    assert "lock timeout" in said
    assert "Your change collided" not in said
    assert "locked by other work" in said
    assert "tell an admin" in said


def test_no_free_connection_shows_the_notice_saying_so(fresh_db: DatabaseHandle) -> None:
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    _superuser_exec(fresh_db.info, "postgres", "ALTER ROLE portal_app CONNECTION LIMIT 0")
    from portal.db import reset_engine

    reset_engine()
    try:
        at.switch_page("pages/3_datasets.py").run()
        assert not at.exception
        assert shows_notice(at)
        said = texts(at)
        assert "no free connection" in said
        assert "restarting" not in said
    finally:
        _superuser_exec(fresh_db.info, "postgres", "ALTER ROLE portal_app CONNECTION LIMIT -1")
    at.run()  # what the notice's own check does once SELECT 1 answers
    assert not at.exception
    assert not shows_notice(at)
    assert "Datasets" in texts(at, main_only=True)


def test_a_database_behind_the_code_is_said_not_raised(fresh_db: DatabaseHandle) -> None:
    from portal import migrate
    from portal.db import reset_engine

    at, _ = signed_in(fresh_db, "admin")
    show_app(at)
    migrate.downgrade(fresh_db.url("owner"), "0007")  # before the event chain's tables
    reset_engine()
    at.switch_page("pages/7_audit.py").run()
    assert not at.exception
    said = texts(at, main_only=True)
    assert 'relation "audit.event_chain_head" does not exist' in said
    assert "portal migrate" in said
