"""Installing change capture on a dataset table.

``install_capture`` attaches the statement-level triggers defined in migration 0002
(``audit.capture()``) to ``data.<table>``: every INSERT, UPDATE and DELETE writes its rows'
before and after images to ``audit.row_change``, and TRUNCATE is refused. Call it in the same
transaction that creates the table, so no write can ever reach the table uncaptured.
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
    """Attach the audit capture triggers (and the TRUNCATE refusal) to ``data.<table_name>``."""
    table = qualified_table(session, table_name)
    dataset = str(int(dataset_id))
    for name, timing, referencing in _TRIGGERS:
        session.execute(
            text(
                f"CREATE TRIGGER {name} {timing} ON {table} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION audit.capture('{dataset}')"
            )
        )
    session.execute(
        text(
            f"CREATE TRIGGER audit_refuse_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_truncate()"
        )
    )
