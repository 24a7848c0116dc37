"""Installing change capture on a dataset table.

``install_capture`` has the database write the table's own capture trigger function
(``audit.generate_capture``, migrations 0003 and 0006: the table's columns are written into it,
so an UPDATE's check of which columns changed is a query written once, yet planned for each
statement's own rows — a plan kept from a one-row UPDATE made a large one quadratic) and
attaches it as three
statement-level triggers: every INSERT, UPDATE and DELETE writes its rows' before and after
images to ``audit.row_change``; TRUNCATE, and any UPDATE of ``_row_id`` (the key the log
knows each row by), are refused; an UPDATE that leaves ``_version`` as it was gets it bumped.
Call it in the same transaction that creates the table, so no write can ever reach the table
uncaptured, and again in the transaction that changes the table's columns: a capture function
refuses to run on columns other than those it was written for, so a forgotten call fails loudly
instead of missing changes.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

DATA_SCHEMA = "data"

_TRIGGERS = (
    ("audit_capture_insert", "AFTER INSERT", "REFERENCING NEW TABLE AS new_rows"),
    (
        "audit_capture_update",
        "AFTER UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    ),
    ("audit_capture_delete", "AFTER DELETE", "REFERENCING OLD TABLE AS old_rows"),
)


def qualified_table(session: Session, table_name: str) -> str:
    """``data."<table_name>"``, quoted by SQLAlchemy's PostgreSQL identifier preparer."""
    preparer = session.get_bind().dialect.identifier_preparer
    return f"{preparer.quote_schema(DATA_SCHEMA)}.{preparer.quote(table_name)}"


def install_capture(*, session: Session, table_name: str, dataset_id: int) -> None:
    """(Re)write ``data.<table_name>``'s capture function from its current columns and attach
    it, with the refusals of TRUNCATE and of a changed ``_row_id``. Idempotent.

    Raises:
        sqlalchemy.exc.DBAPIError: the table is not a dataset table in schema ``data``.
    """
    table = qualified_table(session, table_name)
    dataset = str(int(dataset_id))
    # Its name is built and quoted by the database, from the table's name.
    function = session.execute(
        text("SELECT audit.generate_capture(CAST(:table AS regclass))"), {"table": table}
    ).scalar_one()
    for name, timing, referencing in _TRIGGERS:
        session.execute(
            text(
                f"CREATE OR REPLACE TRIGGER {name} {timing} ON {table} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}('{dataset}')"
            )
        )
    session.execute(
        text(
            f"CREATE OR REPLACE TRIGGER audit_refuse_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_truncate()"
        )
    )
    # An UPDATE pairs old and new images by _row_id: a changed id would go unrecorded.
    session.execute(
        text(
            "CREATE OR REPLACE TRIGGER audit_refuse_row_id_change BEFORE UPDATE OF _row_id"
            f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_row_id_change()"
        )
    )
    # Optimistic concurrency compares _version: an UPDATE that leaves it (from psql, say)
    # gets it bumped, so a commit over that row sees it moved.
    session.execute(
        text(
            f"CREATE OR REPLACE TRIGGER audit_bump_version BEFORE UPDATE ON {table} FOR EACH ROW"
            " WHEN (NEW._version IS NOT DISTINCT FROM OLD._version)"
            " EXECUTE FUNCTION audit.bump_version()"
        )
    )
